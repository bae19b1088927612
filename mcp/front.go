package mcp

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// FrontOptions configure the Streamable HTTP front.
type FrontOptions struct {
	// Auth checks `Authorization: Bearer <agent key>`.
	Auth Authenticator
	// ListenAddr is the address the front serves on; it decides which
	// Host headers are accepted by default.
	ListenAddr string
	// DefaultAgentID, if set, is charged for requests that carry no key.
	// It is refused unless ListenAddr is a loopback address.
	DefaultAgentID string
	// AllowedHosts are extra Host header values (host or host:port).
	AllowedHosts []string
	// AllowedOrigins are extra Origin values (scheme://host[:port]).
	AllowedOrigins []string
	// IdleTimeout closes sessions unused for this long, ending their
	// upstream processes (default DefaultSessionIdleTimeout).
	IdleTimeout time.Duration
	// MaxSessions bounds the sessions open at once (each runs its own
	// stdio upstream processes); an initialize beyond it is answered 503.
	// Zero means no bound.
	MaxSessions int
}

// HTTPFront serves MCP's Streamable HTTP transport to hosts. Each HTTP
// session (Mcp-Session-Id) is one proxy Session with its own upstream
// connections: its own child process for a stdio upstream, its own
// upstream session for an HTTP upstream, whose session id it reuses.
type HTTPFront struct {
	p    *Proxy
	o    FrontOptions
	stop chan struct{}
	// draining is closed by Drain: GET streams end.
	draining  chan struct{}
	drainOnce sync.Once

	mu       sync.Mutex
	sessions map[string]*httpSession
	closed   bool
	starting int // sessions being initialized, not yet in sessions

	modernMu sync.Mutex // serialises opening agents' 2026 sessions
}

// NewHTTPFront returns the Streamable HTTP front of p.
func (p *Proxy) NewHTTPFront(o FrontOptions) (*HTTPFront, error) {
	if o.DefaultAgentID != "" && !IsLoopback(o.ListenAddr) {
		return nil, fmt.Errorf("refusing to accept requests without a key on %s: --agent without a key is only allowed on a loopback address such as 127.0.0.1", o.ListenAddr)
	}
	if o.Auth == nil && o.DefaultAgentID == "" {
		return nil, errors.New("mcp: the HTTP front needs an authenticator or a default agent")
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultSessionIdleTimeout
	}
	f := &HTTPFront{p: p, o: o, sessions: map[string]*httpSession{}, stop: make(chan struct{}), draining: make(chan struct{})}
	go f.janitor()
	return f, nil
}
