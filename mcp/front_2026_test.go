package mcp

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
)

func TestHTTPFrontSessionless2026(t *testing.T) {
	m := newFakeMeter("0.02")
	srv, f := startFront(t, m, FrontOptions{Auth: fakeAuth{"crk_a": "agent-1", "crk_b": "agent-2"}})
	call := func(key, id string) []byte {
		resp, body := do(t, srv.URL+"/mcp", httpReq{key: key, body: `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{},` + env2026 + `}}`})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Fatalf("status %d, session %q: %s", resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), body)
		}
		return sseData(t, body, id)
	}
	// Two hosts of one agent use the same id at once: each gets its own
	// answer, under its own id.
	var wg sync.WaitGroup
	out := make([][]byte, 2)
	for i := range out {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = call("crk_a", "7") }()
	}
	wg.Wait()
	for _, r := range out {
		if gjson.GetBytes(r, "id").Raw != "7" || gjson.GetBytes(r, "result.isError").Bool() || gjson.GetBytes(r, "result.resultType").String() != "complete" {
			t.Errorf("answer %s: want the echo result under id 7", r)
		}
	}
	// The budget is spent: the next call is refused in the 2026 shape.
	r := call("crk_a", `"x"`)
	if gjson.GetBytes(r, "result.structuredContent.code").String() != "budget_exceeded" || gjson.GetBytes(r, "result.resultType").String() != "complete" {
		t.Errorf("refusal %s", r)
	}
	// The key is checked on every request.
	resp, _ := do(t, srv.URL+"/mcp", httpReq{key: "crk_wrong", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",` + env2026 + `}}`})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: status %d, want 401", resp.StatusCode)
	}
	f.mu.Lock()
	n := len(f.sessions)
	f.mu.Unlock()
	if n != 1 {
		t.Errorf("%d sessions open, want one for the agent", n)
	}
	// A 2025 request without a session is still refused.
	resp, _ = do(t, srv.URL+"/mcp", httpReq{key: "crk_b", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("2025 request without a session: status %d, want 400", resp.StatusCode)
	}
}

func TestGatewayAnswersDiscover2026(t *testing.T) {
	m := newFakeMeter("1")
	dir := t.TempDir()
	h := startHost(t, Options{Meter: m}, fakeSpec("alpha", filepath.Join(dir, "a.log")), fakeSpec("beta", filepath.Join(dir, "b.log")))
	r := h.call("1", "server/discover", `{`+env2026+`}`)
	res := gjson.GetBytes(r, "result")
	if res.Get("resultType").String() != "complete" || res.Get("supportedVersions.0").String() != "2026-07-28" ||
		!res.Get("capabilities.tools").Exists() || res.Get(`_meta.io\.modelcontextprotocol/serverInfo.name`).String() != "caracal" {
		t.Errorf("server/discover = %s", r)
	}
	r = h.call("2", "tools/list", `{`+env2026+`}`)
	res = gjson.GetBytes(r, "result")
	if n := len(res.Get("tools").Array()); n != 18 || res.Get("cacheScope").String() != "private" || res.Get("ttlMs").Int() != 1000 || res.Get("resultType").String() != "complete" {
		t.Errorf("merged tools/list: %d tools, %s", n, r)
	}
	r = h.call("3", "tools/call", fmt.Sprintf(`{"name":"beta__echo","arguments":{},%s}`, env2026))
	if gjson.GetBytes(r, "result.isError").Bool() {
		t.Errorf("beta__echo: %s", r)
	}
}

// A 2026 host behind the gateway reaches an upstream of an earlier
// revision too: the gateway initialises it itself.
func TestGatewayInitialisesLegacyUpstreamFor2026Host(t *testing.T) {
	m := newFakeMeter("1")
	dir := t.TempDir()
	legacy := fakeSpec("beta", filepath.Join(dir, "b.log"))
	legacy.Env["CARACAL_FAKE_NO_DISCOVER"] = "1"
	h := startHost(t, Options{Meter: m}, fakeSpec("alpha", filepath.Join(dir, "a.log")), legacy)
	r := h.call("1", "tools/list", `{`+env2026+`}`)
	if n := len(gjson.GetBytes(r, "result.tools").Array()); n != 18 {
		t.Errorf("merged tools/list has %d tools, want both upstreams' 18: %s", n, r)
	}
	r = h.call("2", "tools/call", fmt.Sprintf(`{"name":"beta__echo","arguments":{},%s}`, env2026))
	if gjson.GetBytes(r, "result.isError").Bool() || gjson.GetBytes(r, "result.resultType").String() != "complete" {
		t.Errorf("beta__echo through the gateway: %s", r)
	}
}
