package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration is time.ParseDuration that also accepts whole days ("30d")
// and whole weeks ("1w"), up to 100 years: the lifetimes and look-backs
// users type (a key's expiry, "the last 7d").
func ParseDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		days   int
	}{{"d", 1}, {"w", 7}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			k, err := strconv.Atoi(n)
			if err != nil || k < 0 || k*u.days > 100*365 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(k*u.days) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
}
