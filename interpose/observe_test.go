package interpose_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// recorder is an Observer keeping every Record.
type recorder struct {
	mu sync.Mutex
	rs []interpose.Record
}

func (r *recorder) Observe(_ context.Context, rec interpose.Record) {
	r.mu.Lock()
	r.rs = append(r.rs, rec)
	r.mu.Unlock()
}

func (r *recorder) take() []interpose.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.rs
	r.rs = nil
	return out
}

// TestObserverSeesEveryDecision drives each kind of decision through the
// engine and checks the one Record each produces: outcome, code, kind,
// agent name, resource and amount.
func TestObserverSeesEveryDecision(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(o *interpose.Options) { o.Observer = rec })
	e.budget("2.5")
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("1")})
	call := func(resource string) interpose.Call {
		return interpose.Call{AgentID: e.agent.ID, Resource: resource, Operation: "tools/call"}
	}
	type want struct {
		outcome, code, kind, resource string
		amount                        string
	}
	check := func(step string, w want) interpose.Record {
		t.Helper()
		rs := rec.take()
		if len(rs) != 1 {
			t.Fatalf("%s: %d records, want 1: %+v", step, len(rs), rs)
		}
		r := rs[0]
		if r.Outcome != w.outcome || r.Code != w.code || r.Kind != w.kind || r.Resource != w.resource || r.Amount.String() != w.amount || r.Currency != "USD" {
			t.Errorf("%s: got %s/%s/%s %s %s %s, want %+v", step, r.Outcome, r.Code, r.Kind, r.Resource, r.Amount, r.Currency, w)
		}
		if r.AgentID != e.agent.ID || r.AgentName != "agent-a" {
			t.Errorf("%s: agent %q (%q), want %q (agent-a)", step, r.AgentID, r.AgentName, e.agent.ID)
		}
		if r.Duration <= 0 {
			t.Errorf("%s: no duration", step)
		}
		return r
	}

	t1, d := e.eng.Begin(e.ctx, call("mcp:fs/read"))
	if t1 == nil {
		t.Fatalf("denied: %+v", d)
	}
	a := check("begin", want{interpose.Allowed, "allowed", "mcp", "mcp:fs/read", "1.00"})
	if a.RequestID != t1.RequestID {
		t.Errorf("request id %q, want %q", a.RequestID, t1.RequestID)
	}
	if _, err := e.eng.Settle(e.ctx, t1, interpose.Result{}); err != nil {
		t.Fatal(err)
	}
	s := check("settle", want{interpose.Settled, "charged", "mcp", "mcp:fs/read", "1.00"})
	if s.RequestID != t1.RequestID {
		t.Errorf("settle request id %q, want %q", s.RequestID, t1.RequestID)
	}

	t2, _ := e.eng.Begin(e.ctx, call("mcp:fs/write"))
	check("begin 2", want{interpose.Allowed, "allowed", "mcp", "mcp:fs/write", "1.00"})
	if _, err := e.eng.Release(e.ctx, t2, "never ran"); err != nil {
		t.Fatal(err)
	}
	check("release", want{interpose.Released, "refunded", "mcp", "mcp:fs/write", "0.00"})

	t3, _ := e.eng.Begin(e.ctx, call("mcp:fs/list"))
	check("begin 3", want{interpose.Allowed, "allowed", "mcp", "mcp:fs/list", "1.00"})
	if _, err := e.eng.Unconfirmed(e.ctx, t3, "upstream lost"); err != nil {
		t.Fatal(err)
	}
	check("unconfirmed", want{interpose.Unconfirmed, "unconfirmed", "mcp", "mcp:fs/list", "1.00"})

	// 2 of 2.5 spent: the next call at 1 is over budget.
	if t4, _ := e.eng.Begin(e.ctx, call("mcp:fs/read")); t4 != nil {
		t.Fatal("over-budget call admitted")
	}
	r := check("denied", want{interpose.Denied, "budget_exceeded", "mcp", "mcp:fs/read", "1.00"})
	// The denial in the ledger carries the same request ID as its Record.
	evs := e.events()
	if last := evs[len(evs)-1]; r.RequestID == "" || last.Outcome != policy.OutcomeDenied || last.RequestID != r.RequestID {
		t.Errorf("denial record request ID %q, ledger %+v", r.RequestID, last)
	}
	// The Record carries the decision's reason and the refusing policy, for
	// observers (alerts) that report them.
	if last := evs[len(evs)-1]; r.PolicyID == "" || r.Reason == "" || r.Reason != last.Reason {
		t.Errorf("denial record policy %q reason %q, ledger reason %q", r.PolicyID, r.Reason, last.Reason)
	}
}

// TestObserverSeesStoreFailure: a settlement the store cannot record is
// reported with CodeError and the error, and charges nothing.
func TestObserverSeesStoreFailure(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(o *interpose.Options) { o.Observer = rec; o.ChargeUnpricedLLM = true })
	e.budget("10")
	tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-4o", Reserve: ptr(m("0.5"))})
	if tk == nil {
		t.Fatalf("denied: %+v", d)
	}
	_ = rec.take()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Settle(e.ctx, tk, interpose.Result{}); err == nil {
		t.Fatal("settle on a closed store succeeded")
	}
	rs := rec.take()
	if len(rs) != 1 || rs[0].Outcome != interpose.Settled || rs[0].Code != interpose.CodeError || rs[0].Err == nil || rs[0].Amount != 0 || rs[0].Kind != "llm" {
		t.Fatalf("records %+v", rs)
	}
}

func ptr[T any](v T) *T { return &v }

// countingStore counts GetAgent reads.
type countingStore struct {
	ledger.Store
	mu    sync.Mutex
	reads int
}

func (s *countingStore) GetAgent(ctx context.Context, idOrName string) (policy.Agent, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.Store.GetAgent(ctx, idOrName)
}

// TestObserverCachesAgentNames: naming agents in Records costs one store
// read per agent, not one per call, and an unknown agent is remembered too.
func TestObserverCachesAgentNames(t *testing.T) {
	rec := &recorder{}
	var cs *countingStore
	e := newEnv(t, func(o *interpose.Options) {
		cs = &countingStore{Store: o.Store}
		o.Store, o.Observer = cs, rec
	})
	e.budget("100")
	for range 3 {
		tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/x"})
		if tk == nil {
			t.Fatalf("denied: %+v", d)
		}
	}
	for range 2 {
		e.eng.Begin(e.ctx, interpose.Call{AgentID: "no-such-agent", Resource: "mcp:fs/x"})
	}
	rs := rec.take()
	if len(rs) != 5 || rs[2].AgentName != "agent-a" || rs[4].AgentName != "" || rs[4].Code != string(policy.CodeUnknownAgent) {
		t.Fatalf("records %+v", rs)
	}
	if cs.reads != 2 {
		t.Errorf("%d agent reads for 2 agents", cs.reads)
	}
}

// TestObserverSeesSweep: the expiry sweep reports how many reservations it
// settled as unconfirmed, in one Record.
func TestObserverSeesSweep(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(o *interpose.Options) { o.Observer = rec })
	e.budget("10")
	for range 2 {
		if tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/x"}); tk == nil {
			t.Fatalf("denied: %+v", d)
		}
	}
	_ = rec.take()
	if n := e.eng.Sweep(e.ctx); n != 0 {
		t.Fatalf("swept %d before expiry", n)
	}
	if rs := rec.take(); len(rs) != 0 {
		t.Fatalf("a sweep that settled nothing reported %+v", rs)
	}
	e.clk.Add(interpose.DefaultReservationTTL + time.Second)
	if n := e.eng.Sweep(e.ctx); n != 2 {
		t.Fatalf("swept %d, want 2", n)
	}
	rs := rec.take()
	if len(rs) != 1 || rs[0].Code != interpose.CodeExpired || rs[0].Outcome != interpose.Unconfirmed || rs[0].Count != 2 {
		t.Fatalf("records %+v", rs)
	}
}

// TestObserverSeesOverrunCode: a settlement above the reservation is
// recorded with code usage_overrun, not charged, so the decision log and
// caracal_decisions_total show it; one within it keeps code charged.
func TestObserverSeesOverrunCode(t *testing.T) {
	tests := []struct {
		name   string
		amount string
		code   string
	}{
		{"within the reservation", "0.005", string(policy.OutcomeCharged)},
		{"above the reservation", "0.02", string(policy.CodeUsageOverrun)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			e := newEnv(t, func(o *interpose.Options) { o.Observer = rec })
			e.budget("1.00")
			e.price(policy.PriceRule{Resource: "llm:openai/gpt-4o", Currency: "USD", InputPerMillion: m("2.50"), OutputPerMillion: m("10.00")})
			worst := m("0.01")
			tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-4o", Reserve: &worst})
			if tk == nil {
				t.Fatalf("Begin = %+v", d)
			}
			if _, err := e.eng.Settle(e.ctx, tk, interpose.Result{Amount: new(m(tt.amount))}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rec.take() {
				if r.Outcome == interpose.Settled {
					got = append(got, r.Code)
				}
			}
			if len(got) != 1 || got[0] != tt.code {
				t.Fatalf("settled records' codes = %v, want [%s]", got, tt.code)
			}
		})
	}
}
