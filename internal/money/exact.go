package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Rounding is how an exact quotient becomes a whole number of nano-units.
type Rounding uint8

const (
	// RoundHalfUp rounds to the nearest nano-unit, an exact half up: what
	// a call is charged (policy.Cost).
	RoundHalfUp Rounding = iota
	// RoundUp rounds any remainder up: a bound that must never be below a
	// charge of the same usage (the LLM proxy's worst-case reservation).
	RoundUp
)

func (r Rounding) String() string {
	switch r {
	case RoundHalfUp:
		return "half up"
	case RoundUp:
		return "up"
	}
	return fmt.Sprintf("Rounding(%d)", uint8(r))
}

// Exact is a non-negative sum of products held exactly in 128 bits, counted
// in a fraction of a nano-unit the caller chooses (1e-18 units, or
// nano-units per million tokens); Quo divides by that fraction's
// denominator and rounds once. Summing first and rounding once is what
// makes one input and one output token at 0.0005/M each cost one nano-unit
// (0.5 + 0.5), not two. The zero value is zero.
type Exact struct{ hi, lo uint64 }

// AddProduct adds the product of factors, each non-negative, or returns
// ErrOverflow when the sum leaves 128 bits (x is then unchanged).
func (x *Exact) AddProduct(factors ...int64) error {
	p := Exact{lo: 1}
	for _, f := range factors {
		if f < 0 {
			return fmt.Errorf("money: negative factor %d in an exact sum", f)
		}
		hh, hl := bits.Mul64(p.hi, uint64(f))
		lh, ll := bits.Mul64(p.lo, uint64(f))
		hi, carry := bits.Add64(hl, lh, 0)
		if hh != 0 || carry != 0 {
			return ErrOverflow
		}
		p = Exact{hi, ll}
	}
	lo, c := bits.Add64(x.lo, p.lo, 0)
	hi, c2 := bits.Add64(x.hi, p.hi, c)
	if c2 != 0 {
		return ErrOverflow
	}
	x.hi, x.lo = hi, lo
	return nil
}

// Quo returns x / den as an Amount, rounded by r, or ErrOverflow when it
// does not fit. den must be positive.
func (x Exact) Quo(den int64, r Rounding) (Amount, error) {
	if den <= 0 {
		return 0, errors.New("money: division of an exact sum by a non-positive denominator")
	}
	d := uint64(den)
	if x.hi >= d {
		return 0, ErrOverflow
	}
	q, rem := bits.Div64(x.hi, x.lo, d)
	// Checked before rounding too, so that q+1 cannot wrap.
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	switch r {
	case RoundHalfUp:
		if rem >= d-rem {
			q++
		}
	case RoundUp:
		if rem != 0 {
			q++
		}
	default:
		return 0, fmt.Errorf("money: unknown rounding %v", r)
	}
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return Amount(q), nil
}
