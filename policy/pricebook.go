package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/tidwall/gjson"
)

// MatchPattern reports whether resource matches pattern, where `*` matches
// any run of characters (including `/`).
//
// `*` is the only metacharacter: `?`, `[` and `\` match themselves. The
// match is on bytes and runs in time proportional to
// len(pattern) × len(resource) at worst.
func MatchPattern(pattern, resource string) bool {
	// Greedy match with a single backtrack point: the most recent `*`
	// absorbs one more byte each time the rest fails.
	p, s := 0, 0
	star, mark := -1, 0
	for s < len(resource) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, s
			p++
		case p < len(pattern) && pattern[p] == resource[s]:
			p++
			s++
		case star >= 0:
			p = star + 1
			mark++
			s = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchRule returns the most specific rule whose pattern matches resource,
// by the order BestMatch defines.
func MatchRule(rules []PriceRule, resource string) (PriceRule, bool) {
	best, ok := bestMatch(len(rules), func(i int) string { return rules[i].Resource }, resource)
	if !ok {
		return PriceRule{}, false
	}
	return rules[best], true
}

// BestMatch returns the index of the most specific pattern that matches s,
// and false when none does. Every choice among globs (price rules, model
// limits) goes through it, so two tables with the same patterns pick the
// same winner.
//
// Specificity, in order:
//
//  1. a pattern without `*` equal to s beats every glob;
//  2. more literal (non-`*`) characters beat fewer:
//     "llm:openai/gpt-4o-mini*" beats "llm:openai/gpt-4o*";
//  3. then the longer pattern (more `*`s at equal literals): "mcp:a*b*"
//     beats "mcp:a*b";
//  4. then the lexically smaller pattern, so the choice never depends on
//     the order of the patterns.
func BestMatch(patterns []string, s string) (int, bool) {
	return bestMatch(len(patterns), func(i int) string { return patterns[i] }, s)
}

func bestMatch(n int, pattern func(int) string, s string) (int, bool) {
	best := -1
	for i := 0; i < n; i++ {
		p := pattern(i)
		if !MatchPattern(p, s) {
			continue
		}
		if best < 0 || moreSpecific(p, pattern(best), s) {
			best = i
		}
	}
	return best, best >= 0
}

// moreSpecific reports whether pattern a beats pattern b for resource; both
// match it.
func moreSpecific(a, b, resource string) bool {
	if ea, eb := a == resource, b == resource; ea != eb {
		return ea
	}
	la, lb := literals(a), literals(b)
	if la != lb {
		return la > lb
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a < b
}

func literals(pattern string) int { return len(pattern) - strings.Count(pattern, "*") }

// Cost prices one call under r from its JSON arguments (for PerUnit) and its
// token counts, rounding once, half up.
//
// The cost is
//
//	per_call + Σ price_per_million(class) × tokens(class) / 1,000,000
//	         + per_unit.price × quantity
//
// where every term but per_call is added up exactly, as an integer number
// of 1e-18 units in 128 bits, and the sum is rounded once to a nano-unit,
// half up. So one input and one output token at 0.0005/M each cost one
// nano-unit (0.5 + 0.5), not two (each half rounded up on its own).
//
// The quantity is read with gjson at PerUnit.Path from args. It may be a
// JSON number, integer or decimal (exponents allowed, read from the
// number's text, never through float64), or a string holding a decimal;
// it has at most 9 fractional digits. A missing path or null is quantity 0;
// a negative quantity, another JSON type or invalid JSON args are errors.
// Negative token counts and negative prices are errors; a result beyond
// money.Max is money.ErrOverflow.
func Cost(r PriceRule, args []byte, t Tokens) (money.Amount, error) {
	if r.PerCall < 0 {
		return 0, fmt.Errorf("price rule %q: per_call: negative price %s", r.Resource, r.PerCall)
	}
	// Terms in 1e-18 units: nanos per million tokens × tokens × 1000, and
	// per-unit nanos × quantity nanos.
	var sum money.Exact
	for _, term := range [...]struct {
		field  string
		price  money.Amount
		tokens int64
		token  string
	}{
		{"input_per_million", r.InputPerMillion, t.Input, "input"},
		{"output_per_million", r.OutputPerMillion, t.Output, "output"},
		{"cached_input_per_million", r.CachedInputPerMillion, t.CachedRead, "cached_read"},
		{"cache_write_per_million", r.CacheWritePerMillion, t.CacheWrite, "cache_write"},
		{"reasoning_per_million", r.ReasoningPerMillion, t.Reasoning, "reasoning"},
	} {
		if term.tokens < 0 {
			return 0, fmt.Errorf("price rule %q: negative %s token count %d", r.Resource, term.token, term.tokens)
		}
		if term.price < 0 {
			return 0, fmt.Errorf("price rule %q: %s: negative price %s", r.Resource, term.field, term.price)
		}
		if term.price == 0 || term.tokens == 0 {
			continue
		}
		if err := sum.AddProduct(int64(term.price), term.tokens, money.Scale/1_000_000); err != nil {
			return 0, fmt.Errorf("price rule %q: cost: %w", r.Resource, err)
		}
	}
	if r.PerUnit != nil && r.PerUnit.Price != 0 {
		if r.PerUnit.Price < 0 {
			return 0, fmt.Errorf("price rule %q: per_unit: price: negative price %s", r.Resource, r.PerUnit.Price)
		}
		q, err := Quantity(args, r.PerUnit.Path)
		if err != nil {
			return 0, fmt.Errorf("price rule %q: %w", r.Resource, err)
		}
		if err := sum.AddProduct(int64(r.PerUnit.Price), int64(q)); err != nil {
			return 0, fmt.Errorf("price rule %q: cost: %w", r.Resource, err)
		}
	}
	variable, err := sum.Quo(money.Scale, money.RoundHalfUp)
	if err != nil {
		return 0, fmt.Errorf("price rule %q: cost: %w", r.Resource, err)
	}
	total, err := r.PerCall.Add(variable)
	if err != nil {
		return 0, fmt.Errorf("price rule %q: cost: %w", r.Resource, err)
	}
	return total, nil
}

// ArgumentError is a call argument that a per-unit price cannot read as a
// quantity. Cost and Quantity return it (wrapped); a caller refuses the
// call with CodeInvalidArguments and shows Error to the caller, which names
// the argument and what it must hold.
type ArgumentError struct {
	Path string // gjson path of the argument
	Got  string // what was found, e.g. `"abc"`, `-5`, `a boolean`
	Err  error  // why a number was not accepted, if it was one
}

func (e *ArgumentError) Error() string {
	msg := fmt.Sprintf("argument %q must be a non-negative number (a JSON number or a decimal string with at most 9 fractional digits), got %s", e.Path, e.Got)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

func (e *ArgumentError) Unwrap() error { return e.Err }

// Quantity reads the non-negative decimal at gjson path in the JSON
// document args, as Cost does: a number (read from its text, never through
// float64) or a string holding a decimal, with at most 9 fractional digits.
// A missing path, null or empty args give 0. Anything else is an
// *ArgumentError.
func Quantity(args []byte, path string) (money.Amount, error) {
	if len(args) == 0 {
		return 0, nil
	}
	if !gjson.ValidBytes(args) {
		return 0, &ArgumentError{Path: path, Got: "arguments that are not valid JSON"}
	}
	v := gjson.GetBytes(args, path)
	var text string
	switch v.Type {
	case gjson.Null:
		return 0, nil // missing, or JSON null
	case gjson.Number:
		text = v.Raw
	case gjson.String:
		text = strings.TrimSpace(v.Str)
	case gjson.True, gjson.False:
		return 0, &ArgumentError{Path: path, Got: "a boolean"}
	default:
		kind := "an object"
		if strings.HasPrefix(v.Raw, "[") {
			kind = "an array"
		}
		return 0, &ArgumentError{Path: path, Got: kind}
	}
	q, err := parseDecimal(text)
	if err != nil || q < 0 {
		got := v.Raw
		if len(got) > 40 {
			got = got[:40] + "…"
		}
		return 0, &ArgumentError{Path: path, Got: got, Err: err}
	}
	return q, nil
}

// parseDecimal is money.Parse extended to JSON's exponent notation
// ("1.5e3", "25E-2"), shifting the decimal point in the text itself.
func parseDecimal(s string) (money.Amount, error) {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return money.Parse(s)
	}
	mant, expText := s[:i], s[i+1:]
	exp := 0
	neg := false
	switch {
	case strings.HasPrefix(expText, "-"):
		neg, expText = true, expText[1:]
	case strings.HasPrefix(expText, "+"):
		expText = expText[1:]
	}
	if expText == "" {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	for _, c := range expText {
		if c < '0' || c > '9' || exp > 1000 {
			return 0, fmt.Errorf("invalid number %q", s)
		}
		exp = exp*10 + int(c-'0')
	}
	if neg {
		exp = -exp
	}
	sign := ""
	if strings.HasPrefix(mant, "-") || strings.HasPrefix(mant, "+") {
		sign, mant = mant[:1], mant[1:]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	point := len(intPart) + exp // position of the decimal point in digits
	switch {
	case point <= 0:
		digits = strings.Repeat("0", -point) + digits
		point = 0
	case point > len(digits):
		digits += strings.Repeat("0", point-len(digits))
	}
	// Trailing zeros of the fraction change nothing, however many the
	// shift added.
	a, err := money.Parse(sign + "0" + digits[:point] + "." + strings.TrimRight(digits[point:], "0"))
	switch {
	case errors.Is(err, money.ErrOverflow):
		return 0, fmt.Errorf("invalid number %q: %w", s, money.ErrOverflow)
	case err != nil:
		return 0, fmt.Errorf("invalid number %q: more than %d decimal places", s, money.Decimals)
	}
	return a, nil
}

// NormalizePriceRule fills r's defaults: an empty currency becomes
// money.DefaultCurrency.
func NormalizePriceRule(r PriceRule) PriceRule {
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	return r
}

// ValidatePriceRule checks a rule as the pricebook stores it. Errors name
// the rule and the field, e.g.
// `price rule "mcp:fs/*": per_call: negative price -1.00`.
// Call NormalizePriceRule first to accept an empty currency.
func ValidatePriceRule(r PriceRule) error {
	if err := validatePriceRule(r); err != nil {
		return fmt.Errorf("price rule %q: %w", r.Resource, err)
	}
	return nil
}

// validatePriceRule is ValidatePriceRule with errors that begin with the
// field, for callers that name the rule their own way.
func validatePriceRule(r PriceRule) error {
	if err := ValidateResourcePattern(r.Resource); err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	if err := money.ValidateCurrency(r.Currency); err != nil {
		return fmt.Errorf("currency: %w", err)
	}
	for _, f := range [...]struct {
		name  string
		price money.Amount
	}{
		{"per_call", r.PerCall},
		{"input_per_million", r.InputPerMillion},
		{"output_per_million", r.OutputPerMillion},
		{"cached_input_per_million", r.CachedInputPerMillion},
		{"cache_write_per_million", r.CacheWritePerMillion},
		{"reasoning_per_million", r.ReasoningPerMillion},
	} {
		if f.price < 0 {
			return fmt.Errorf("%s: negative price %s", f.name, f.price)
		}
	}
	if u := r.PerUnit; u != nil {
		if strings.TrimSpace(u.Path) == "" {
			return errors.New("per_unit: path: empty (want a gjson path into the call arguments, e.g. count)")
		}
		if err := ValidateText(u.Path); err != nil {
			return fmt.Errorf("per_unit: path: %w", err)
		}
		if u.Price < 0 {
			return fmt.Errorf("per_unit: price: negative price %s", u.Price)
		}
	}
	return nil
}

// ValidateResourcePattern checks a resource or resource pattern: not
// empty, and free of spaces and control characters, which no resource
// name contains.
func ValidateResourcePattern(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%q contains a space or control character", p)
		}
	}
	return nil
}
