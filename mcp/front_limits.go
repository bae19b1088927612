package mcp

import (
	"fmt"
	"net/http"
	"time"
)

// DefaultSessionIdleTimeout is how long an HTTP session may go unused
// before it is closed and its upstream processes end.
const DefaultSessionIdleTimeout = 5 * time.Minute

// janitorInterval is how often idle sessions are looked for: often enough
// that a session outlives its idle timeout by at most a fifth of it.
func janitorInterval(idle time.Duration) time.Duration {
	return min(max(idle/5, 10*time.Millisecond), time.Minute)
}

// admit counts a new session against MaxSessions, or answers 503 with a
// JSON-RPC error and returns false when the front is full. A session
// admitted is counted until admitted is called, by when it is either in
// f.sessions or closed.
func (f *HTTPFront) admit(w http.ResponseWriter) bool {
	f.mu.Lock()
	n := len(f.sessions) + f.starting
	full := f.o.MaxSessions > 0 && n >= f.o.MaxSessions
	if !full {
		f.starting++
	}
	f.mu.Unlock()
	if full {
		w.Header().Set("Retry-After", fmt.Sprint(int(janitorInterval(f.o.IdleTimeout).Seconds())+1))
		jsonError(w, http.StatusServiceUnavailable, codeInternalError, fmt.Sprintf(
			"Service Unavailable: Caracal already serves %d MCP sessions, its limit (--max-sessions); end one with DELETE, or retry once an idle session has expired (after %s unused)",
			n, f.o.IdleTimeout))
		return false
	}
	return true
}

func (f *HTTPFront) admitted() {
	f.mu.Lock()
	f.starting--
	f.mu.Unlock()
}
