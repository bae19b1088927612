// Package money is Caracal's exact fixed-point amount type.
//
// An Amount is a signed count of nano-units (1e-9 of a currency unit), held in
// an int64: it covers ±9,223,372,036.854775807 units exactly, which holds any
// budget a gateway meters and any token price down to a billionth of a unit.
// No float64 appears on any path that computes money.
//
// Rounding happens in exactly one place, Exact.Quo, by a named Rounding: a
// cost is summed from integer inputs with full 128-bit precision and rounded
// once, at the end.
package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// Amount is an exact quantity of money in nano-units of some currency.
// The zero value is zero.
type Amount int64

// Scale is the number of nano-units in one unit.
const Scale = 1_000_000_000

// Decimals is the number of fractional digits an Amount can hold exactly.
const Decimals = 9

// Max is the largest representable Amount.
const Max = Amount(math.MaxInt64)

// ErrOverflow is returned when a result does not fit in an Amount.
var ErrOverflow = errors.New("amount out of range")

// DefaultCurrency is the currency assumed when none is given.
const DefaultCurrency = "USD"

// Parse reads a decimal string such as "12", "0.075", "-3.5" or "1e-3"-free
// plain decimal notation. At most 9 fractional digits are accepted; more
// would need rounding, which Parse never does silently.
func Parse(s string) (Amount, error) {
	orig := s
	if s == "" {
		return 0, fmt.Errorf("invalid amount %q: empty", orig)
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	intPart, fracPart, hasDot := strings.Cut(s, ".")
	if intPart == "" && (!hasDot || fracPart == "") {
		return 0, fmt.Errorf("invalid amount %q: no digits", orig)
	}
	if hasDot && fracPart == "" && intPart == "" {
		return 0, fmt.Errorf("invalid amount %q: no digits", orig)
	}
	if len(fracPart) > Decimals {
		return 0, fmt.Errorf("invalid amount %q: more than %d decimal places", orig, Decimals)
	}
	var units uint64
	for _, c := range intPart {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid amount %q: unexpected character %q", orig, c)
		}
		hi, lo := bits.Mul64(units, 10)
		if hi != 0 {
			return 0, fmt.Errorf("invalid amount %q: %w", orig, ErrOverflow)
		}
		units = lo + uint64(c-'0')
		if units < lo {
			return 0, fmt.Errorf("invalid amount %q: %w", orig, ErrOverflow)
		}
	}
	var frac uint64
	for i := 0; i < Decimals; i++ {
		frac *= 10
		if i < len(fracPart) {
			c := fracPart[i]
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("invalid amount %q: unexpected character %q", orig, c)
			}
			frac += uint64(c - '0')
		}
	}
	hi, lo := bits.Mul64(units, Scale)
	if hi != 0 {
		return 0, fmt.Errorf("invalid amount %q: %w", orig, ErrOverflow)
	}
	total, carry := bits.Add64(lo, frac, 0)
	// The negative range reaches one further, so that Parse reads back
	// the String of every Amount, math.MinInt64 included.
	if carry != 0 || total > maxMagnitude(neg) {
		return 0, fmt.Errorf("invalid amount %q: %w", orig, ErrOverflow)
	}
	if neg {
		return Amount(-total), nil
	}
	return Amount(total), nil
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) Amount {
	a, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

// String prints the amount in plain decimal with at least two and at most
// nine fractional digits and no trailing zeros past the second: "100.00",
// "0.075", "-1.50", "0.000000001". Parse(a.String()) == a for every a.
func (a Amount) String() string {
	neg := a < 0
	u := uint64(a)
	if neg {
		u = -u // two's complement: correct for MinInt64 too
	}
	units := u / Scale
	frac := u % Scale
	fs := fmt.Sprintf("%09d", frac)
	fs = strings.TrimRight(fs, "0")
	for len(fs) < 2 {
		fs += "0"
	}
	s := fmt.Sprintf("%d.%s", units, fs)
	if neg {
		return "-" + s
	}
	return s
}

// Nanos returns the amount as an integer count of nano-units.
func (a Amount) Nanos() int64 { return int64(a) }

// IsNegative reports whether a < 0.
func (a Amount) IsNegative() bool { return a < 0 }

// Add returns a+b, or ErrOverflow.
func (a Amount) Add(b Amount) (Amount, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, ErrOverflow
	}
	return s, nil
}

// Sub returns a-b, or ErrOverflow.
func (a Amount) Sub(b Amount) (Amount, error) {
	s := a - b
	if (b > 0 && s > a) || (b < 0 && s < a) {
		return 0, ErrOverflow
	}
	return s, nil
}

// MulInt returns a×n, or ErrOverflow.
func (a Amount) MulInt(n int64) (Amount, error) {
	p, err := mul64(int64(a), n)
	return Amount(p), err
}

// maxMagnitude is the largest absolute value an Amount of that sign holds.
func maxMagnitude(neg bool) uint64 {
	if neg {
		return 1 << 63
	}
	return math.MaxInt64
}

// Sum adds amounts, or returns ErrOverflow.
func Sum(amounts ...Amount) (Amount, error) {
	var t Amount
	for _, a := range amounts {
		var err error
		if t, err = t.Add(a); err != nil {
			return 0, err
		}
	}
	return t, nil
}

func abs64(x int64) uint64 {
	if x < 0 {
		return -uint64(x)
	}
	return uint64(x)
}

func mul64(a, b int64) (int64, error) {
	if a == 0 || b == 0 {
		return 0, nil
	}
	neg := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(abs64(a), abs64(b))
	if hi != 0 {
		return 0, ErrOverflow
	}
	if neg {
		if lo > 1<<63 {
			return 0, ErrOverflow
		}
		return -int64(lo), nil
	}
	if lo > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(lo), nil
}

// ValidateCurrency checks that code is an ISO 4217-shaped code: three
// upper-case ASCII letters.
func ValidateCurrency(code string) error {
	if len(code) != 3 {
		return fmt.Errorf("invalid currency %q: want a three-letter code such as USD", code)
	}
	for i := 0; i < 3; i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return fmt.Errorf("invalid currency %q: want a three-letter code such as USD", code)
		}
	}
	return nil
}

// ParseCurrency reads a currency code typed by a person: surrounding space
// is trimmed and letters are upper-cased ("usd" is USD), then the code is
// checked with ValidateCurrency. Every place that takes a currency as input
// goes through it; stored codes are always upper case.
func ParseCurrency(s string) (string, error) {
	code := strings.ToUpper(strings.TrimSpace(s))
	if err := ValidateCurrency(code); err != nil {
		return "", fmt.Errorf("invalid currency %q: want a three-letter code such as USD", s)
	}
	return code, nil
}

// MarshalText prints the amount as its decimal string, so JSON carries
// "0.075" rather than a binary float.
func (a Amount) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses a decimal string.
func (a *Amount) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
