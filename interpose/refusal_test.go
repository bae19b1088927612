package interpose_test

import (
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

func TestBeginSafeDefaults(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*interpose.Options)
		budget   bool
		resource string
		allow    bool
		code     policy.Code
		unpriced bool
	}{
		{"unbudgeted agent refused", nil, false, "mcp:web/get", false, policy.CodeNoBudget, false},
		{"unbudgeted agent allowed when configured", func(o *interpose.Options) { o.AllowUnbudgeted = true }, false, "mcp:web/get", true, policy.CodeAllowed, true},
		{"unpriced model refused", nil, true, "llm:openai/gpt-x", false, policy.CodeUnpriced, false},
		{"unpriced model charged the default when configured", func(o *interpose.Options) { o.ChargeUnpricedLLM = true }, true, "llm:openai/gpt-x", true, policy.CodeAllowed, true},
		{"unpriced tool charged the default", nil, true, "mcp:web/get", true, policy.CodeAllowed, true},
		{"unpriced http route charged the default", nil, true, "http:openai/v1/files", true, policy.CodeAllowed, true},
		{"strict refuses an unpriced tool", func(o *interpose.Options) { o.Strict = true }, true, "mcp:web/get", false, policy.CodeUnpriced, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *interpose.Options) {
				o.DefaultPrice = m("0.01")
				if tt.mod != nil {
					tt.mod(o)
				}
			})
			if tt.budget {
				e.budget("10")
			}
			tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: tt.resource, Operation: "op"})
			if (tk != nil) != tt.allow || d.Allow != tt.allow || d.Code != tt.code {
				t.Fatalf("Begin = %+v, %+v; want allow %v code %s", tk, d, tt.allow, tt.code)
			}
			evs := e.events()
			if !tt.allow {
				if len(evs) != 1 || evs[0].Outcome != policy.OutcomeDenied || evs[0].Code != tt.code || evs[0].Reason == "" {
					t.Fatalf("events %+v; want one recorded %s denial", evs, tt.code)
				}
				return
			}
			ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{})
			if err != nil || ev.Unpriced != tt.unpriced || ev.Amount != m("0.01") {
				t.Fatalf("Settle = %+v, %v", ev, err)
			}
		})
	}
}

func TestBeginInvalidPerUnitArguments(t *testing.T) {
	for _, args := range []string{`{"count":"abc"}`, `{"count":-5}`, `{"count":true}`} {
		t.Run(args, func(t *testing.T) {
			e := newEnv(t, nil)
			e.budget("10")
			e.price(policy.PriceRule{Resource: "mcp:search/query", PerCall: m("0.01"), PerUnit: &policy.PerUnit{Path: "count", Price: m("0.002")}})
			tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:search/query", Operation: "tools/call", Arguments: []byte(args)})
			if tk != nil || d.Code != policy.CodeInvalidArguments || !strings.Contains(d.Reason, `argument "count" must be a non-negative number`) {
				t.Fatalf("Begin = %+v, %+v; want invalid_arguments naming the argument", tk, d)
			}
			evs := e.events()
			if len(evs) != 1 || evs[0].Outcome != policy.OutcomeDenied || evs[0].Code != policy.CodeInvalidArguments || evs[0].Reason != d.Reason {
				t.Fatalf("events %+v; want one recorded invalid_arguments denial", evs)
			}
		})
	}
}

func TestPerUnitChargeRecordsQuantityAndUnit(t *testing.T) {
	tests := []struct{ args, amount, quantity string }{
		{`{"count":25}`, "0.06", "25"},
		{`{"count":"2.50"}`, "0.015", "2.5"},
		{`{}`, "0.01", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			e := newEnv(t, nil)
			e.budget("10")
			e.price(policy.PriceRule{Resource: "mcp:search/query", PerCall: m("0.01"), PerUnit: &policy.PerUnit{Path: "count", Price: m("0.002")}})
			tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:search/query", Operation: "tools/call", Arguments: []byte(tt.args)})
			if tk == nil {
				t.Fatalf("Begin refused: %+v", d)
			}
			ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Amount != m(tt.amount) || ev.Quantity != tt.quantity || ev.Unit != "count" {
				t.Fatalf("event amount %s quantity %q unit %q; want %s, %s, count", ev.Amount, ev.Quantity, ev.Unit, tt.amount, tt.quantity)
			}
		})
	}
}

func TestWorstCaseRefusalSaysSo(t *testing.T) {
	e := newEnv(t, nil)
	p := e.budget("0.97")
	e.price(policy.PriceRule{Resource: "llm:openai/gpt-5", OutputPerMillion: m("10")})
	explained := 0
	explain := func() interpose.WorstCase {
		explained++
		return interpose.WorstCase{Basis: "max_tokens unset: 128,000 output tokens at 10 USD per million", Hint: "set max_tokens to reserve less"}
	}
	// Allowed: the explanation is never formatted.
	within := m("0.5")
	tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-5", Operation: "chat.completions", Reserve: &within, WorstCase: explain})
	if tk == nil || explained != 0 {
		t.Fatalf("allowed Begin = %+v, %+v; explanation formatted %d times, want 0", tk, d, explained)
	}
	if _, err := e.eng.Release(e.ctx, tk, "test"); err != nil {
		t.Fatal(err)
	}
	worst := m("1.28")
	tk, d = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-5", Operation: "chat.completions", Reserve: &worst, WorstCase: explain})
	if tk != nil || d.Code != policy.CodeBudgetExceeded || explained != 1 {
		t.Fatalf("Begin = %+v, %+v; explanation formatted %d times, want 1", tk, d, explained)
	}
	want := "the worst case of this request (max_tokens unset: 128,000 output tokens at 10 USD per million) is 1.28 USD, above the 0.97 USD left on the daily budget of agent \"agent-a\" (policy " + p.ID + "); set max_tokens to reserve less"
	if d.Reason != want {
		t.Fatalf("reason %q\nwant   %q", d.Reason, want)
	}
}
