package mcp

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// upstreamDone is closed once the session's stdio upstream process has
// ended and been reaped.
func upstreamDone(t *testing.T, f *HTTPFront, sid string) <-chan struct{} {
	t.Helper()
	f.mu.Lock()
	h := f.sessions[sid]
	f.mu.Unlock()
	if h == nil {
		t.Fatalf("no session %q", sid)
	}
	return h.s.ups[0].conn.(*stdioConn).done
}

func initSession(t *testing.T, url string) string {
	t.Helper()
	resp, body := do(t, url, httpReq{key: "crk_good", body: initLine})
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	return sid
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the upstream process is still running", what)
	}
}

func TestHTTPFrontMaxSessions(t *testing.T) {
	srv, _ := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}, MaxSessions: 1})
	url := srv.URL + "/mcp"
	sid := initSession(t, url)
	resp, body := do(t, url, httpReq{key: "crk_good", body: initLine})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("initialize beyond --max-sessions: %d %s", resp.StatusCode, body)
	}
	if msg := gjson.GetBytes(body, "error.message").String(); gjson.GetBytes(body, "jsonrpc").String() != "2.0" || !strings.Contains(msg, "--max-sessions") {
		t.Fatalf("503 body is not a JSON-RPC error naming --max-sessions: %s", body)
	}
	// Sessions already open are served as before.
	if resp, body := do(t, url, httpReq{key: "crk_good", session: sid, body: `{"jsonrpc":"2.0","id":2,"method":"ping"}`}); resp.StatusCode != http.StatusOK {
		t.Fatalf("ping in the open session: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, url, httpReq{method: http.MethodDelete, key: "crk_good", session: sid}); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	initSession(t, url) // the freed slot is usable
}

func TestHTTPFrontSessionEndsItsUpstream(t *testing.T) {
	t.Run("DELETE", func(t *testing.T) {
		srv, f := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}})
		url := srv.URL + "/mcp"
		sid := initSession(t, url)
		done := upstreamDone(t, f, sid)
		if resp, _ := do(t, url, httpReq{method: http.MethodDelete, key: "crk_good", session: sid}); resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE: %d", resp.StatusCode)
		}
		waitClosed(t, done, "after DELETE")
	})
	t.Run("idle", func(t *testing.T) {
		srv, f := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}, IdleTimeout: 200 * time.Millisecond})
		url := srv.URL + "/mcp"
		sid := initSession(t, url)
		done := upstreamDone(t, f, sid)
		waitClosed(t, done, "after the idle timeout")
		if resp, _ := do(t, url, httpReq{key: "crk_good", session: sid, body: `{"jsonrpc":"2.0","id":2,"method":"ping"}`}); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("ping in an expired session: %d, want 404", resp.StatusCode)
		}
	})
}

func TestHTTPFrontIdleTimeoutDefault(t *testing.T) {
	_, f := startFront(t, newFakeMeter("1"), FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}})
	if f.o.IdleTimeout != 5*time.Minute {
		t.Fatalf("default idle timeout %s, want 5m", f.o.IdleTimeout)
	}
}
