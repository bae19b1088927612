package mcp

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caracal-dev/caracal/policy"
)

// Session is one host connection relayed to its upstreams.
type Session struct {
	p       *Proxy
	agentID string
	toHost  func([]byte) error
	ups     []*upstream
	byName  map[string]*upstream
	gateway bool
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger

	mu         sync.Mutex
	pending    map[string]*pending
	byToken    map[string]*pending
	late       map[string]time.Time
	internal   map[string]waiter
	serverReqs map[string]serverReq
	resOwner   map[string]*upstream
	initReq    []byte
	initNote   []byte
	closed     bool
	// modern holds the ids of host requests of revision 2026-07-28 or
	// later, until answered; env is the latest such request's envelope.
	modern    map[string]time.Time
	env       []byte
	exchanges map[string]*exchange // MRTR exchanges waiting for the host's retry

	gwDiscovery gatewayDiscovery // gateway: what server/discover told, for 2026 hosts

	// admitting holds the ids of tools/calls being priced and reserved;
	// true once the host cancelled the call before it was relayed.
	admitting map[string]bool

	seq       atomic.Uint64
	settles   sync.WaitGroup
	begins    chan struct{} // bounds tools/calls being admitted at once
	beginning sync.WaitGroup
	// callLeft is signalled (without blocking; it holds one signal) each
	// time a tools/call leaves pending, so that a draining Close wakes
	// when the last one is answered instead of polling.
	callLeft chan struct{}
}

// NewSession starts the upstreams for one host connection. toHost writes
// one message to the host; it must be safe for concurrent use.
func (p *Proxy) NewSession(ctx context.Context, agentID string, toHost func([]byte) error) (*Session, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{
		p: p, agentID: agentID, toHost: toHost, gateway: p.gateway,
		byName: map[string]*upstream{}, ctx: sctx, cancel: cancel,
		log:     p.log.With("agent", agentID),
		pending: map[string]*pending{}, byToken: map[string]*pending{},
		late: map[string]time.Time{}, internal: map[string]waiter{}, admitting: map[string]bool{},
		serverReqs: map[string]serverReq{}, resOwner: map[string]*upstream{},
		begins: make(chan struct{}, 64), callLeft: make(chan struct{}, 1),
	}
	for _, spec := range p.opts.Upstreams {
		u := &upstream{spec: spec, name: spec.Name, ready: true, readyCh: make(chan struct{}), declared: map[string]*policy.PriceRule{}, named: make(chan struct{})}
		close(u.readyCh)
		if spec.Name != "" {
			close(u.named)
		}
		ev := connEvents{
			message:   func(m []byte) { s.fromUpstream(u, m) },
			failed:    func(id string, err error, unknown bool) { s.upstreamFailed(u, id, err, unknown) },
			down:      func(err error) { s.upstreamDown(u, err) },
			restarted: func() { go s.reinit(u) },
		}
		var err error
		if len(spec.Command) > 0 {
			u.conn, err = startStdio(sctx, spec, ev, p.opts.MaxMessageSize, p.opts.Stderr, s.log)
		} else {
			u.conn, err = dialHTTP(sctx, spec, ev, p.opts.MaxMessageSize, s.log)
		}
		if err != nil {
			s.closeConns()
			cancel()
			return nil, err
		}
		s.ups = append(s.ups, u)
		if spec.Name != "" {
			s.byName[spec.Name] = u
		}
	}
	return s, nil
}

func (s *Session) closeConns() {
	for _, u := range s.ups {
		_ = u.conn.close()
	}
}

func (s *Session) reply(msg []byte) {
	msg = s.shapeReply(msg)
	if err := s.toHost(msg); err != nil {
		s.log.Debug("write to host failed", "err", err)
	}
}

// upstreamSessionID is the single HTTP upstream's session id, if any.
func (s *Session) upstreamSessionID() string {
	if len(s.ups) != 1 {
		return ""
	}
	return s.ups[0].conn.sessionID()
}
