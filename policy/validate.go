package policy

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/caracal-dev/caracal/internal/money"
)

// ParseLimit reads a budget limit: a non-negative decimal amount.
func ParseLimit(s string) (money.Amount, error) {
	a, err := money.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("limit: %w", err)
	}
	if err := ValidateLimit(a); err != nil {
		return 0, err
	}
	return a, nil
}

// ValidateLimit checks that a limit is not negative. Zero is a valid limit:
// it blocks every priced spend.
func ValidateLimit(a money.Amount) error {
	if a < 0 {
		return fmt.Errorf("limit: negative amount %s", a)
	}
	return nil
}

// NormalizePolicy fills p's defaults: currency money.DefaultCurrency,
// window type calendar, time zone UTC.
func NormalizePolicy(p Policy) Policy {
	if p.Currency == "" {
		p.Currency = money.DefaultCurrency
	}
	if p.WindowType == "" {
		p.WindowType = WindowCalendar
	}
	if p.Timezone == "" {
		p.Timezone = "UTC"
	}
	return p
}

// ValidatePolicy checks the fields of a budget a user can set: limit,
// currency, window, window type, time zone and allowlist patterns. The
// first bad field is named in the error, e.g.
// `invalid window "fortnightly": want one of total, hourly, daily, weekly, monthly`.
// Call NormalizePolicy first to accept empty defaults.
func ValidatePolicy(p Policy) error {
	if err := ValidateLimit(p.Limit); err != nil {
		return err
	}
	if err := money.ValidateCurrency(p.Currency); err != nil {
		return err
	}
	if _, err := ParseWindow(string(p.Window)); err != nil {
		return err
	}
	if p.WindowType == "" {
		return fmt.Errorf("invalid window type %q: want calendar or rolling", p.WindowType)
	}
	wt, err := ParseWindowType(string(p.WindowType))
	if err != nil {
		return err
	}
	if p.Window == WindowTotal && wt == WindowRolling {
		return fmt.Errorf("invalid window type %q for window %q: a total budget never resets, so it cannot roll; use calendar", wt, p.Window)
	}
	if p.Timezone == "" {
		return fmt.Errorf("invalid time zone %q: want an IANA name such as Europe/Paris or UTC", p.Timezone)
	}
	if _, err := LoadLocation(p.Timezone); err != nil {
		return err
	}
	for i, pat := range p.Allow {
		if err := ValidateResourcePattern(pat); err != nil {
			return fmt.Errorf("allow pattern %d: %w", i+1, err)
		}
	}
	return nil
}

// ValidateText checks free text a user gives (an agent's owner, metadata,
// a per-unit path): it must hold no control character (C0, DEL, C1,
// including newline and tab) and no bidirectional override or line
// separator, any of which can rewrite what a terminal shows, for example
// forge a table row. The error names the first such character and where.
func ValidateText(s string) error {
	for i, r := range s {
		if unsafeRune(r) {
			return fmt.Errorf("control character %U at byte %d is not allowed in free text", r, i)
		}
	}
	return nil
}

// unsafeRune reports whether r may change how a terminal lays out text.
func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true // bidirectional embeddings, overrides, isolates and marks
	case r == 0x2028, r == 0x2029:
		return true // line and paragraph separators
	}
	return false
}

// EscapeText returns s with every character ValidateText refuses written
// as a Go escape (\x1b, \n, \u202e), for printing text that is already
// stored. Text without such characters is returned unchanged.
func EscapeText(s string) string {
	if ValidateText(s) == nil {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !unsafeRune(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
