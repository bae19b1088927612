package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// refusingMeter refuses every call with dec and prices every tool with q,
// or fails to with quoteErr.
type refusingMeter struct {
	meter
	dec      policy.Decision
	q        interpose.Quote
	quoteErr error
}

func (m *refusingMeter) Begin(context.Context, interpose.Call) (*interpose.Ticket, policy.Decision) {
	return nil, m.dec
}

func (m *refusingMeter) Quote(context.Context, string, []byte, *policy.PriceRule) (interpose.Quote, error) {
	return m.q, m.quoteErr
}

// TestMiddlewareRefusalCarriesTheRelaysDetails: the middleware wrote its
// refusals by hand and left out the deciding policy and the text the relay
// writes when the budget could not be checked.
func TestMiddlewareRefusalCarriesTheRelaysDetails(t *testing.T) {
	tests := []struct {
		name     string
		dec      policy.Decision
		text     string
		policyID any
	}{
		{"over budget", policy.Decision{Code: policy.CodeBudgetExceeded, Reason: "limit\nreached", PolicyID: "pol-1", Price: money.MustParse("0.25"), Currency: "USD"},
			"Caracal refused this call (budget_exceeded): limit reached.", "pol-1"},
		{"store down", policy.Decision{Code: policy.CodeUnavailable, Reason: "budget store unavailable"},
			"Caracal could not check this call's budget, so the call was not made (unavailable): budget store unavailable.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &refusingMeter{dec: tc.dec}
			h := New(Options{Meter: m, Server: "demo", Agent: FixedAgent("a1")})(func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				t.Error("the handler ran for a refused call")
				return nil, nil
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = "tool"
			res, err := h(context.Background(), req)
			if err != nil || !res.IsError {
				t.Fatalf("= %+v, %v; want an isError result", res, err)
			}
			text, _ := res.Content[0].(mcp.TextContent)
			if !strings.HasPrefix(text.Text, tc.text) {
				t.Errorf("text = %q, want it to begin %q", text.Text, tc.text)
			}
			sc, _ := res.StructuredContent.(map[string]any)
			if sc["policy_id"] != tc.policyID || sc["resource"] != "mcp:demo/tool" || sc["code"] != string(tc.dec.Code) {
				t.Errorf("structuredContent = %v, want policy_id %v for mcp:demo/tool", sc, tc.policyID)
			}
			if meta, _ := json.Marshal(res.Meta.AdditionalFields[DecisionMetaKey]); !strings.Contains(string(meta), `"code":"`+string(tc.dec.Code)+`"`) {
				t.Errorf("_meta[%s] = %s", DecisionMetaKey, meta)
			}
		})
	}
}

// TestToolFilterPriceMetaCarriesTheRelaysFields: the listed price says
// when a server declared it, and says so when it could not be read.
func TestToolFilterPriceMetaCarriesTheRelaysFields(t *testing.T) {
	tests := []struct {
		name string
		m    *refusingMeter
		want map[string]any
	}{
		{"declared", &refusingMeter{q: interpose.Quote{Price: money.MustParse("0.01"), Currency: "USD", Declared: true}},
			map[string]any{"price": "0.01", "currency": "USD", "unpriced": false, "declared": true}},
		{"unreadable", &refusingMeter{quoteErr: errors.New("database is locked")},
			map[string]any{"price": "", "currency": "", "unpriced": true, "error": "Caracal could not read this tool's price"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := ToolFilter(Options{Meter: tc.m, Server: "demo"}, func(context.Context) (string, error) { return "a1", nil })
			tools := f(context.Background(), []mcp.Tool{mcp.NewTool("weather")})
			if len(tools) != 1 {
				t.Fatalf("tools = %+v", tools)
			}
			got, _ := json.Marshal(tools[0].Meta.AdditionalFields[PriceMetaKey])
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Errorf("price meta = %s, want %s", got, want)
			}
		})
	}
}
