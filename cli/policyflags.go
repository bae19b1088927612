package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// budgetFlags are the flags that shape a budget, shared by policy create,
// policy update and delegation create.
type budgetFlags struct {
	Limit      string
	Currency   string
	Window     string
	WindowType string
	Timezone   string
	Allow      []string
}

func addBudgetFlags(cmd *cobra.Command, b *budgetFlags, withAllow bool) {
	fl := cmd.Flags()
	fl.StringVar(&b.Limit, "limit", "", "budget limit, a decimal amount such as 25 or 0.50")
	fl.StringVar(&b.Currency, "currency", money.DefaultCurrency, "three-letter currency code")
	fl.StringVar(&b.Window, "window", string(policy.WindowDaily), "window: total, hourly, daily, weekly or monthly")
	fl.StringVar(&b.WindowType, "window-type", string(policy.WindowCalendar), "calendar (aligned in --timezone) or rolling")
	fl.StringVar(&b.Timezone, "timezone", "UTC", "IANA time zone calendar windows align in, such as Europe/Paris")
	if withAllow {
		fl.StringArrayVar(&b.Allow, "allow", nil, "resource pattern the agent may use, such as 'mcp:fs/*' (repeatable; default: everything)")
	}
}

// parseAmount parses a non-negative decimal amount given in flag.
func parseAmount(flag, s string) (money.Amount, error) {
	a, err := nonNegativeAmount(s)
	if err != nil {
		return 0, Usagef("%s: %v", flag, err)
	}
	return a, nil
}

// nonNegativeAmount reads a decimal amount that is not negative.
func nonNegativeAmount(s string) (money.Amount, error) {
	a, err := money.Parse(strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	if a.IsNegative() {
		return 0, fmt.Errorf("invalid amount %q: must not be negative", s)
	}
	return a, nil
}

func parseWindow(s string) (policy.Window, error) {
	switch w := policy.Window(s); w {
	case policy.WindowTotal, policy.WindowHourly, policy.WindowDaily, policy.WindowWeekly, policy.WindowMonthly:
		return w, nil
	}
	return "", Usagef("--window: invalid window %q: want total, hourly, daily, weekly or monthly", s)
}

func parseWindowType(s string) (policy.WindowType, error) {
	switch t := policy.WindowType(s); t {
	case policy.WindowCalendar, policy.WindowRolling:
		return t, nil
	}
	return "", Usagef("--window-type: invalid window type %q: want calendar or rolling", s)
}

func parseTimezone(s string) (string, error) {
	// "Local" depends on the machine that happens to evaluate the policy,
	// so it is refused like any unknown name.
	if _, err := time.LoadLocation(s); err != nil || s == "" || s == "Local" {
		return "", Usagef("--timezone: unknown time zone %q: want an IANA name such as UTC or America/New_York", s)
	}
	return s, nil
}

func parseCurrency(flag, s string) (string, error) {
	code, err := money.ParseCurrency(s)
	if err != nil {
		return "", Usagef("%s: %v", flag, err)
	}
	return code, nil
}

func parsePatterns(flag string, pats []string) ([]string, error) {
	for _, p := range pats {
		if err := policy.ValidateResourcePattern(p); err != nil {
			return nil, Usagef("%s: invalid pattern %q: want a resource pattern without spaces such as 'mcp:fs/*'", flag, p)
		}
	}
	return pats, nil
}

// newPolicy validates every budget flag before anything is written.
func (b *budgetFlags) newPolicy(agentID string) (ledger.NewPolicy, error) {
	if b.Limit == "" {
		return ledger.NewPolicy{}, Usagef("--limit: required")
	}
	lim, err := parseAmount("--limit", b.Limit)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	cur, err := parseCurrency("--currency", b.Currency)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	win, err := parseWindow(b.Window)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	wt, err := parseWindowType(b.WindowType)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	tz, err := parseTimezone(b.Timezone)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	allow, err := parsePatterns("--allow", b.Allow)
	if err != nil {
		return ledger.NewPolicy{}, err
	}
	return ledger.NewPolicy{AgentID: agentID, Limit: lim, Currency: cur, Window: win, WindowType: wt, Timezone: tz, Allow: allow}, nil
}
