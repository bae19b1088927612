package interpose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// WorstCase explains a Call's Reserve so that a refusal it causes can say
// what the worst case assumed and how to reserve less.
type WorstCase struct {
	// Basis is what the worst case assumes, e.g. "max_tokens unset:
	// 128,000 output tokens at 10 USD per million".
	Basis string
	// Hint tells the caller how to reserve less, e.g. "set max_tokens to
	// reserve less".
	Hint string
}

// worstCaseReason rewrites a budget_exceeded decision caused by reserving
// amount, a worst case, so that it names the worst case and what is left:
// "the worst case of this request (…) is 1.28 USD, above the 0.97 USD left
// on daily budget …; set max_tokens to reserve less". Other decisions are
// returned as they are.
func worstCaseReason(d policy.Decision, amount money.Amount, currency string, explain func() WorstCase) policy.Decision {
	if explain == nil || d.Code != policy.CodeBudgetExceeded {
		return d
	}
	w := explain()
	left, where := money.Amount(0), ""
	for _, r := range d.Remaining {
		if r.PolicyID == d.PolicyID {
			left = r.Remaining
			where = fmt.Sprintf(" on the %s budget of agent %q (policy %s)", r.Window, r.AgentName, r.PolicyID)
			break
		}
	}
	reason := fmt.Sprintf("the worst case of this request (%s) is %s %s, above the %s %s left%s",
		w.Basis, amount, currency, left, currency, where)
	if w.Hint != "" {
		reason += "; " + w.Hint
	}
	d.Reason = reason
	return d
}

// unpricedRefusal is the decision on a resource no price rule prices, or
// false when it is charged the default price: every resource under Strict,
// LLM models unless ChargeUnpricedLLM.
func (e *Engine) unpricedRefusal(resource, currency string) (policy.Decision, bool) {
	switch {
	case e.opts.Strict:
		return policy.Decision{Code: policy.CodeUnpriced, Currency: currency,
			Reason: fmt.Sprintf("%s has no price and strict pricing refuses unpriced resources", resource)}, true
	case strings.HasPrefix(resource, "llm:") && !e.opts.ChargeUnpricedLLM:
		return policy.Decision{Code: policy.CodeUnpriced, Currency: currency,
			Reason: fmt.Sprintf("model %s has no price rule, and unpriced models are refused: add a price for it to the pricebook (caracal pricebook set), or set pricing.unpriced_llm: default to charge pricing.default", resource)}, true
	}
	return policy.Decision{}, false
}

// invalidArguments is the decision on a call whose arguments a per-unit
// price cannot read, or false when err is not such an error.
func invalidArguments(err error, currency string) (policy.Decision, bool) {
	var ae *policy.ArgumentError
	if !errors.As(err, &ae) {
		return policy.Decision{}, false
	}
	return policy.Decision{Code: policy.CodeInvalidArguments, Currency: currency, Reason: ae.Error()}, true
}

// recordDenial writes a denial decided before the reservation to the
// ledger, so the audit trail shows every decision, strict-pricing
// refusals included.
func (e *Engine) recordDenial(ctx context.Context, req ledger.ReserveRequest, d policy.Decision) {
	if _, err := e.opts.Store.RecordDenial(ctx, req, d); err != nil {
		e.log.Error("recording a denial failed", "request_id", req.RequestID, "agent", req.AgentID, "resource", req.Resource, "err", err)
	}
}

// perUnitQuantity is the quantity and unit a per-unit price reads from a
// call's arguments (the unit is the argument's path), or "" when the
// quote has no per-unit price.
func perUnitQuantity(q Quote, args []byte) (quantity, unit string) {
	if q.Rule == nil || q.Rule.PerUnit == nil {
		return "", ""
	}
	n, err := policy.Quantity(args, q.Rule.PerUnit.Path)
	if err != nil {
		return "", ""
	}
	// A quantity is a count, not money: no padding to cents ("3", "2.5").
	text := n.String()
	if strings.Contains(text, ".") {
		text = strings.TrimRight(strings.TrimRight(text, "0"), ".")
	}
	return text, q.Rule.PerUnit.Path
}
