package interpose_test

import (
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// TestSettleMarksOverrun: a settlement above the reservation is charged in
// full, marked usage_overrun and logged; one within it is not marked; and
// the agent is refused while it is over its limit.
func TestSettleMarksOverrun(t *testing.T) {
	tests := []struct {
		name    string
		result  func() interpose.Result
		amount  string
		overrun bool
	}{
		{"tokens within the reservation", func() interpose.Result {
			return interpose.Result{Tokens: &policy.Tokens{Input: 12, Output: 5}}
		}, "0.00008", false},
		{"exactly the reservation", func() interpose.Result { return interpose.Result{Amount: new(m("0.01"))} }, "0.01", false},
		{"tokens above the reservation", func() interpose.Result {
			return interpose.Result{Tokens: &policy.Tokens{Input: 12, Output: 1_000_000}}
		}, "10.00003", true},
		{"amount above the reservation", func() interpose.Result { return interpose.Result{Amount: new(m("0.010000001"))} }, "0.010000001", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.budget("1.00")
			e.price(policy.PriceRule{Resource: "llm:openai/gpt-4o", Currency: "USD", InputPerMillion: m("2.50"), OutputPerMillion: m("10.00")})
			worst := m("0.01")
			call := interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-4o", Operation: "chat.completions", Reserve: &worst}
			tk, d := e.eng.Begin(e.ctx, call)
			if tk == nil {
				t.Fatalf("Begin = %+v", d)
			}
			ev, err := e.eng.Settle(e.ctx, tk, tt.result())
			if err != nil || ev.Outcome != policy.OutcomeCharged || ev.Amount != m(tt.amount) {
				t.Fatalf("Settle = %+v, %v; want charged %s", ev, err, tt.amount)
			}
			stored := e.events()[0]
			logged := strings.Contains(e.logs.String(), "usage overran the reservation")
			if !tt.overrun {
				if ev.Code != "" || stored.Code != "" || logged {
					t.Fatalf("marked as an overrun: event %q, stored %q, logged %v", ev.Code, stored.Code, logged)
				}
				return
			}
			if ev.Code != policy.CodeUsageOverrun || stored.Code != policy.CodeUsageOverrun {
				t.Fatalf("codes: returned %q, stored %q; want usage_overrun", ev.Code, stored.Code)
			}
			for _, want := range []string{"level=WARN", "agent=agent-a", "resource=llm:openai/gpt-4o", "reserved=0.01", "charged=" + tt.amount} {
				if !strings.Contains(e.logs.String(), want) {
					t.Errorf("warning lacks %q:\n%s", want, e.logs.String())
				}
			}
			if tt.amount != "10.00003" {
				return
			}
			// Over its limit now: every later call is refused.
			for i := 0; i < 2; i++ {
				if tk, d := e.eng.Begin(e.ctx, call); tk != nil || d.Code != policy.CodeBudgetExceeded {
					t.Fatalf("call %d after the overrun = %+v, %+v; want budget_exceeded", i, tk, d)
				}
			}
		})
	}
}
