package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// The test binary doubles as a fake upstream MCP server when started with
// CARACAL_FAKE_UPSTREAM set: tests run it as a real child process.
func TestMain(m *testing.M) {
	if os.Getenv("CARACAL_FAKE_UPSTREAM") != "" {
		fakeServer()
		os.Exit(0)
	}
	pgtest.Main(m)
}

// fakeTools are the fake server's tools, served three to a page.
var fakeTools = []string{
	`{"name":"echo","description":"echoes","inputSchema":{"type":"object","$defs":{"x":{"type":"string"}},"x-unknown":[1,2]},"annotations":{"readOnlyHint":true}}`,
	`{"name":"fail","inputSchema":{"type":"object"}}`,
	`{"name":"rpcerror","inputSchema":{"type":"object"},"_meta":{"other":1}}`,
	`{"name":"crash","inputSchema":{"type":"object"}}`,
	`{"name":"slow","inputSchema":{"type":"object"}}`,
	`{"name":"hang","inputSchema":{"type":"object"}}`,
	`{"name":"sample","inputSchema":{"type":"object"}}`,
	`{"name":"big","inputSchema":{"type":"object"}}`,
	`{"name":"priced","inputSchema":{"type":"object"},"_meta":{"dev.caracal/price":{"price":"0.02","currency":"USD"}}}`,
	`{"name":"hidden","inputSchema":{"type":"object"}}`,
}

func fakeServer() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	var wmu sync.Mutex
	write := func(s string) {
		wmu.Lock()
		defer wmu.Unlock()
		fmt.Fprintln(os.Stdout, s)
	}
	logCall := func(name string) {
		if p := os.Getenv("CARACAL_FAKE_LOG"); p != "" {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				fmt.Fprintln(f, name)
				f.Close()
			}
		}
	}
	fmt.Fprintln(os.Stderr, "fake upstream started")
	var mu sync.Mutex
	waiting := map[string]chan json.RawMessage{}
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(line, &msg) != nil {
			continue
		}
		id := string(msg.ID)
		// Revision 2026-07-28: the request names its revision in _meta and
		// every result names its type and the server.
		modern := gjson.GetBytes(msg.Params, `_meta.io\.modelcontextprotocol/protocolVersion`).String() == "2026-07-28"
		if l := os.Getenv("CARACAL_FAKE_METHODS"); l != "" && msg.Method != "" {
			if f, err := os.OpenFile(l, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				fmt.Fprintln(f, msg.Method, modern)
				f.Close()
			}
		}
		if msg.Method == "" {
			mu.Lock()
			ch := waiting[id]
			mu.Unlock()
			if ch != nil {
				ch <- msg.Result
			}
			continue
		}
		if msg.Method == "tools/call" && (id == "" || id == "null") {
			// A lax server runs a call whatever its id: log it, so that
			// tests see any such call the proxy lets through.
			var p struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(msg.Params, &p)
			logCall(p.Name)
		}
		if id == "" || id == "null" {
			continue // notification
		}
		resp := func(result string) {
			if modern && !strings.Contains(result, `"resultType"`) {
				stamp := `{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"Fake Server","version":"1.0"}}`
				if result == "{}" {
					result = stamp + "}"
				} else {
					result = stamp + "," + result[1:]
				}
			}
			write(`{"jsonrpc":"2.0","id":` + id + `,"result":` + result + `}`)
		}
		switch msg.Method {
		case "initialize":
			var p struct {
				ProtocolVersion string `json:"protocolVersion"`
			}
			_ = json.Unmarshal(msg.Params, &p)
			resp(`{"protocolVersion":"` + p.ProtocolVersion + `","capabilities":{"tools":{"listChanged":true},"logging":{}},"serverInfo":{"name":"Fake Server","version":"1.0"},"x-future":{"a":1}}`)
		case "ping":
			resp(`{}`)
		case "server/discover":
			if !modern || os.Getenv("CARACAL_FAKE_NO_DISCOVER") != "" {
				write(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32601,"message":"Method not found"}}`)
				continue
			}
			resp(`{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"ttlMs":0,"cacheScope":"public"}`)
		case "tools/list":
			var p struct {
				Cursor string `json:"cursor"`
			}
			_ = json.Unmarshal(msg.Params, &p)
			start := 0
			fmt.Sscanf(p.Cursor, "page%d", &start)
			end := min(start+3, len(fakeTools))
			next := ""
			if end < len(fakeTools) {
				next = fmt.Sprintf(`,"nextCursor":"page%d"`, end)
			}
			if modern {
				next += `,"ttlMs":60000,"cacheScope":"public"`
			}
			resp(`{"tools":[` + strings.Join(fakeTools[start:end], ",") + `]` + next + `}`)
		case "tools/call":
			var p struct {
				Name string          `json:"name"`
				Args json.RawMessage `json:"arguments"`
				Meta struct {
					Token json.RawMessage `json:"progressToken"`
				} `json:"_meta"`
			}
			_ = json.Unmarshal(msg.Params, &p)
			logCall(p.Name)
			go func() {
				var a struct {
					MS       int `json:"ms"`
					Interval int `json:"interval"`
					N        int `json:"n"`
				}
				_ = json.Unmarshal(p.Args, &a)
				switch p.Name {
				case "echo", "priced":
					b, _ := json.Marshal(string(p.Args))
					resp(`{"content":[{"type":"text","text":` + string(b) + `},{"type":"future-kind","blob":"x"}],"structuredContent":{"ok":true}}`)
				case "fail":
					resp(`{"content":[{"type":"text","text":"tool failed"}],"isError":true}`)
				case "rpcerror":
					write(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32000,"message":"boom"}}`)
				case "crash":
					os.Exit(3)
				case "slow":
					deadline := time.Now().Add(time.Duration(a.MS) * time.Millisecond)
					for i := 1; time.Now().Before(deadline); i++ {
						time.Sleep(time.Duration(a.Interval) * time.Millisecond)
						if len(p.Meta.Token) > 0 {
							write(fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":%d}}`, p.Meta.Token, i))
						}
					}
					resp(`{"content":[{"type":"text","text":"done"}]}`)
				case "ask", "ask2":
					// MRTR: ask for input, then complete once the host
					// retries with the answer (ask2 asks twice).
					st := gjson.GetBytes(msg.Params, "requestState").String()
					action := gjson.GetBytes(msg.Params, "inputResponses.q.action").String()
					if st == "" || (p.Name == "ask2" && st == "r1") {
						next := "r1"
						if st == "r1" {
							next = "r2"
						}
						resp(`{"resultType":"input_required","requestState":"` + next + `","inputRequests":{"q":{"method":"elicitation/create","params":{"message":"ok?","requestedSchema":{"type":"object","properties":{}}}}}}`)
						return
					}
					resp(`{"content":[{"type":"text","text":"` + action + `"}]}`)
				case "hang":
				case "sample":
					sid := `"s` + strings.Trim(id, `"`) + `"`
					ch := make(chan json.RawMessage, 1)
					mu.Lock()
					waiting[sid] = ch
					mu.Unlock()
					write(`{"jsonrpc":"2.0","id":` + sid + `,"method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}`)
					r := <-ch
					b, _ := json.Marshal(string(r))
					resp(`{"content":[{"type":"text","text":` + string(b) + `}]}`)
				case "big":
					resp(`{"content":[{"type":"text","text":"` + strings.Repeat("x", a.N) + `"}]}`)
				default:
					write(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32602,"message":"Unknown tool: ` + p.Name + `"}}`)
				}
			}()
		default:
			write(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":-32601,"message":"Method not found"}}`)
		}
	}
}

// fakeMeter is an in-memory Meter: every tool costs 0.01 unless prices
// says otherwise, "hidden" is outside the allowlist, and one budget
// limits the sum of spent and reserved amounts.
type fakeMeter struct {
	mu       sync.Mutex
	limit    money.Amount
	prices   map[string]money.Amount
	spent    money.Amount
	reserved money.Amount
	n        int
	events   []fakeEvent
	declared map[string]*policy.PriceRule // resource → declared rule seen by Begin
	// chargeRounds is the price rule's charge_rounds for every tool.
	chargeRounds bool
}

type fakeEvent struct {
	Resource string
	Outcome  policy.Outcome
	Amount   money.Amount
	ToolErr  bool
	Code     policy.Code
	Note     string
}

func newFakeMeter(limit string) *fakeMeter {
	return &fakeMeter{limit: money.MustParse(limit), prices: map[string]money.Amount{}, declared: map[string]*policy.PriceRule{}}
}

func (f *fakeMeter) Allowlist(context.Context, string) (func(string) bool, error) {
	return func(r string) bool { return !strings.HasSuffix(r, "/hidden") }, nil
}

func (f *fakeMeter) price(resource string, declared *policy.PriceRule) (money.Amount, bool) {
	if p, ok := f.prices[resource]; ok {
		return p, false
	}
	if declared != nil {
		return declared.PerCall, true
	}
	return money.MustParse("0.01"), false
}

func (f *fakeMeter) Quote(_ context.Context, resource string, _ []byte, declared *policy.PriceRule) (interpose.Quote, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, d := f.price(resource, declared)
	return interpose.Quote{Price: p, Currency: "USD", Declared: d}, nil
}

func (f *fakeMeter) Begin(_ context.Context, c interpose.Call) (*interpose.Ticket, policy.Decision) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.declared[c.Resource] = c.Declared
	p, _ := f.price(c.Resource, c.Declared)
	if strings.HasSuffix(c.Resource, "/hidden") {
		f.events = append(f.events, fakeEvent{Resource: c.Resource, Outcome: policy.OutcomeDenied, Code: policy.CodeNotAllowed})
		return nil, policy.Decision{Code: policy.CodeNotAllowed, Reason: "not allowed"}
	}
	if f.spent+f.reserved+p > f.limit {
		f.events = append(f.events, fakeEvent{Resource: c.Resource, Outcome: policy.OutcomeDenied, Code: policy.CodeBudgetExceeded})
		rem := f.limit - f.spent - f.reserved
		return nil, policy.Decision{Code: policy.CodeBudgetExceeded, Price: p, Currency: "USD",
			Reason:    fmt.Sprintf("policy p1 (total) limit %s USD: spent %s, price %s", f.limit, f.spent+f.reserved, p),
			PolicyID:  "p1",
			Remaining: []policy.Remaining{{PolicyID: "p1", Limit: f.limit, Spent: f.spent, Reserved: f.reserved, Remaining: rem, Currency: "USD"}}}
	}
	f.reserved += p
	f.n++
	q := interpose.Quote{Price: p, Currency: "USD"}
	if f.chargeRounds {
		q.Rule = &policy.PriceRule{Resource: c.Resource, PerCall: p, ChargeRounds: true}
	}
	return &interpose.Ticket{RequestID: fmt.Sprintf("r%d|%s", f.n, c.Resource), Reserved: p, Quote: q}, policy.Decision{Allow: true, Code: policy.CodeAllowed}
}

func (f *fakeMeter) finish(t *interpose.Ticket, o policy.Outcome, charge bool, toolErr bool) (ledger.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reserved -= t.Reserved
	amt := money.Amount(0)
	if charge {
		amt = t.Reserved
		f.spent += amt
	}
	_, res, _ := strings.Cut(t.RequestID, "|")
	f.events = append(f.events, fakeEvent{Resource: res, Outcome: o, Amount: amt, ToolErr: toolErr})
	return ledger.Event{}, nil
}

func (f *fakeMeter) Settle(_ context.Context, t *interpose.Ticket, r interpose.Result) (ledger.Event, error) {
	ev, err := f.finish(t, policy.OutcomeCharged, true, r.ToolError)
	f.mu.Lock()
	f.events[len(f.events)-1].Note = r.Note
	f.mu.Unlock()
	return ev, err
}

func (f *fakeMeter) Release(_ context.Context, t *interpose.Ticket, _ string) (ledger.Event, error) {
	return f.finish(t, policy.OutcomeRefunded, false, false)
}

func (f *fakeMeter) Unconfirmed(_ context.Context, t *interpose.Ticket, _ string) (ledger.Event, error) {
	return f.finish(t, policy.OutcomeUnconfirmed, true, false)
}

func (f *fakeMeter) snapshot() []fakeEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeEvent(nil), f.events...)
}

// waitEvents waits until the meter holds n events.
func (f *fakeMeter) waitEvents(t *testing.T, n int) []fakeEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ev := f.snapshot(); len(ev) >= n {
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
	ev := f.snapshot()
	t.Fatalf("meter holds %d events, want %d: %+v", len(ev), n, ev)
	return nil
}
