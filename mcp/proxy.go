// Package mcp is Caracal's MCP interposer: a proxy between an MCP host
// (Claude Desktop, Claude Code, Cursor, any MCP client) and one or more
// upstream MCP servers that prices, checks, reserves and settles every
// tools/call and adds prices to tools/list, while every other message passes
// through byte for byte.
//
// The relay works on JSON-RPC messages, never on typed MCP structures: it
// reads the few fields it needs with gjson and edits tools/list results by
// splicing bytes, so schema keywords, unknown content types, _meta and
// fields of future protocol revisions survive untouched.
package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// Authenticator resolves an agent key presented on the HTTP front.
type Authenticator = interpose.Authenticator

// UpstreamSpec describes one upstream MCP server: a command run as a child
// speaking stdio, or the URL of a Streamable HTTP (or legacy SSE) server.
type UpstreamSpec struct {
	// Name is the server's name in resources (mcp:<name>/<tool>) and, in
	// gateway mode, the tool-name prefix. Empty for a single upstream means
	// the name the server advertises in its initialize result.
	Name    string
	Command []string
	Env     map[string]string
	Dir     string
	URL     string
	Headers map[string]string
	// Trusted upstreams may declare prices in a tool's _meta; the
	// pricebook still wins.
	Trusted bool

	monitor Monitor // Options.Monitor, set by New
}

// Options configure a Proxy.
type Options struct {
	Meter     interpose.Meter
	Upstreams []UpstreamSpec
	// MaxMessageSize bounds one JSON-RPC message from either side;
	// DefaultMaxMessageSize if zero.
	MaxMessageSize int64
	// CallTimeout is how long a tools/call may go without a response or a
	// progress notification before the proxy gives up on it (default 2 min).
	CallTimeout time.Duration
	// MaxCallDuration caps a tools/call even while progress keeps arriving
	// (default 15 min).
	MaxCallDuration time.Duration
	// CancelGrace is how long after a host cancels a call the proxy waits
	// for the upstream's response before settling it as unconfirmed
	// (default 10 s).
	CancelGrace time.Duration
	// DrainTimeout is how long a closing session waits for in-flight calls
	// (default 5 s).
	DrainTimeout time.Duration
	// PageSize is the gateway's tools/list page size (default 500).
	PageSize int
	// Stderr receives stdio upstreams' stderr; os.Stderr if nil.
	Stderr io.Writer
	Logger *slog.Logger
	// Version is reported as the gateway's serverInfo.version.
	Version string
	// Monitor, if set, is told of upstream and session lifecycle events.
	Monitor Monitor
}

// Proxy creates sessions between hosts and upstreams.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	gateway bool
	// unpricedNoted holds the upstreams whose unpriced tools were logged.
	unpricedNoted sync.Map
}

// New checks o and returns a Proxy.
func New(o Options) (*Proxy, error) {
	if o.Meter == nil {
		return nil, errors.New("mcp: no meter")
	}
	if len(o.Upstreams) == 0 {
		return nil, errors.New("mcp: no upstream: give a command after --, --upstream-url, or mcp.upstreams in the config")
	}
	seen := map[string]bool{}
	for i, u := range o.Upstreams {
		if (len(u.Command) == 0) == (u.URL == "") {
			return nil, fmt.Errorf("mcp: upstream %d (%q): exactly one of command and url is required", i, u.Name)
		}
		if len(o.Upstreams) > 1 {
			if u.Name == "" {
				return nil, fmt.Errorf("mcp: upstream %d: a name is required when there are several upstreams", i)
			}
		}
		if u.Name != "" {
			if err := policy.ValidateUpstreamName(u.Name); err != nil {
				return nil, fmt.Errorf("mcp: upstream %d: %w", i, err)
			}
		}
		if seen[u.Name] && u.Name != "" {
			return nil, fmt.Errorf("mcp: upstream name %q is used twice", u.Name)
		}
		seen[u.Name] = true
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	o.setTimeDefaults()
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	o.Upstreams = withMonitor(o.Upstreams, o.Monitor)
	return &Proxy{opts: o, log: o.Logger, gateway: len(o.Upstreams) > 1}, nil
}

func (o *Options) setTimeDefaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Minute
	}
	if o.MaxCallDuration <= 0 {
		o.MaxCallDuration = 15 * time.Minute
	}
	if o.MaxCallDuration < o.CallTimeout {
		o.CallTimeout = o.MaxCallDuration
	}
	if o.CancelGrace <= 0 {
		o.CancelGrace = 10 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
}

// LongestCall is the longest a tools/call may hold its reservation under
// o: it runs up to MaxCallDuration, a cancellation at the last moment
// waits CancelGrace more, and a closing session drains for DrainTimeout
// before settling. The meter's reservations must outlast it
// (interpose.ReservationTTL).
func (o Options) LongestCall() time.Duration {
	o.setTimeDefaults()
	return o.MaxCallDuration + o.CancelGrace + o.DrainTimeout
}

// SanitizeName maps a server's advertised name to [a-z0-9_-].
func SanitizeName(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	for strings.Contains(out, "__") {
		out = strings.ReplaceAll(out, "__", "_")
	}
	if out == "" {
		return "upstream"
	}
	return out
}

// CheckCommands verifies that every stdio upstream's command exists, so a
// typo is reported before any host connects.
func (p *Proxy) CheckCommands() error {
	for _, u := range p.opts.Upstreams {
		if len(u.Command) > 0 {
			if _, err := lookPath(u.Command[0], u.Env); err != nil {
				return fmt.Errorf("upstream command %q not found: %w", u.Command[0], err)
			}
		}
	}
	return nil
}

// ServeStdio runs one session with the host on in/out (newline-delimited
// JSON-RPC) for agentID until in ends or ctx is cancelled.
//
// It then returns promptly rather than drain: the host that closed stdin
// (or the signal that cancelled ctx) will read no more answers, so calls
// still in flight are settled at once — unconfirmed if they reached their
// upstream, released if they never did — before the upstreams are stopped,
// instead of being left open for another process's expiry sweep.
func (p *Proxy) ServeStdio(ctx context.Context, agentID string, in io.Reader, out io.Writer) error {
	w := &lineWriter{w: out}
	s, err := p.NewSession(ctx, agentID, w.write)
	if err != nil {
		return err
	}
	defer s.closeAfter(0)
	p.sessionOpened()
	defer p.sessionClosed()
	r := newLineReader(in, p.opts.MaxMessageSize)
	lines := make(chan []byte)
	errc := make(chan error, 1)
	go func() {
		for {
			line, err := r.next()
			if err != nil {
				var tl *TooLargeError
				if errors.As(err, &tl) {
					s.hostTooLarge(tl)
					continue
				}
				errc <- err
				return
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case line := <-lines:
			s.HandleHost(ctx, line)
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read from host: %w", err)
		case <-ctx.Done():
			return nil
		}
	}
}
