package mcp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

const initLine = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}`
const initializedLine = `{"jsonrpc":"2.0","method":"notifications/initialized"}`

// hostClient plays the MCP host on the proxy's stdio front.
type hostClient struct {
	t     *testing.T
	w     io.WriteCloser
	lines chan []byte
	log   string // the fake upstream's log of received tools/calls
}

func fakeSpec(name, log string) UpstreamSpec {
	return UpstreamSpec{Name: name, Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1", "CARACAL_FAKE_LOG": log}}
}

func startHost(t *testing.T, o Options, specs ...UpstreamSpec) *hostClient {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	if len(specs) == 0 {
		specs = []UpstreamSpec{fakeSpec("fake", log)}
	}
	o.Upstreams = specs
	o.Stderr = io.Discard
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- p.ServeStdio(context.Background(), "agent-1", inR, outW)
		outW.Close()
	}()
	h := &hostClient{t: t, w: inW, lines: make(chan []byte, 256), log: log}
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			h.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		inW.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("ServeStdio did not return after the host closed stdin")
		}
	})
	return h
}

func (h *hostClient) send(s string) {
	h.t.Helper()
	if _, err := io.WriteString(h.w, s+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *hostClient) recv() []byte {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			h.t.Fatal("proxy closed its output")
		}
		return l
	case <-time.After(10 * time.Second):
		h.t.Fatal("no message from the proxy within 10s")
	}
	return nil
}

// response reads until the response with id, returning it and what came before.
func (h *hostClient) response(id string) (resp []byte, before [][]byte) {
	h.t.Helper()
	for {
		l := h.recv()
		if m, ok := parseMessage(l); ok && m.kind == kindResponse && m.id == id {
			return l, before
		}
		before = append(before, l)
	}
}

func (h *hostClient) call(id, method, params string) []byte {
	h.t.Helper()
	h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":%q,"params":%s}`, id, method, params))
	r, _ := h.response(id)
	return r
}

func (h *hostClient) init() {
	h.t.Helper()
	h.send(initLine)
	h.response("0")
	h.send(initializedLine)
}

func (h *hostClient) upstreamCalls() []string {
	b, _ := os.ReadFile(h.log)
	return strings.Fields(string(b))
}

// direct runs the fake server without the proxy and returns its response
// to each request line.
func direct(t *testing.T, lines ...string) [][]byte {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CARACAL_FAKE_UPSTREAM=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	r := bufio.NewReader(out)
	var res [][]byte
	for _, l := range lines {
		fmt.Fprintln(in, l)
		if !gjson.Get(l, "id").Exists() {
			continue
		}
		resp, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, bytes.TrimRight(resp, "\n"))
	}
	return res
}

func TestPassThroughIsByteExact(t *testing.T) {
	h := startHost(t, Options{Meter: newFakeMeter("1")})
	callEcho := `{"jsonrpc":"2.0","id":"e1","method":"tools/call","params":{"name":"echo","arguments":{"b":[1,2],"a":"ü\u00e9"}}}`
	want := direct(t, initLine, initializedLine, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, `{"jsonrpc":"2.0","id":2,"method":"resources/list"}`, callEcho)
	h.send(initLine)
	got0, _ := h.response("0")
	h.send(initializedLine)
	got1 := h.call("1", "ping", `{}`)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"resources/list"}`)
	got2, _ := h.response("2")
	h.send(callEcho)
	got3, _ := h.response(`"e1"`)
	for i, got := range [][]byte{got0, got1, got2, got3} {
		if !bytes.Equal(got, want[i]) {
			t.Errorf("message %d differs from the direct connection:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

func TestToolsListFilteredPricedPaginated(t *testing.T) {
	m := newFakeMeter("1")
	m.prices["mcp:fake/fail"] = money.MustParse("0.5")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{Name: "fake", Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1"}, Trusted: true})
	h.init()
	var names []string
	cursor := ""
	pages := 0
	for {
		params := `{}`
		if cursor != "" {
			params = `{"cursor":"` + cursor + `"}`
		}
		r := h.call(fmt.Sprint(10+pages), "tools/list", params)
		pages++
		for _, tool := range gjson.GetBytes(r, "result.tools").Array() {
			names = append(names, tool.Get("name").String())
			pm := tool.Get("_meta." + gjsonKey(PriceMetaKey))
			if !pm.Exists() {
				t.Errorf("tool %s has no price _meta: %s", tool.Get("name"), tool.Raw)
			}
			switch tool.Get("name").String() {
			case "echo":
				if tool.Get(`inputSchema.\$defs.x.type`).String() != "string" || tool.Get("inputSchema.x-unknown.1").Int() != 2 || !tool.Get("annotations.readOnlyHint").Bool() {
					t.Errorf("echo lost schema keywords: %s", tool.Raw)
				}
				if pm.Get("price").String() != "0.01" || pm.Get("currency").String() != "USD" || pm.Get("unpriced").Bool() {
					t.Errorf("echo price meta = %s", pm.Raw)
				}
			case "fail":
				if pm.Get("price").String() != "0.50" {
					t.Errorf("fail price meta = %s", pm.Raw)
				}
			case "rpcerror":
				if tool.Get("_meta.other").Int() != 1 {
					t.Errorf("rpcerror lost its own _meta: %s", tool.Raw)
				}
			case "priced":
				if pm.Get("price").String() != "0.02" || !pm.Get("declared").Bool() {
					t.Errorf("declared price not used for a trusted upstream: %s", pm.Raw)
				}
			}
		}
		cursor = gjson.GetBytes(r, "result.nextCursor").String()
		if cursor == "" {
			break
		}
	}
	if pages != 4 {
		t.Errorf("pages = %d, want 4 (pagination preserved)", pages)
	}
	want := "echo fail rpcerror crash slow hang sample big priced"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("tools = %s, want %s", got, want)
	}
	r := h.call("20", "tools/call", `{"name":"priced","arguments":{}}`)
	if gjson.GetBytes(r, "result.isError").Bool() {
		t.Fatalf("priced call failed: %s", r)
	}
	ev := m.waitEvents(t, 1)
	if ev[0].Amount != money.MustParse("0.02") {
		t.Errorf("declared price charged %s, want 0.02", ev[0].Amount)
	}
}

func TestUntrustedDeclaredPriceIgnored(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m})
	h.init()
	h.call("1", "tools/list", `{"cursor":"page6"}`)
	h.call("2", "tools/call", `{"name":"priced","arguments":{}}`)
	ev := m.waitEvents(t, 1)
	if ev[0].Amount != money.MustParse("0.01") {
		t.Errorf("charged %s: an untrusted upstream's declared price was used", ev[0].Amount)
	}
}

func TestToolsCallOutcomes(t *testing.T) {
	tests := []struct {
		name, tool  string
		wantOutcome policy.Outcome
		wantAmount  string
		wantToolErr bool
		wantRPCErr  bool
		wantIsError bool
	}{
		{"result is charged", "echo", policy.OutcomeCharged, "0.01", false, false, false},
		{"isError result is still charged", "fail", policy.OutcomeCharged, "0.01", true, false, true},
		{"JSON-RPC error releases", "rpcerror", policy.OutcomeRefunded, "0", false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMeter("1")
			h := startHost(t, Options{Meter: m})
			h.init()
			r := h.call("1", "tools/call", `{"name":"`+tc.tool+`","arguments":{}}`)
			if got := gjson.GetBytes(r, "error").Exists(); got != tc.wantRPCErr {
				t.Errorf("JSON-RPC error = %v, want %v: %s", got, tc.wantRPCErr, r)
			}
			if got := gjson.GetBytes(r, "result.isError").Bool(); got != tc.wantIsError {
				t.Errorf("isError = %v, want %v: %s", got, tc.wantIsError, r)
			}
			ev := m.waitEvents(t, 1)
			if len(ev) != 1 || ev[0].Outcome != tc.wantOutcome || ev[0].Amount != money.MustParse(tc.wantAmount) || ev[0].ToolErr != tc.wantToolErr {
				t.Errorf("events = %+v", ev)
			}
			if ev[0].Resource != "mcp:fake/"+tc.tool {
				t.Errorf("resource = %s", ev[0].Resource)
			}
		})
	}
}

func TestBudgetDenialNeverReachesUpstream(t *testing.T) {
	m := newFakeMeter("0.05")
	h := startHost(t, Options{Meter: m})
	h.init()
	for i := 1; i <= 6; i++ {
		r := h.call(fmt.Sprint(i), "tools/call", `{"name":"echo","arguments":{"i":`+fmt.Sprint(i)+`}}`)
		denied := gjson.GetBytes(r, "result.isError").Bool()
		if denied != (i == 6) {
			t.Fatalf("call %d: isError = %v: %s", i, denied, r)
		}
		if i == 6 {
			res := gjson.GetBytes(r, "result")
			if res.Get("structuredContent.code").String() != "budget_exceeded" || res.Get(`_meta.dev\.caracal/decision.code`).String() != "budget_exceeded" {
				t.Errorf("denial lacks its code: %s", r)
			}
			if res.Get("structuredContent.price").String() != "0.01" || res.Get("structuredContent.remaining.0.remaining").String() != "0.00" {
				t.Errorf("denial lacks price or remaining: %s", r)
			}
			text := res.Get("content.0.text").String()
			if strings.Contains(text, "\n") || !strings.Contains(text, "not a transient error") {
				t.Errorf("denial text = %q", text)
			}
		}
	}
	m.waitEvents(t, 6)
	if got := h.upstreamCalls(); len(got) != 5 {
		t.Errorf("upstream received %d calls, want 5: %v", len(got), got)
	}
}

func TestNotAllowedIsUnknownTool(t *testing.T) {
	h := startHost(t, Options{Meter: newFakeMeter("1")})
	h.init()
	r := h.call("1", "tools/call", `{"name":"hidden","arguments":{}}`)
	if gjson.GetBytes(r, "error.code").Int() != -32602 || gjson.GetBytes(r, "error.message").String() != "Unknown tool: hidden" {
		t.Errorf("got %s", r)
	}
	if len(h.upstreamCalls()) != 0 {
		t.Errorf("the upstream received a call outside the allowlist")
	}
}

func TestBadInputFromHost(t *testing.T) {
	tests := []struct {
		name, line string
		wantCode   int64
		wantMsg    string
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":`, -32700, "Parse error"},
		{"not an object", `42`, -32600, "Invalid Request"},
		{"neither request nor response", `{"jsonrpc":"2.0","id":3}`, -32600, "Invalid Request"},
		{"oversize", `{"jsonrpc":"2.0","id":9,"method":"ping","params":{"pad":"` + strings.Repeat("a", 5000) + `"}}`, -32600, "exceeds the maximum message size of 4 KiB"},
		{"tools/call without a name", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{}}`, -32602, "tool name"},
		{"repeated method", `{"jsonrpc":"2.0","id":6,"method":"ping","method":"tools/call","params":{"name":"echo","arguments":{}}}`, -32600, `duplicate key "method"`},
		{"repeated tool name", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","name":"hidden","arguments":{}}}`, -32600, `duplicate key "name"`},
		{"hostile nesting", `{"jsonrpc":"2.0","id":8,"method":"ping","params":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, -32700, "nesting deeper than 512 levels"},
	}
	h := startHost(t, Options{Meter: newFakeMeter("1"), MaxMessageSize: 4096})
	h.init()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.send(tc.line)
			r := h.recv()
			if gjson.GetBytes(r, "error.code").Int() != tc.wantCode || !strings.Contains(gjson.GetBytes(r, "error.message").String(), tc.wantMsg) {
				t.Errorf("got %s", r)
			}
			// The session goes on.
			if p := h.call(fmt.Sprint(100+i), "ping", `{}`); !gjson.GetBytes(p, "result").Exists() {
				t.Errorf("ping after bad input: %s", p)
			}
		})
	}
	if got := h.upstreamCalls(); len(got) != 0 {
		t.Errorf("bad input reached the upstream as calls: %v", got)
	}
}

func TestBatchIsUnpacked(t *testing.T) {
	h := startHost(t, Options{Meter: newFakeMeter("1")})
	h.init()
	h.send(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`)
	got := map[string]bool{}
	for range 2 {
		m, _ := parseMessage(h.recv())
		got[m.id] = true
	}
	if !got["1"] || !got["2"] {
		t.Errorf("responses: %v", got)
	}
}

func TestUpstreamCrashMidCall(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m})
	h.init()
	r := h.call("1", "tools/call", `{"name":"crash","arguments":{}}`)
	if !gjson.GetBytes(r, "result.isError").Bool() || gjson.GetBytes(r, "result.structuredContent.code").String() != "upstream_lost" {
		t.Fatalf("crash answered with %s", r)
	}
	ev := m.waitEvents(t, 1)
	if ev[0].Outcome != policy.OutcomeUnconfirmed || ev[0].Amount != money.MustParse("0.01") {
		t.Errorf("crash settled as %+v, want an unconfirmed charge", ev[0])
	}
	// The upstream restarts and is initialised again; the session survives.
	r = h.call("2", "tools/call", `{"name":"echo","arguments":{"after":"crash"}}`)
	if gjson.GetBytes(r, "result.isError").Bool() || !strings.Contains(gjson.GetBytes(r, "result.content.0.text").String(), "crash") {
		t.Fatalf("call after restart: %s", r)
	}
	if got := h.upstreamCalls(); strings.Join(got, " ") != "crash echo" {
		t.Errorf("upstream calls = %v", got)
	}
}

func TestCallTimeouts(t *testing.T) {
	tests := []struct {
		name        string
		args        string
		tool        string
		o           Options
		wantTimeout bool
	}{
		{"no answer", `{}`, "hang", Options{CallTimeout: 150 * time.Millisecond}, true},
		{"progress extends the timeout", `{"ms":600,"interval":40}`, "slow", Options{CallTimeout: 150 * time.Millisecond, MaxCallDuration: 5 * time.Second}, false},
		{"hard cap despite progress", `{"ms":3000,"interval":40}`, "slow", Options{CallTimeout: 150 * time.Millisecond, MaxCallDuration: 400 * time.Millisecond}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMeter("1")
			tc.o.Meter = m
			h := startHost(t, tc.o)
			h.init()
			h.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tc.tool + `","arguments":` + tc.args + `,"_meta":{"progressToken":"tok"}}}`)
			r, _ := h.response("7")
			timedOut := gjson.GetBytes(r, "result.structuredContent.code").String() == "timeout"
			if timedOut != tc.wantTimeout {
				t.Fatalf("timed out = %v, want %v: %s", timedOut, tc.wantTimeout, r)
			}
			ev := m.waitEvents(t, 1)
			want := policy.OutcomeCharged
			if tc.wantTimeout {
				want = policy.OutcomeUnconfirmed
			}
			if ev[0].Outcome != want {
				t.Errorf("outcome = %s, want %s", ev[0].Outcome, want)
			}
		})
	}
}

func TestCancelledCallSettlesUnconfirmed(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, CancelGrace: 100 * time.Millisecond})
	h.init()
	h.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang","arguments":{}}}`)
	// Cancel once the call has reached the upstream (a cancellation that
	// overtakes admission is TestCancelBeforeAdmission's case).
	h.waitUpstreamCall("hang")
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`)
	ev := m.waitEvents(t, 1)
	if ev[0].Outcome != policy.OutcomeUnconfirmed {
		t.Errorf("outcome = %s, want unconfirmed", ev[0].Outcome)
	}
	// No response goes to the host for a call it cancelled.
	r := h.call("8", "ping", `{}`)
	if m, _ := parseMessage(r); m.id != "8" {
		t.Errorf("unexpected %s", r)
	}
}

func TestServerToClientRequestsPassBoth(t *testing.T) {
	h := startHost(t, Options{Meter: newFakeMeter("1")})
	h.init()
	h.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sample","arguments":{}}}`)
	req := h.recv()
	if gjson.GetBytes(req, "method").String() != "sampling/createMessage" || gjson.GetBytes(req, "id").Raw != `"s1"` {
		t.Fatalf("want the upstream's sampling request, got %s", req)
	}
	h.send(`{"jsonrpc":"2.0","id":"s1","result":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"m"}}`)
	r, _ := h.response("1")
	if !strings.Contains(gjson.GetBytes(r, "result.content.0.text").String(), `"model":"m"`) {
		t.Errorf("sampling result did not reach the upstream: %s", r)
	}
}

func TestOversizeUpstreamResponse(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, MaxMessageSize: 4096})
	h.init()
	r := h.call("1", "tools/call", `{"name":"big","arguments":{"n":10000}}`)
	if !gjson.GetBytes(r, "result.isError").Bool() || !strings.Contains(gjson.GetBytes(r, "result.content.0.text").String(), "maximum message size") {
		t.Errorf("got %s", r)
	}
	if ev := m.waitEvents(t, 1); ev[0].Outcome != policy.OutcomeUnconfirmed {
		t.Errorf("outcome = %s", ev[0].Outcome)
	}
	if r := h.call("2", "tools/call", `{"name":"big","arguments":{"n":100}}`); gjson.GetBytes(r, "result.isError").Bool() {
		t.Errorf("small call after an oversize one: %s", r)
	}
}

func TestGateway(t *testing.T) {
	m := newFakeMeter("1")
	dir := t.TempDir()
	h := startHost(t, Options{Meter: m, PageSize: 4}, fakeSpec("alpha", filepath.Join(dir, "a.log")), fakeSpec("beta", filepath.Join(dir, "b.log")))
	h.send(initLine)
	r, _ := h.response("0")
	if gjson.GetBytes(r, "result.serverInfo.name").String() != "caracal" || !gjson.GetBytes(r, "result.capabilities.tools.listChanged").Bool() {
		t.Errorf("initialize = %s", r)
	}
	h.send(initializedLine)
	var names []string
	cursor := ""
	for i := 0; ; i++ {
		params := `{}`
		if cursor != "" {
			params = `{"cursor":"` + cursor + `"}`
		}
		r := h.call(fmt.Sprint(10+i), "tools/list", params)
		for _, tool := range gjson.GetBytes(r, "result.tools").Array() {
			names = append(names, tool.Get("name").String())
		}
		if cursor = gjson.GetBytes(r, "result.nextCursor").String(); cursor == "" {
			break
		}
	}
	if len(names) != 18 || names[0] != "alpha__echo" || names[9] != "beta__echo" {
		t.Errorf("merged tools = %v", names)
	}
	r = h.call("30", "tools/call", `{"name":"beta__echo","arguments":{"x":1}}`)
	if gjson.GetBytes(r, "result.isError").Bool() {
		t.Fatalf("beta__echo: %s", r)
	}
	r = h.call("31", "tools/call", `{"name":"gamma__echo","arguments":{}}`)
	if gjson.GetBytes(r, "error.code").Int() != -32602 {
		t.Errorf("unknown prefix: %s", r)
	}
	// Server-to-client requests get ids that cannot collide.
	h.send(`{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"alpha__sample","arguments":{}}}`)
	req := h.recv()
	pid := gjson.GetBytes(req, "id").Raw
	if !strings.HasPrefix(pid, `"caracal-s-`) {
		t.Fatalf("sampling request id %s was not rewritten", pid)
	}
	h.send(`{"jsonrpc":"2.0","id":` + pid + `,"result":{"model":"m2"}}`)
	r, _ = h.response("32")
	if !strings.Contains(r2s(r), "m2") {
		t.Errorf("sampling through the gateway: %s", r)
	}
	ev := m.waitEvents(t, 2)
	if ev[0].Resource != "mcp:beta/echo" || ev[1].Resource != "mcp:alpha/sample" {
		t.Errorf("events = %+v", ev)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.log")); strings.TrimSpace(string(b)) != "echo" {
		t.Errorf("beta received %q", b)
	}
	if p := h.call("33", "ping", `{}`); !gjson.GetBytes(p, "result").Exists() {
		t.Errorf("ping = %s", p)
	}
}

func r2s(b []byte) string { return string(b) }

func TestConcurrentCallsNeverOverspend(t *testing.T) {
	m := newFakeMeter("0.30")
	h := startHost(t, Options{Meter: m})
	h.init()
	for i := range 64 {
		h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"slow","arguments":{"ms":20,"interval":5}}}`, i+1))
	}
	allowed := 0
	for range 64 {
		r := h.recv() // no progress token: only responses arrive
		if !gjson.GetBytes(r, "result.isError").Bool() {
			allowed++
		}
	}
	if allowed != 30 {
		t.Errorf("%d calls admitted, want 30", allowed)
	}
	ev := m.waitEvents(t, 64)
	var sum money.Amount
	for _, e := range ev {
		sum += e.Amount
	}
	if sum != money.MustParse("0.30") {
		t.Errorf("charged %s, want 0.30", sum)
	}
}

func TestUpstreamNamingAndDeclaredPriceWithoutListing(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1"}, Trusted: true})
	// A host that does not wait for the initialize response still gets
	// the advertised name in its resources.
	h.send(initLine)
	h.send(initializedLine)
	h.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"priced","arguments":{}}}`)
	h.response("1")
	ev := m.waitEvents(t, 1)
	if ev[0].Resource != "mcp:fake-server/priced" || ev[0].Amount != money.MustParse("0.02") {
		t.Errorf("event %+v: want mcp:fake-server/priced charged the declared 0.02", ev[0])
	}
}

func TestGatewayUpstreamNames(t *testing.T) {
	tests := []struct {
		a, b string
		want string // error substring; "" for accepted
	}{
		{"alpha", "beta", ""},
		{"a-1", "b_2", ""},
		{"a__b", "c", `must not contain "__" or end in "_"`},
		{"a_", "a", `must not contain "__" or end in "_"`},
		{"Alpha", "b", "use lower-case letters, digits, _ and -"},
		{"same", "same", "is used twice"},
	}
	for _, tc := range tests {
		t.Run(tc.a+"+"+tc.b, func(t *testing.T) {
			specs := []UpstreamSpec{{Name: tc.a, Command: []string{"x"}}, {Name: tc.b, Command: []string{"y"}}}
			_, err := New(Options{Meter: newFakeMeter("1"), Upstreams: specs})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New: %v, want it accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDeclaredPriceConcurrentFirstCalls: calls that arrive together before
// any tools/list all wait for the one read of the declared prices.
func TestDeclaredPriceConcurrentFirstCalls(t *testing.T) {
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1"}, Trusted: true})
	h.init()
	h.send(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"priced","arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"priced","arguments":{}}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"priced","arguments":{}}}]`)
	// The answers may come in any order.
	for got := map[string]bool{}; len(got) < 3; {
		if m, ok := parseMessage(h.recv()); ok && m.kind == kindResponse {
			got[m.id] = true
		}
	}
	for _, e := range m.waitEvents(t, 3) {
		if e.Amount != money.MustParse("0.02") {
			t.Errorf("event %+v: want the declared 0.02", e)
		}
	}
}
