package mcp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// waitUpstreamCall waits until the fake upstream has received a tools/call
// of the named tool.
func (h *hostClient) waitUpstreamCall(name string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range h.upstreamCalls() {
			if c == name {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("the upstream never received a call of %s; calls: %v", name, h.upstreamCalls())
}

// TestHostMessagesRefusedBeforeMetering: messages that are not valid
// JSON-RPC requests are answered at once with -32600 (or, for a tools/call
// notification, dropped), never metered and never relayed, alone or in a
// batch; bad tool names are refused before they reach the meter.
func TestHostMessagesRefusedBeforeMetering(t *testing.T) {
	tests := []struct {
		name, line string
		wantID     string // "" when nothing is answered
		wantCode   int64
		wantMsg    string
	}{
		{"tools/call without id", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}}`, "", 0, ""},
		{"tools/call with id null", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, "null", -32600, "not null"},
		{"missing jsonrpc", `{"id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, "3", -32600, `"jsonrpc" must be "2.0"`},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, "4", -32600, `"jsonrpc" must be "2.0"`},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"echo","arguments":{}}}`, "null", -32600, "string or a number"},
		{"array id", `{"jsonrpc":"2.0","id":[5],"method":"tools/call","params":{"name":"echo","arguments":{}}}`, "null", -32600, "string or a number"},
		{"boolean id", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, "null", -32600, "string or a number"},
		{"tool name with a control character", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo\u0007","arguments":{}}}`, "6", -32602, "control character U+0007"},
		{"tool name with a newline", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ec\nho","arguments":{}}}`, "7", -32602, "control character U+000A"},
		{"tool name over 256 bytes", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"` + strings.Repeat("e", 257) + `","arguments":{}}}`, "8", -32602, "257 bytes long; at most 256"},
		{"batch of calls without a usable id", `[{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo","arguments":{}}}]`, "null", -32600, "not null"},
	}
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m})
	h.init()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.send(tc.line)
			pingID := strings.Repeat("9", i+3)
			h.send(`{"jsonrpc":"2.0","id":` + pingID + `,"method":"ping"}`)
			_, before := h.response(pingID)
			if tc.wantID == "" {
				if len(before) != 0 {
					t.Errorf("a notification was answered: %s", before)
				}
				return
			}
			if len(before) != 1 {
				t.Fatalf("want one answer before the ping's, got %q", before)
			}
			r := before[0]
			if got := gjson.GetBytes(r, "id").Raw; got != tc.wantID {
				t.Errorf("id %s, want %s: %s", got, tc.wantID, r)
			}
			if gjson.GetBytes(r, "error.code").Int() != tc.wantCode || !strings.Contains(gjson.GetBytes(r, "error.message").String(), tc.wantMsg) {
				t.Errorf("got %s, want %d %q", r, tc.wantCode, tc.wantMsg)
			}
		})
	}
	h.t = t
	// A good call afterwards is the only one the upstream runs.
	if r := h.call("100", "tools/call", `{"name":"echo","arguments":{}}`); gjson.GetBytes(r, "result.isError").Bool() {
		t.Fatalf("good call: %s", r)
	}
	if got := h.upstreamCalls(); strings.Join(got, " ") != "echo" {
		t.Errorf("the upstream ran %v, want only the good call", got)
	}
	if ev := m.waitEvents(t, 1); len(ev) != 1 || ev[0].Outcome != policy.OutcomeCharged {
		t.Errorf("meter events %+v, want one charge", ev)
	}
}

// gatedMeter holds every Begin until release is closed.
type gatedMeter struct {
	*fakeMeter
	entered chan struct{}
	release chan struct{}
}

func (g *gatedMeter) Begin(ctx context.Context, c interpose.Call) (*interpose.Ticket, policy.Decision) {
	g.entered <- struct{}{}
	<-g.release
	return g.fakeMeter.Begin(ctx, c)
}

// TestCancelBeforeAdmission: a cancellation that arrives while the call is
// still being priced and reserved is remembered: the call is released and
// never relayed.
func TestCancelBeforeAdmission(t *testing.T) {
	g := &gatedMeter{fakeMeter: newFakeMeter("1"), entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := startHost(t, Options{Meter: g, CallTimeout: 300 * time.Millisecond})
	h.init()
	h.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang","arguments":{}}}`)
	<-g.entered
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`)
	// The host's messages are read in order: once the ping is answered,
	// the cancellation has been handled.
	h.call("8", "ping", `{}`)
	close(g.release)
	ev := g.waitEvents(t, 1)
	if ev[0].Outcome != policy.OutcomeRefunded {
		t.Errorf("outcome = %s, want refunded (released)", ev[0].Outcome)
	}
	if got := h.upstreamCalls(); len(got) != 0 {
		t.Errorf("a call cancelled before admission reached the upstream: %v", got)
	}
	// The answer closes an HTTP POST waiting for it; a host ignores it.
	if r, _ := h.response("7"); gjson.GetBytes(r, "result.structuredContent.code").String() != "cancelled" {
		t.Errorf("cancelled call answered with %s", r)
	}
	// The id is forgotten: a new call with it runs.
	if r := h.call("7", "tools/call", `{"name":"echo","arguments":{}}`); gjson.GetBytes(r, "result.isError").Bool() {
		t.Errorf("new call with the cancelled id: %s", r)
	}
}

func TestLongestCallCoversEveryWait(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want time.Duration
	}{
		{"defaults", Options{}, 15*time.Minute + 10*time.Second + 5*time.Second},
		{"long calls", Options{MaxCallDuration: time.Hour, CancelGrace: time.Minute, DrainTimeout: time.Second}, time.Hour + time.Minute + time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.LongestCall(); got != tc.want {
				t.Errorf("LongestCall = %s, want %s", got, tc.want)
			}
			if ttl := interpose.ReservationTTL(tc.o.LongestCall()); ttl <= tc.want {
				t.Errorf("reservation TTL %s does not outlast the longest call %s", ttl, tc.want)
			}
		})
	}
}

// TestHTTPFrontRefusesInvalidMessages: the HTTP front answers what stdio
// answers -32600, in the POST's response, and never relays it.
func TestHTTPFrontRefusesInvalidMessages(t *testing.T) {
	m := newFakeMeter("1")
	log := t.TempDir() + "/calls.log"
	spec := fakeSpec("fake", log)
	p, err := New(Options{Meter: m, Stderr: io.Discard, Upstreams: []UpstreamSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startFrontOf(t, p, FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}})
	url := srv + "/mcp"
	resp, _ := do(t, url, httpReq{key: "crk_good", body: initLine})
	sid := resp.Header.Get("Mcp-Session-Id")
	do(t, url, httpReq{key: "crk_good", session: sid, body: initializedLine})
	tests := []struct {
		name, body string
		status     int
		want       string // gjson path → must hold -32600
	}{
		{"tools/call without id", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}}`, 400, "error.code"},
		{"tools/call with id null", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, 400, "error.code"},
		{"missing jsonrpc", `{"id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, 400, "error.code"},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"echo","arguments":{}}}`, 400, "error.code"},
		{"empty batch", `[]`, 400, "error.code"},
		{"non-object batch element", `[1]`, 400, "0.error.code"},
		{"batch with calls without id", `[{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo","arguments":{}}}]`, 400, "1.error.code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, url, httpReq{key: "crk_good", session: sid, body: tc.body})
			if resp.StatusCode != tc.status || gjson.GetBytes(body, tc.want).Int() != codeInvalidRequest {
				t.Errorf("status %d %s, want %d with -32600 at %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	// A batch mixing a good request and a refused one: the good one is
	// answered, the refused one gets its error, in the same response.
	resp, body := do(t, url, httpReq{key: "crk_good", session: sid, body: `[{"jsonrpc":"2.0","id":41,"method":"ping"},{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"echo","arguments":{}}}]`})
	if resp.StatusCode != 200 || !gjson.GetBytes(sseData(t, body, "41"), "result").Exists() || !strings.Contains(string(body), `"code":-32600`) {
		t.Errorf("mixed batch: %d %s", resp.StatusCode, body)
	}
	b, _ := readFile(log)
	if strings.TrimSpace(b) != "" {
		t.Errorf("refused calls reached the upstream: %q", b)
	}
	if ev := m.snapshot(); len(ev) != 0 {
		t.Errorf("refused calls were metered: %+v", ev)
	}
}

// TestHTTPFrontDuplicateIDKeepsFirstResponse: a second POST reusing an id
// still in flight is refused; the first POST still gets its result.
func TestHTTPFrontDuplicateIDKeepsFirstResponse(t *testing.T) {
	m := newFakeMeter("1")
	log := t.TempDir() + "/calls.log"
	p, err := New(Options{Meter: m, Stderr: io.Discard, Upstreams: []UpstreamSpec{fakeSpec("fake", log)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startFrontOf(t, p, FrontOptions{DefaultAgentID: "agent-1"})
	url := srv + "/mcp"
	resp, _ := do(t, url, httpReq{body: initLine})
	sid := resp.Header.Get("Mcp-Session-Id")
	do(t, url, httpReq{session: sid, body: initializedLine})
	// The first call lasts until release exists, which the test creates
	// only once the second POST is answered: no timing window.
	release := t.TempDir() + "/release"
	var wg sync.WaitGroup
	var first []byte
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, first = doTimeout(t, url, httpReq{session: sid, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"until":` + strconv.Quote(release) + `}}}`}, 15*time.Second)
	}()
	// Wait until the first call has reached the upstream.
	deadline := time.Now().Add(10 * time.Second)
	for b, _ := readFile(log); !strings.Contains(b, "slow"); b, _ = readFile(log) {
		if time.Now().After(deadline) {
			t.Fatal("the first call never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, second := doTimeout(t, url, httpReq{session: sid, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`}, 15*time.Second)
	if resp == nil || resp.StatusCode != 400 || gjson.GetBytes(second, "id").Raw != "1" || gjson.GetBytes(second, "error.code").Int() != codeInvalidRequest {
		t.Errorf("second POST with the same id: %v %s", resp, second)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if r := sseData(t, first, "1"); gjson.GetBytes(r, "result.content.0.text").String() != "done" {
		t.Errorf("first POST lost its result: %s", first)
	}
	if got, _ := readFile(log); strings.Fields(got)[0] != "slow" || len(strings.Fields(got)) != 1 {
		t.Errorf("upstream calls: %q", got)
	}
}

// TestHTTPFrontAuthSchemeAndStoreOutage: the Bearer scheme is
// case-insensitive; a store outage is 503 without the store's error.
func TestHTTPFrontAuthSchemeAndStoreOutage(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(initLine))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", scheme+" crk_good")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s scheme: status %d", scheme, resp.StatusCode)
		}
	}
	resp, body := do(t, srv.URL+"/mcp", httpReq{key: "crk_storedown", body: initLine})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("store outage: status %d, want 503: %s", resp.StatusCode, body)
	}
	for _, leak := range []string{"10.1.2.3", "user=", "database=", "connect"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("the client saw the store's error (%q): %s", leak, body)
		}
	}
}

func startFrontOf(t *testing.T, p *Proxy, fo FrontOptions) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	fo.ListenAddr = srv.Listener.Addr().String()
	f, err := p.NewHTTPFront(fo)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = f
	srv.Start()
	t.Cleanup(func() { srv.Close(); f.Close() })
	return srv.URL
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// doTimeout is do with a client that gives up, so that a lost response
// fails the test instead of hanging it; safe to call from a goroutine.
func doTimeout(t *testing.T, url string, r httpReq, d time.Duration) (*http.Response, []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
	}
	resp, err := (&http.Client{Timeout: d}).Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", r.body, err)
		return nil, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("POST %s: reading the response: %v", r.body, err)
	}
	return resp, b
}
