package mcp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/policy"
	"github.com/tidwall/gjson"
)

// errUpstreamDown is returned when a message cannot reach an upstream that
// is not running.
var errUpstreamDown = errors.New("upstream server is not running")

const (
	// upstreamReadyWait is how long a message waits for a restarting
	// upstream before it is answered as undeliverable. A stdio restart
	// backs off at most restartMax (10 s) and then repeats the initialize
	// handshake; 30 s covers both with room, and still answers the host
	// well before common hosts give up on a request (60 s).
	upstreamReadyWait = 30 * time.Second
	// upstreamNameWait is how long a tools/call waits for the initialize
	// result that names a single upstream run without --name. That result
	// answers the host's own first request, so a running server gives it
	// at once; the bound is upstreamReadyWait's, for one still starting.
	upstreamNameWait = upstreamReadyWait
)

// upstreamConn is one connection to an upstream server, carrying whole
// JSON-RPC messages. Incoming messages and state changes are reported
// through the connEvents it was created with.
type upstreamConn interface {
	send(ctx context.Context, msg []byte) error
	close() error
	// sessionID is the session id the upstream assigned (Mcp-Session-Id
	// of an HTTP upstream), or "" if it has none.
	sessionID() string
}

// connEvents are the callbacks an upstreamConn reports to.
type connEvents struct {
	// message delivers one message from the upstream; the slice is the
	// receiver's to keep.
	message func(msg []byte)
	// failed reports that the request with this id got no response.
	// unknown says whether the upstream may have acted on it.
	failed func(id string, err error, unknown bool)
	// down reports that the upstream stopped; every request in flight on it
	// is lost.
	down func(err error)
	// restarted reports that a new upstream process is running and needs
	// the session's initialize handshake again.
	restarted func()
}

// upstream is one upstream server within a session.
type upstream struct {
	spec UpstreamSpec
	conn upstreamConn

	mu       sync.Mutex
	name     string // resource name; may be learned from initialize
	ready    bool
	readyCh  chan struct{}
	declared map[string]*policy.PriceRule // tool → price the server declared
	listed   bool                         // declared was filled from a full tools/list
	listing  chan struct{}                // closed when a tools/list read under way ends
	named    chan struct{}                // closed once name is known
	caps     gjson.Result                 // gateway: capabilities from initialize

	listFailedAt time.Time     // when reading the declared prices last failed
	discoverAt   time.Time     // when a server/discover last failed to name it
	discovering  chan struct{} // closed when a server/discover under way ends
}

// waitNamed waits until the upstream's resource name is known: a single
// upstream without --name is named by its initialize result.
func (u *upstream) waitNamed(ctx context.Context) {
	t := time.NewTimer(upstreamNameWait)
	defer t.Stop()
	select {
	case <-u.named:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (u *upstream) setName(n string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.name == "" {
		u.name = n
	}
	select {
	case <-u.named:
	default:
		close(u.named)
	}
}

func (u *upstream) resName() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.name == "" {
		return "upstream"
	}
	return u.name
}

func (u *upstream) setReady(r bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r == u.ready {
		return
	}
	u.ready = r
	if r {
		close(u.readyCh)
	} else {
		u.readyCh = make(chan struct{})
	}
}

// waitReady waits until the upstream can take messages.
func (u *upstream) waitReady(ctx context.Context, d time.Duration) error {
	u.mu.Lock()
	ready, ch := u.ready, u.readyCh
	u.mu.Unlock()
	if ready {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return fmt.Errorf("%w (still restarting after %s)", errUpstreamDown, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *upstream) declaredPrice(tool string) *policy.PriceRule {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.declared[tool]
}

func (u *upstream) setDeclared(tool string, r *policy.PriceRule) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r == nil {
		delete(u.declared, tool)
		return
	}
	u.declared[tool] = r
}
