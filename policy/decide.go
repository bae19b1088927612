package policy

import (
	"fmt"

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
	// AllowUnbudgeted allows a spend when no policy applies anywhere on
	// the chain; false refuses it with CodeNoBudget.
	AllowUnbudgeted bool
}

// Reasons of allowing decisions. They are constants so that the allow path
// formats nothing.
const (
	reasonAllowed    = "within every budget"
	reasonNoPolicies = "no budget applies to the agent or its ancestors: the spend is unmetered but recorded"
)

// NoBudgetReason is the reason of a CodeNoBudget refusal.
const NoBudgetReason = "no active budget applies to the agent or its ancestors, and unbudgeted agents are refused: " +
	"create a policy for the agent (caracal policy create), or set enforcement.unbudgeted: allow"

// Decide returns the verdict on spending r.Price of r.Currency on r.Resource.
// Every agent on the chain must be active, some policy must apply (unless
// r.AllowUnbudgeted), the resource must match the allowlist of every
// policy that has one, and for every policy spent + reserved + price ≤
// limit. The first failing check, in chain order,
// names the denying policy; Remaining lists every policy.
//
// The checks run in this order, each over the whole chain, agent first,
// then its ancestors (and, within one agent, in the order of r.Policies):
//
//  1. the chain is not empty (else CodeUnknownAgent) and the price is not
//     negative (else CodeUnavailable);
//  2. every agent is active (else CodeAgentSuspended, naming the agent);
//  3. some policy applies (r.Policies is not empty), unless
//     r.AllowUnbudgeted (else CodeNoBudget);
//  4. the resource matches the allowlist of every policy that has one
//     (else CodeNotAllowed, naming the policy): whether a resource is
//     allowed never depends on how much has been spent;
//  5. every policy is in the request's currency (else CodeCurrency); an
//     empty r.Currency means money.DefaultCurrency;
//  6. spent + reserved + price ≤ limit for every policy (else
//     CodeBudgetExceeded, with a reason naming the policy ID, its agent,
//     its window and the numbers).
//
// Every policy in r.Policies is enforced, whatever its Active field says:
// choosing the active ones is the caller's job, and a stray inactive one
// can only make Decide stricter. Policies of agents that are not on the
// chain are checked after those of the chain.
//
// When no policy applies anywhere on the chain the spend is refused
// (check 3): an agent nobody gave a budget spends nothing. With
// r.AllowUnbudgeted it is allowed instead: unmetered, but still reserved,
// settled and recorded like any other spend.
//
// An allowed decision has Code CodeAllowed, and its Remaining gives each
// policy's remaining budget after this spend; a denial's gives the
// remaining budget before it. Remaining is never negative. Decide formats
// no text and allocates only the Remaining slice when it allows.
func Decide(r *Request) Decision {
	currency := r.Currency
	if currency == "" {
		currency = money.DefaultCurrency
	}
	d := Decision{Price: r.Price, Currency: currency}

	// Evaluation order: policy indexes by chain position. Small requests
	// sort in a stack buffer.
	var buf [16]int
	order := buf[:0]
	if len(r.Policies) > len(buf) {
		order = make([]int, 0, len(r.Policies))
	}
	order = chainOrder(r, order)

	if len(r.Chain) == 0 {
		return deny(r, d, order, CodeUnknownAgent, "", "no agent to charge")
	}
	if r.Price < 0 {
		return deny(r, d, order, CodeUnavailable, "",
			fmt.Sprintf("invalid negative price %s %s for %q", r.Price, currency, r.Resource))
	}
	for i := range r.Chain {
		a := &r.Chain[i]
		if a.Status == StatusActive {
			continue
		}
		return deny(r, d, order, CodeAgentSuspended, "", suspendedReason(r.Chain, i))
	}
	if len(order) == 0 && !r.AllowUnbudgeted {
		return deny(r, d, order, CodeNoBudget, "", NoBudgetReason)
	}
	for _, pi := range order {
		pu := &r.Policies[pi]
		if Allows(pu.Policy, r.Resource) {
			continue
		}
		return deny(r, d, order, CodeNotAllowed, pu.Policy.ID,
			fmt.Sprintf("resource %q is not in the allowlist of %s", r.Resource, describePolicy(r, pu)))
	}
	for _, pi := range order {
		pu := &r.Policies[pi]
		if pu.Policy.Currency == currency {
			continue
		}
		return deny(r, d, order, CodeCurrency, pu.Policy.ID,
			fmt.Sprintf("price is in %s but %s is in %s", currency, describePolicy(r, pu), pu.Policy.Currency))
	}
	for _, pi := range order {
		pu := &r.Policies[pi]
		if fits(pu, r.Price) {
			continue
		}
		return deny(r, d, order, CodeBudgetExceeded, pu.Policy.ID, fmt.Sprintf(
			"%s: spent %s + reserved %s + price %s exceeds limit %s %s",
			describePolicy(r, pu), pu.Spent, pu.Reserved, r.Price, pu.Policy.Limit, pu.Policy.Currency))
	}

	d.Allow = true
	d.Code = CodeAllowed
	d.Reason = reasonAllowed
	if len(order) == 0 {
		d.Reason = reasonNoPolicies
	}
	d.Remaining = remaining(r, order, r.Price)
	return d
}

// deny completes a denying decision. Remaining shows the budgets as they
// are, since nothing is spent.
func deny(r *Request, d Decision, order []int, code Code, policyID, reason string) Decision {
	d.Code = code
	d.PolicyID = policyID
	d.Reason = reason
	d.Remaining = remaining(r, order, 0)
	return d
}

// chainOrder appends the indexes of r.Policies to order, the spending
// agent's first, then each ancestor's, then any whose agent is not on the
// chain; stable within each agent.
func chainOrder(r *Request, order []int) []int {
	for ci := range r.Chain {
		id := r.Chain[ci].ID
		for pi := range r.Policies {
			if r.Policies[pi].Policy.AgentID == id {
				order = append(order, pi)
			}
		}
	}
	if len(order) == len(r.Policies) {
		return order
	}
	for pi := range r.Policies {
		if chainIndex(r.Chain, r.Policies[pi].Policy.AgentID) < 0 {
			order = append(order, pi)
		}
	}
	return order
}

func chainIndex(chain []Agent, agentID string) int {
	for i := range chain {
		if chain[i].ID == agentID {
			return i
		}
	}
	return -1
}

// Allows reports whether p's allowlist lets an agent use resource: an
// empty allowlist allows everything, else one pattern must match.
func Allows(p Policy, resource string) bool {
	if len(p.Allow) == 0 {
		return true
	}
	for _, pat := range p.Allow {
		if MatchPattern(pat, resource) {
			return true
		}
	}
	return false
}

// fits reports whether spent + reserved + price ≤ limit. A sum that
// overflows does not fit.
func fits(pu *PolicyUsage, price money.Amount) bool {
	used, err := money.Sum(pu.Spent, pu.Reserved, price)
	return err == nil && used <= pu.Policy.Limit
}

// remaining lists every policy in evaluation order with what it has left
// once spend is taken, floored at zero.
func remaining(r *Request, order []int, spend money.Amount) []Remaining {
	if len(order) == 0 {
		return nil
	}
	out := make([]Remaining, len(order))
	for i, pi := range order {
		pu := &r.Policies[pi]
		left := pu.RemainingAfter(spend)
		out[i] = Remaining{
			PolicyID:  pu.Policy.ID,
			AgentID:   pu.Policy.AgentID,
			AgentName: agentName(r, pu),
			Window:    pu.Policy.Window,
			Limit:     pu.Policy.Limit,
			Spent:     pu.Spent,
			Reserved:  pu.Reserved,
			Remaining: left,
			Currency:  pu.Policy.Currency,
		}
	}
	return out
}

// agentName is the name of the policy's agent: PolicyUsage.AgentName, else
// the name on the chain, else the agent's ID.
func agentName(r *Request, pu *PolicyUsage) string {
	if pu.AgentName != "" {
		return pu.AgentName
	}
	if i := chainIndex(r.Chain, pu.Policy.AgentID); i >= 0 && r.Chain[i].Name != "" {
		return r.Chain[i].Name
	}
	return pu.Policy.AgentID
}

// describePolicy names a policy for a reason, e.g.
// `daily budget of agent "research" (policy 3f2a…)`.
func describePolicy(r *Request, pu *PolicyUsage) string {
	kind := string(pu.Policy.Window)
	if pu.Policy.Window != WindowTotal && pu.Policy.WindowType == WindowRolling {
		kind = "rolling " + kind
	}
	return fmt.Sprintf("%s budget of agent %q (policy %s)", kind, agentName(r, pu), pu.Policy.ID)
}

func suspendedReason(chain []Agent, i int) string {
	a := &chain[i]
	state := "suspended"
	if a.Status != StatusSuspended {
		state = fmt.Sprintf("not active (status %q)", a.Status)
	}
	if i == 0 {
		return fmt.Sprintf("agent %q is %s", nameOrID(a), state)
	}
	return fmt.Sprintf("agent %q cannot spend: its ancestor %q is %s", nameOrID(&chain[0]), nameOrID(a), state)
}

func nameOrID(a *Agent) string {
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}
