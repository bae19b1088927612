package middleware

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// meter admits calls while budget lasts and records how each ended.
type meter struct {
	mu       sync.Mutex
	budget   int // calls it will still admit
	outcomes []string
}

func (m *meter) Allowlist(context.Context, string) (func(string) bool, error) {
	return func(r string) bool { return r != "mcp:demo/secret" }, nil
}

func (m *meter) Quote(context.Context, string, []byte, *policy.PriceRule) (interpose.Quote, error) {
	return interpose.Quote{Price: money.MustParse("0.25"), Currency: "USD"}, nil
}

func (m *meter) Begin(_ context.Context, c interpose.Call) (*interpose.Ticket, policy.Decision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.budget == 0 {
		m.outcomes = append(m.outcomes, "denied")
		return nil, policy.Decision{Code: policy.CodeBudgetExceeded, Reason: "policy p limit 0.50 USD", Price: money.MustParse("0.25"), Currency: "USD"}
	}
	m.budget--
	return &interpose.Ticket{RequestID: c.Resource}, policy.Decision{Allow: true}
}

func (m *meter) add(s string) (ledger.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes = append(m.outcomes, s)
	return ledger.Event{}, nil
}

func (m *meter) Settle(_ context.Context, _ *interpose.Ticket, r interpose.Result) (ledger.Event, error) {
	if r.ToolError {
		return m.add("charged-tool-error")
	}
	return m.add("charged")
}
func (m *meter) Release(context.Context, *interpose.Ticket, string) (ledger.Event, error) {
	return m.add("released")
}
func (m *meter) Unconfirmed(context.Context, *interpose.Ticket, string) (ledger.Event, error) {
	return m.add("unconfirmed")
}

func TestMiddlewareOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		budget  int
		handler server.ToolHandlerFunc
		want    string
		ran     bool
		isError bool
		err     bool
		panics  bool
	}{
		{"result charged", 1, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("ok"), nil
		}, "charged", true, false, false, false},
		{"isError result charged", 1, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultError("bad input"), nil
		}, "charged-tool-error", true, true, false, false},
		{"handler error released", 1, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("boom")
		}, "released", true, false, true, false},
		{"panic unconfirmed", 1, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			panic("kaput")
		}, "unconfirmed", true, false, false, true},
		{"over budget refused before the handler", 0, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			t.Error("the handler ran for a refused call")
			return nil, nil
		}, "denied", false, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &meter{budget: tc.budget}
			h := New(Options{Meter: m, Server: "demo", Agent: FixedAgent("a1")})(tc.handler)
			req := mcp.CallToolRequest{}
			req.Params.Name = "tool"
			var res *mcp.CallToolResult
			var err error
			func() {
				defer func() {
					if p := recover(); (p != nil) != tc.panics {
						t.Errorf("panic = %v", p)
					}
				}()
				res, err = h(context.Background(), req)
			}()
			if (err != nil) != tc.err {
				t.Errorf("err = %v", err)
			}
			if !tc.panics && !tc.err && res.IsError != tc.isError {
				t.Errorf("isError = %v", res.IsError)
			}
			if len(m.outcomes) != 1 || m.outcomes[0] != tc.want {
				t.Errorf("outcomes = %v, want [%s]", m.outcomes, tc.want)
			}
			if tc.want == "denied" {
				sc, _ := res.StructuredContent.(map[string]any)
				if sc["code"] != "budget_exceeded" || sc["price"] != "0.25" || res.Meta.AdditionalFields[DecisionMetaKey] == nil {
					t.Errorf("refusal details: %+v %+v", res.StructuredContent, res.Meta)
				}
			}
		})
	}
}

// TestMiddlewareThroughServer drives an mcp-go server with the middleware
// and filter from mcp-go's in-process client.
func TestMiddlewareThroughServer(t *testing.T) {
	m := &meter{budget: 1}
	o := Options{Meter: m, Server: "demo", Agent: FixedAgent("a1")}
	s := server.NewMCPServer("demo", "1", server.WithToolCapabilities(false),
		server.WithToolHandlerMiddleware(New(o)),
		server.WithToolFilter(ToolFilter(o, func(context.Context) (string, error) { return "a1", nil })))
	ok := func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	}
	s.AddTool(mcp.NewTool("weather"), ok)
	s.AddTool(mcp.NewTool("secret"), ok)
	c, err := client.NewInProcessClient(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tools) != 1 || list.Tools[0].Name != "weather" {
		t.Fatalf("tools = %+v", list.Tools)
	}
	price, _ := list.Tools[0].Meta.AdditionalFields[PriceMetaKey].(map[string]any)
	if price["price"] != "0.25" || price["currency"] != "USD" {
		t.Errorf("price meta = %v", list.Tools[0].Meta.AdditionalFields)
	}
	call := mcp.CallToolRequest{}
	call.Params.Name = "weather"
	for i, wantErr := range []bool{false, true} {
		r, err := c.CallTool(ctx, call)
		if err != nil {
			t.Fatal(err)
		}
		if r.IsError != wantErr {
			t.Errorf("call %d: isError = %v", i, r.IsError)
		}
	}
	if got := m.outcomes; len(got) != 2 || got[0] != "charged" || got[1] != "denied" {
		t.Errorf("outcomes = %v", got)
	}
}
