package interpose_test

import (
	"errors"
	"testing"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func TestResume(t *testing.T) {
	e := newEnv(t, nil)
	e.budget("10")
	e.price(policy.PriceRule{Resource: "llm:openai/*", InputPerMillion: m("2"), OutputPerMillion: m("8")})
	amt := m("1")
	tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-4o", Reserve: &amt})
	if tk == nil {
		t.Fatalf("denied: %+v", d)
	}

	other, err := e.store.CreateAgent(e.ctx, ledger.NewAgent{Name: "agent-b", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.eng.Resume(e.ctx, other.ID, tk.RequestID, nil); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Resume by another agent = %v, want ErrNotFound", err)
	}
	if _, _, err := e.eng.Resume(e.ctx, e.agent.ID, "no-such-request", nil); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Resume of an unknown request = %v, want ErrNotFound", err)
	}

	rt, r, err := e.eng.Resume(e.ctx, e.agent.ID, tk.RequestID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Reserved != amt || r.Status != "open" || rt.Quote.Rule == nil {
		t.Fatalf("resumed ticket %+v, reservation %+v", rt, r)
	}
	// Usage is priced under the rule the resumed ticket carries:
	// 100k input at $2/M + 50k output at $8/M = 0.20 + 0.40.
	ev, err := e.eng.Settle(e.ctx, rt, interpose.Result{Tokens: &policy.Tokens{Input: 100_000, Output: 50_000}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Amount != m("0.6") || ev.Outcome != policy.OutcomeCharged {
		t.Fatalf("settled %+v, want 0.6 charged", ev)
	}
	// Settling the resumed ticket again returns the first event.
	again, err := e.eng.Settle(e.ctx, rt, interpose.Result{Amount: &amt})
	if err != nil || again.ID != ev.ID || again.Amount != ev.Amount {
		t.Fatalf("second settle = %+v, %v; want the first event", again, err)
	}
}
