package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

type fakeAuth map[string]string

func (f fakeAuth) Authenticate(_ context.Context, key string) (policy.Agent, error) {
	if id, ok := f[key]; ok {
		return policy.Agent{ID: id}, nil
	}
	switch key {
	case "crk_revoked":
		return policy.Agent{}, interpose.ErrKeyRevoked
	case "crk_storedown":
		// What a store outage looks like: the driver names the database.
		return policy.Agent{}, fmt.Errorf("authenticate: %w", errors.New(`failed to connect to user=caracal database=ledger: dial tcp 10.1.2.3:5432: connect: connection refused`))
	}
	return policy.Agent{}, interpose.ErrUnknownKey
}

func startFront(t *testing.T, m interpose.Meter, fo FrontOptions) (*httptest.Server, *HTTPFront) {
	t.Helper()
	p, err := New(Options{Meter: m, Stderr: io.Discard, Upstreams: []UpstreamSpec{{Name: "fake", Command: []string{os.Args[0]}, Env: map[string]string{"CARACAL_FAKE_UPSTREAM": "1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	fo.ListenAddr = srv.Listener.Addr().String()
	f, err := p.NewHTTPFront(fo)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = f
	srv.Start()
	t.Cleanup(func() { srv.Close(); f.Close() })
	return srv, f
}

type httpReq struct {
	method, key, session, body, origin, host string
}

func do(t *testing.T, url string, r httpReq) (*http.Response, []byte) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	req, _ := http.NewRequest(r.method, url, strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	if r.host != "" {
		req.Host = r.host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// sseData returns the data of the event answering id in an SSE body.
func sseData(t *testing.T, body []byte, id string) []byte {
	t.Helper()
	r := newSSEReader(bytes.NewReader(body), 1<<20)
	for {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("no response %s in %s", id, body)
		}
		if gjson.GetBytes(ev.Data, "id").Raw == id {
			return ev.Data
		}
	}
}

func TestHTTPFrontAuthAndOrigin(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}})
	tests := []struct {
		name   string
		r      httpReq
		status int
	}{
		{"no key", httpReq{body: initLine}, 401},
		{"wrong key", httpReq{key: "crk_wrong", body: initLine}, 401},
		{"revoked key", httpReq{key: "crk_revoked", body: initLine}, 401},
		{"foreign origin", httpReq{key: "crk_good", body: initLine, origin: "http://evil.example"}, 403},
		{"rebound host", httpReq{key: "crk_good", body: initLine, host: "evil.example:80"}, 403},
		{"unknown session", httpReq{key: "crk_good", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, session: "nope"}, 404},
		{"no session", httpReq{key: "crk_good", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`}, 400},
		{"malformed JSON", httpReq{key: "crk_good", body: `{"jsonrpc":`}, 400},
		{"local origin", httpReq{key: "crk_good", body: initLine, origin: "http://localhost:3000"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv.URL+"/mcp", tc.r)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

func TestHTTPFrontSession(t *testing.T) {
	m := newFakeMeter("0.02")
	srv, _ := startFront(t, m, FrontOptions{Auth: fakeAuth{"crk_good": "agent-1", "crk_other": "agent-2"}})
	url := srv.URL + "/mcp"
	resp, body := do(t, url, httpReq{key: "crk_good", body: initLine})
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" || gjson.GetBytes(body, "result.serverInfo.name").String() != "Fake Server" {
		t.Fatalf("initialize: %d %q %s", resp.StatusCode, sid, body)
	}
	if resp, _ := do(t, url, httpReq{key: "crk_good", session: sid, body: initializedLine}); resp.StatusCode != 202 {
		t.Errorf("notification status %d", resp.StatusCode)
	}
	_, body = do(t, url, httpReq{key: "crk_good", session: sid, body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`})
	list := sseData(t, body, "1")
	if !gjson.GetBytes(list, `result.tools.0._meta.dev\.caracal/price.price`).Exists() {
		t.Errorf("tools/list lacks prices: %s", list)
	}
	for i, want := range []bool{false, false, true} {
		id := string(rune('2' + i))
		_, body = do(t, url, httpReq{key: "crk_good", session: sid, body: `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{}}}`})
		r := sseData(t, body, id)
		if got := gjson.GetBytes(r, "result.isError").Bool(); got != want {
			t.Errorf("call %d: isError %v: %s", i, got, r)
		}
	}
	if resp, _ := do(t, url, httpReq{key: "crk_other", session: sid, body: `{"jsonrpc":"2.0","id":9,"method":"ping"}`}); resp.StatusCode != 403 {
		t.Errorf("another agent's key on the session: %d", resp.StatusCode)
	}
	if resp, _ := do(t, url, httpReq{method: http.MethodDelete, key: "crk_good", session: sid}); resp.StatusCode != 200 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	if resp, _ := do(t, url, httpReq{key: "crk_good", session: sid, body: `{"jsonrpc":"2.0","id":9,"method":"ping"}`}); resp.StatusCode != 404 {
		t.Errorf("after DELETE: %d", resp.StatusCode)
	}
	// Settlement is committed after the response reaches the host, so the
	// third call's denial may be recorded before the second call's charge:
	// compare the events as a set.
	ev := m.waitEvents(t, 3)
	var charged, denied int
	for _, e := range ev {
		switch {
		case e.Outcome == policy.OutcomeCharged:
			charged++
		case e.Outcome == policy.OutcomeDenied && e.Code == policy.CodeBudgetExceeded:
			denied++
		}
	}
	if charged != 2 || denied != 1 {
		t.Errorf("want 2 charged and 1 budget_exceeded denial, got %+v", ev)
	}
}

func TestHTTPFrontKeylessAgent(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{}, DefaultAgentID: "agent-1"})
	if resp, body := do(t, srv.URL+"/mcp", httpReq{body: initLine}); resp.StatusCode != 200 {
		t.Errorf("keyless on loopback: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, srv.URL+"/mcp", httpReq{key: "crk_wrong", body: initLine}); resp.StatusCode != 401 {
		t.Errorf("a wrong key must be refused even in keyless mode: %d", resp.StatusCode)
	}
	p, _ := New(Options{Meter: newFakeMeter("1"), Upstreams: []UpstreamSpec{{Command: []string{"x"}}}})
	if _, err := p.NewHTTPFront(FrontOptions{ListenAddr: "0.0.0.0:8090", DefaultAgentID: "a"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("keyless mode on a public address: %v", err)
	}
}

// TestHTTPUpstream relays a stdio host to a Streamable HTTP upstream (the
// proxy's own HTTP front over the fake server), sampling included.
func TestHTTPUpstream(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("100"), FrontOptions{DefaultAgentID: "inner"})
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{Name: "remote", URL: srv.URL + "/mcp"})
	h.init()
	r := h.call("1", "tools/list", `{}`)
	if gjson.GetBytes(r, "result.tools.#").Int() != 3 {
		t.Errorf("tools/list over HTTP: %s", r)
	}
	r = h.call("2", "tools/call", `{"name":"echo","arguments":{"v":1}}`)
	if gjson.GetBytes(r, "result.isError").Bool() {
		t.Fatalf("echo over HTTP: %s", r)
	}
	h.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sample","arguments":{}}}`)
	req := h.recv()
	if gjson.GetBytes(req, "method").String() != "sampling/createMessage" {
		t.Fatalf("want sampling, got %s", req)
	}
	h.send(`{"jsonrpc":"2.0","id":` + gjson.GetBytes(req, "id").Raw + `,"result":{"model":"over-http"}}`)
	r, _ = h.response("3")
	if !strings.Contains(string(r), "over-http") {
		t.Errorf("sampling over HTTP: %s", r)
	}
	ev := m.waitEvents(t, 2)
	if ev[0].Resource != "mcp:remote/echo" || ev[0].Outcome != policy.OutcomeCharged {
		t.Errorf("events %+v", ev)
	}
}

// TestSSEFallback relays to an upstream that speaks only the 2024-11-05
// HTTP+SSE transport (mcp-go's SSE server).
func TestSSEFallback(t *testing.T) {
	s := server.NewMCPServer("old", "1", server.WithToolCapabilities(false))
	s.AddTool(mcpgo.NewTool("add", mcpgo.WithNumber("a"), mcpgo.WithNumber("b")), func(_ context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("sum"), nil
	})
	ts := httptest.NewUnstartedServer(nil)
	sse := server.NewSSEServer(s, server.WithBaseURL("http://"+ts.Listener.Addr().String()))
	ts.Config.Handler = sse
	ts.Start()
	t.Cleanup(ts.Close)
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m}, UpstreamSpec{Name: "old", URL: ts.URL + "/sse"})
	h.init()
	r := h.call("1", "tools/call", `{"name":"add","arguments":{"a":1,"b":2}}`)
	if gjson.GetBytes(r, "result.content.0.text").String() != "sum" {
		t.Fatalf("call over SSE: %s", r)
	}
	if ev := m.waitEvents(t, 1); ev[0].Resource != "mcp:old/add" {
		t.Errorf("events %+v", ev)
	}
}

func TestHTTPFrontJSONResponses(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("1"), FrontOptions{DefaultAgentID: "agent-1"})
	post := func(sid, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, _ := post("", initLine)
	sid := resp.Header.Get("Mcp-Session-Id")
	post(sid, initializedLine)
	resp, body := post(sid, `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}]`)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	arr := gjson.ParseBytes(body).Array()
	if len(arr) != 2 || !arr[0].Get("result").Exists() || arr[1].Get("result.isError").Bool() {
		t.Errorf("batch reply %s", body)
	}
}

// TestTimeoutWithStuckHTTPUpstream: an HTTP upstream that accepts
// connections but never answers a tools/call, nor the cancellation the
// proxy sends after the timeout, must not keep the host from its answer.
func TestTimeoutWithStuckHTTPUpstream(t *testing.T) {
	done := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch gjson.GetBytes(body, "method").String() {
		case "ping":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + gjson.GetBytes(body, "id").Raw + `,"result":{}}`))
		case "initialize":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "s1")
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + gjson.GetBytes(body, "id").Raw + `,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"stuck","version":"1"}}}`))
		case "notifications/initialized":
			w.WriteHeader(http.StatusAccepted)
		default: // tools/call and notifications/cancelled: not answered while the test runs
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(done) })
	m := newFakeMeter("1")
	h := startHost(t, Options{Meter: m, CallTimeout: 200 * time.Millisecond}, UpstreamSpec{Name: "stuck", URL: stuck.URL})
	h.init()
	h.send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"work","arguments":{}}}`)
	r, _ := h.response("5")
	if gjson.GetBytes(r, "result.structuredContent.code").String() != "timeout" {
		t.Fatalf("want a timeout result, got %s", r)
	}
	if ev := m.waitEvents(t, 1); ev[0].Outcome != policy.OutcomeUnconfirmed {
		t.Errorf("outcome = %s, want unconfirmed", ev[0].Outcome)
	}
	// The host's read loop is not stalled by the stuck upstream.
	h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}`)
	if p := h.call("6", "ping", `{}`); gjson.GetBytes(p, "id").Int() != 6 {
		t.Errorf("ping after a stuck cancellation: %s", p)
	}
}
