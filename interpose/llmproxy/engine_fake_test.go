package llmproxy

import (
	"context"
	"fmt"
	"math/big"
	"sync"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// fakeEngine is an in-memory budget with one limit, enough to exercise the
// proxy's use of the Engine contract.
type fakeEngine struct {
	mu       sync.Mutex
	limit    money.Amount
	spent    money.Amount
	reserved money.Amount
	peak     money.Amount // highest spent+reserved ever seen
	rules    []policy.PriceRule
	allow    string // allowlist pattern; empty allows all
	tickets  map[string]*interpose.Ticket
	done     map[string]ledger.Event
	events   []ledger.Event
	down     bool
}

func newFakeEngine(limit money.Amount, rules ...policy.PriceRule) *fakeEngine {
	return &fakeEngine{limit: limit, rules: rules, tickets: map[string]*interpose.Ticket{}, done: map[string]ledger.Event{}}
}

func (e *fakeEngine) Authenticate(_ context.Context, key string) (policy.Agent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.down:
		return policy.Agent{}, fmt.Errorf("authenticate: %w", ledger.ErrUnavailable)
	case key == "crk_good":
		return policy.Agent{ID: "agent-1", Name: "bot", Status: policy.StatusActive}, nil
	case key == "crk_revoked":
		return policy.Agent{}, interpose.ErrKeyRevoked
	case key == "crk_suspended":
		return policy.Agent{}, fmt.Errorf("agent %q: %w", "bot", interpose.ErrAgentSuspended)
	}
	return policy.Agent{}, interpose.ErrUnknownKey
}

func (e *fakeEngine) Allowlist(context.Context, string) (func(string) bool, error) {
	return func(string) bool { return true }, nil
}

func (e *fakeEngine) Quote(_ context.Context, resource string, _ []byte, _ *policy.PriceRule) (interpose.Quote, error) {
	r, ok := policy.MatchRule(e.rules, resource)
	if !ok {
		return interpose.Quote{Currency: "USD", Unpriced: true}, nil
	}
	return interpose.Quote{Price: r.PerCall, Currency: "USD", Rule: &r}, nil
}

func (e *fakeEngine) remaining() []policy.Remaining {
	return []policy.Remaining{{PolicyID: "p1", Limit: e.limit, Spent: e.spent, Reserved: e.reserved, Remaining: e.limit - e.spent - e.reserved, Currency: "USD"}}
}

func (e *fakeEngine) Begin(ctx context.Context, c interpose.Call) (*interpose.Ticket, policy.Decision) {
	q, _ := e.Quote(ctx, c.Resource, nil, nil)
	e.mu.Lock()
	defer e.mu.Unlock()
	amount := q.Price
	if c.Reserve != nil {
		amount = *c.Reserve
	}
	deny := func(code policy.Code, reason string) (*interpose.Ticket, policy.Decision) {
		d := policy.Decision{Code: code, Reason: reason, Price: amount, Currency: "USD", Remaining: e.remaining()}
		e.events = append(e.events, ledger.Event{RequestID: c.RequestID, Resource: c.Resource, Outcome: policy.OutcomeDenied, Code: code})
		return nil, d
	}
	switch {
	case e.down:
		return deny(policy.CodeUnavailable, "store down")
	case e.allow != "" && !policy.MatchPattern(e.allow, c.Resource):
		return deny(policy.CodeNotAllowed, c.Resource+" is not in the allowlist of policy p1")
	case e.spent+e.reserved+amount > e.limit:
		return deny(policy.CodeBudgetExceeded, fmt.Sprintf("policy p1: spent %s + reserved %s + price %s exceeds limit %s USD", e.spent, e.reserved, amount, e.limit))
	}
	e.reserved += amount
	e.peak = max(e.peak, e.spent+e.reserved)
	t := &interpose.Ticket{RequestID: c.RequestID, Quote: q, Reserved: amount, Decision: policy.Decision{Allow: true, Code: policy.CodeAllowed, Price: amount, Currency: "USD", Remaining: e.remaining()}}
	e.tickets[c.RequestID] = t
	return t, t.Decision
}

func (e *fakeEngine) finish(t *interpose.Ticket, outcome policy.Outcome, amount money.Amount, tokens policy.Tokens, reason string) (ledger.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev, ok := e.done[t.RequestID]; ok {
		return ev, nil
	}
	e.reserved -= t.Reserved
	e.spent += amount
	e.peak = max(e.peak, e.spent+e.reserved)
	ev := ledger.Event{RequestID: t.RequestID, Resource: "", Amount: amount, Currency: "USD", Outcome: outcome, Tokens: tokens, Reason: reason}
	e.done[t.RequestID] = ev
	e.events = append(e.events, ev)
	return ev, nil
}

func (e *fakeEngine) Settle(_ context.Context, t *interpose.Ticket, r interpose.Result) (ledger.Event, error) {
	var tokens policy.Tokens
	if r.Tokens != nil {
		tokens = *r.Tokens
	}
	amount := t.Reserved
	switch {
	case r.Amount != nil:
		amount = *r.Amount
	case r.Tokens != nil:
		amount = testCost(*t.Quote.Rule, tokens)
	}
	return e.finish(t, policy.OutcomeCharged, amount, tokens, "")
}

func (e *fakeEngine) Release(_ context.Context, t *interpose.Ticket, reason string) (ledger.Event, error) {
	return e.finish(t, policy.OutcomeRefunded, 0, policy.Tokens{}, reason)
}

func (e *fakeEngine) Unconfirmed(_ context.Context, t *interpose.Ticket, reason string) (ledger.Event, error) {
	return e.finish(t, policy.OutcomeUnconfirmed, t.Reserved, policy.Tokens{}, reason)
}

// open counts admitted calls not yet finished.
func (e *fakeEngine) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.tickets) - len(e.done)
}

func (e *fakeEngine) finished() []ledger.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ledger.Event
	for _, ev := range e.events {
		if ev.Outcome != policy.OutcomeDenied {
			out = append(out, ev)
		}
	}
	return out
}

// testCost is the documented token pricing, written out independently:
// disjoint counts times their per-million rates, a class without a rate
// billed at its parent class's rate (reasoning as output, cached reads and
// cache writes as input), one rounding half up at the end.
func testCost(r policy.PriceRule, t policy.Tokens) money.Amount {
	rate := func(own, parent money.Amount) int64 {
		if own == 0 {
			return int64(parent)
		}
		return int64(own)
	}
	sum := new(big.Int)
	for _, p := range [][2]int64{
		{int64(r.InputPerMillion), t.Input},
		{rate(r.CachedInputPerMillion, r.InputPerMillion), t.CachedRead},
		{rate(r.CacheWritePerMillion, r.InputPerMillion), t.CacheWrite},
		{int64(r.OutputPerMillion), t.Output},
		{rate(r.ReasoningPerMillion, r.OutputPerMillion), t.Reasoning},
	} {
		sum.Add(sum, new(big.Int).Mul(big.NewInt(p[0]), big.NewInt(p[1])))
	}
	sum.Add(sum, big.NewInt(500_000))
	sum.Quo(sum, big.NewInt(1_000_000))
	return money.Amount(sum.Int64()) + r.PerCall
}
