package policy

import (
	"github.com/caracal-dev/caracal/internal/money"
)

// PolicyUsage is one active policy with its usage in the window that applies
// at the time of the decision.
type PolicyUsage struct {
	Policy    Policy
	AgentName string
	Spent     money.Amount
	Reserved  money.Amount
}

// Request is everything the decision function needs. It holds no I/O handles.
type Request struct {
	// Chain is the spending agent first, then its parent, up to the root.
	Chain []Agent
	// Policies are the active policies of every agent on Chain, with usage.
	Policies []PolicyUsage
	Resource string
	Price    money.Amount
	Currency string
}

// Decide returns the verdict on spending r.Price of r.Currency on r.Resource.
// Every agent on the chain must be active, the resource must match the
// allowlist of every policy that has one, and for every policy
// spent + reserved + price ≤ limit. The first failing check, in chain order,
// names the denying policy; Remaining lists every policy.
func Decide(r *Request) Decision {
	panic("policy.Decide: not implemented yet")
}
