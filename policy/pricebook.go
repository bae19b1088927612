package policy

import "github.com/caracal-dev/caracal/internal/money"

// MatchPattern reports whether resource matches pattern, where `*` matches
// any run of characters (including `/`).
func MatchPattern(pattern, resource string) bool {
	panic("policy.MatchPattern: not implemented yet")
}

// MatchRule returns the most specific rule whose pattern matches resource.
func MatchRule(rules []PriceRule, resource string) (PriceRule, bool) {
	panic("policy.MatchRule: not implemented yet")
}

// Cost prices one call under r from its JSON arguments (for PerUnit) and its
// token counts, rounding once, half up.
func Cost(r PriceRule, args []byte, t Tokens) (money.Amount, error) {
	panic("policy.Cost: not implemented yet")
}
