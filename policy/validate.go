package policy

import (
	"fmt"

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

// ValidateCurrency checks an ISO 4217-shaped currency code (three upper-case
// letters), as money.ValidateCurrency does.
func ValidateCurrency(code string) error { return money.ValidateCurrency(code) }

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
