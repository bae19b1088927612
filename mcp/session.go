package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/caracal-dev/caracal/policy"
)

// errUpstreamDown is returned when a message cannot reach an upstream that
// is not running.
var errUpstreamDown = errors.New("upstream server is not running")

// upstreamConn is one connection to an upstream server, carrying whole
// JSON-RPC messages. Incoming messages and state changes are reported
// through the connEvents it was created with.
type upstreamConn interface {
	send(ctx context.Context, msg []byte) error
	close() error
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
	t := time.NewTimer(30 * time.Second)
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

// pending is a host request in flight upstream.
type pending struct {
	id     string // JSON text of the host's id
	method string
	up     *upstream
	list   bool // tools/list whose result the proxy decorates

	// tools/call only
	ticket    *interpose.Ticket
	token     string // progress token's JSON text
	timer     *time.Timer
	hardStop  time.Time
	cancelled bool
	// MRTR: the tool's name within its upstream, the call's identity for
	// matching a retry, the round this is, and whether it answers a
	// declined or cancelled input request.
	tool     string
	callKey  string
	rounds   int
	declined bool
	// sent is set (under Session.mu) once the request was handed to the
	// upstream: a request still waiting for a restarting upstream was
	// never delivered, so losing the upstream does not make its outcome
	// unknown.
	sent bool
}

type waiter struct {
	ch chan []byte
	up *upstream
}

type serverReq struct {
	up *upstream
	id string // the upstream's own id
}

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
		begins: make(chan struct{}, 64),
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

// Close drains in-flight calls (up to the drain timeout), settles the
// rest as unconfirmed, stops the upstreams and waits for settlements.
func (s *Session) Close() error { return s.closeAfter(s.p.opts.DrainTimeout) }

// closeAfter is Close waiting at most drain for in-flight calls: zero
// settles them at once, as unconfirmed if they reached their upstream and
// released if they never did.
func (s *Session) closeAfter(drain time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.beginning.Wait()
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && s.callsInFlight() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	var lost, unsent []*pending
	for id, p := range s.pending {
		delete(s.pending, id)
		if p.ticket != nil {
			s.stopCall(p)
			if p.sent {
				lost = append(lost, p)
			} else {
				unsent = append(unsent, p)
			}
		}
	}
	s.mu.Unlock()
	s.dropExchanges()
	for _, p := range lost {
		s.unconfirmed(p, "the host disconnected before the upstream answered")
	}
	for _, p := range unsent {
		s.release(p, "the host disconnected before the call reached the upstream")
	}
	s.closeConns()
	s.cancel()
	s.settles.Wait()
	return nil
}

func (s *Session) callsInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pending {
		if p.ticket != nil {
			n++
		}
	}
	return n
}

func (s *Session) reply(msg []byte) {
	msg = s.shapeReply(msg)
	if err := s.toHost(msg); err != nil {
		s.log.Debug("write to host failed", "err", err)
	}
}

// hostTooLarge answers an oversize message from the host.
func (s *Session) hostTooLarge(e *TooLargeError) {
	id := ""
	if v := gjson.GetBytes(e.Prefix, "id"); v.Exists() && (v.Type == gjson.Number || v.Type == gjson.String) {
		id = v.Raw
	}
	s.log.Warn("message from host too large", "size", e.Size, "max", e.Max)
	s.reply(errorResponse(id, codeInvalidRequest, e.Error()))
}

// HandleHost handles one message (or batch) from the host.
func (s *Session) HandleHost(ctx context.Context, raw []byte) {
	c := firstNonSpace(raw)
	if err := jsoncheck.Check(raw, true); err != nil {
		id, code, msg := rejectJSON(raw, err)
		s.log.Warn("refused a message from the host", "err", err)
		s.reply(errorResponse(id, code, msg))
		return
	}
	if !gjson.ValidBytes(raw) {
		s.reply(errorResponse("", codeParseError, "Parse error: the message is not valid JSON"))
		return
	}
	switch c {
	case '[':
		// Batches (JSON-RPC 2.0, dropped from MCP in 2025-06-18) are
		// unpacked and each message handled alone.
		arr := gjson.ParseBytes(raw).Array()
		if len(arr) == 0 {
			s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: empty batch"))
		}
		for _, e := range arr {
			if e.IsObject() {
				s.handleOne(ctx, []byte(e.Raw))
			} else {
				s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: batch element is not an object"))
			}
		}
		return
	case '{':
		s.handleOne(ctx, raw)
	default:
		s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: not a JSON-RPC message"))
	}
}

func (s *Session) handleOne(ctx context.Context, raw []byte) {
	m, ok := parseMessage(raw)
	if r := checkHostMessage(m, ok); r != nil {
		s.log.Warn("refused a message from the host", "method", m.method, "reason", r.reason)
		if !r.silent {
			s.reply(r.resp)
		}
		return
	}
	if m.kind == kindRequest {
		s.mu.Lock()
		s.noteRevision(m)
		s.mu.Unlock()
	}
	switch m.kind {
	case kindRequest:
		s.hostRequest(ctx, m)
	case kindNotification:
		s.hostNotification(ctx, m)
	case kindResponse:
		s.hostResponse(ctx, m)
	}
}

func (s *Session) hostRequest(ctx context.Context, m message) {
	switch m.method {
	case "initialize":
		s.mu.Lock()
		s.initReq = m.raw
		s.mu.Unlock()
		if s.gateway {
			s.gatewayInitialize(ctx, m)
			return
		}
	case "tools/call":
		// Pricing and reserving waits on the store; calls admitted in
		// parallel keep one slow commit from holding up the session.
		// The id is marked as being admitted first, in the host's order,
		// so that a cancellation read next is not lost.
		// A call whose tool name is unusable is refused here, before any
		// metering and in the host's order.
		if resp := badToolName(m); resp != nil {
			s.reply(resp)
			return
		}
		s.expectCalls(m.id)
		s.begins <- struct{}{}
		s.beginning.Add(1)
		go func() {
			defer func() { <-s.begins; s.beginning.Done() }()
			s.toolsCall(ctx, m)
		}()
		return
	}
	if s.gateway {
		s.gatewayRequest(ctx, m)
		return
	}
	u := s.ups[0]
	p := &pending{id: m.id, method: m.method, up: u, list: m.method == "tools/list"}
	if !s.track(p) {
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
		return
	}
	s.forward(ctx, p, m.raw)
}

// expectCalls marks tools/call ids as being admitted, before admission
// starts, so that a cancellation that overtakes admission is remembered.
func (s *Session) expectCalls(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.admitting[id]; !ok {
			s.admitting[id] = false
		}
	}
}

// cancelledEarly reports whether the host cancelled a call being admitted.
func (s *Session) cancelledEarly(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitting[id]
}

// admitted forgets an id once its admission has ended.
func (s *Session) admitted(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.admitting, id)
}

// track registers p; it is false if the id is already in flight.
func (s *Session) track(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.pending[p.id]; dup {
		return false
	}
	s.pending[p.id] = p
	if p.token != "" {
		s.byToken[p.token] = p
	}
	return true
}

// untrack removes p if it is still in flight and reports whether it was.
func (s *Session) untrack(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[p.id] != p {
		return false
	}
	delete(s.pending, p.id)
	s.stopCall(p)
	return true
}

// stopCall stops p's timer and forgets its progress token; s.mu is held.
func (s *Session) stopCall(p *pending) {
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.token != "" && s.byToken[p.token] == p {
		delete(s.byToken, p.token)
	}
}

// markLate remembers an id the proxy already answered so that a late
// response from upstream is dropped; s.mu is held.
func (s *Session) markLate(id string) {
	now := time.Now()
	if len(s.late) > 4096 {
		for k, t := range s.late {
			if now.Sub(t) > 10*time.Minute {
				delete(s.late, k)
			}
		}
	}
	s.late[id] = now
}

// forward sends a tracked request upstream, answering it with an error if
// it cannot be delivered.
func (s *Session) forward(ctx context.Context, p *pending, msg []byte) {
	err := p.up.waitReady(ctx, 30*time.Second)
	if err == nil {
		err = p.up.conn.send(ctx, msg)
	}
	if err == nil {
		s.mu.Lock()
		p.sent = true
		s.mu.Unlock()
		return
	}
	if !s.untrack(p) {
		return
	}
	s.log.Warn("could not deliver request upstream", "method", p.method, "upstream", p.up.resName(), "err", err)
	if p.ticket != nil {
		s.release(p, "the upstream server could not be reached: "+err.Error())
		s.reply(toolErrorResult(p.id, "Caracal could not reach the tool server, so the call was not made and not charged: "+err.Error(), nil))
		return
	}
	s.reply(errorResponse(p.id, codeInternalError, "Caracal could not reach the upstream server: "+err.Error()))
}

func (s *Session) hostNotification(ctx context.Context, m message) {
	switch m.method {
	case "notifications/initialized":
		s.mu.Lock()
		s.initNote = m.raw
		s.mu.Unlock()
	case "notifications/cancelled":
		rid := canonicalID(gjson.GetBytes(m.raw, "params.requestId"))
		s.mu.Lock()
		p := s.pending[rid]
		if p != nil && p.ticket != nil && !p.cancelled {
			p.cancelled = true
			p.timer.Reset(s.p.opts.CancelGrace)
		}
		if _, admitting := s.admitting[rid]; p == nil && admitting {
			// The call is still being priced and reserved: it is
			// dropped there, and the upstream never hears of it.
			s.admitting[rid] = true
			s.mu.Unlock()
			s.log.Info("host cancelled a tools/call before it was relayed", "id", rid)
			return
		}
		s.mu.Unlock()
		if p != nil {
			s.sendAside(p.up, m.raw)
			return
		}
		if s.gateway {
			return // nothing in flight: nowhere to send it
		}
		// Probably a call that already timed out here: the upstream may be
		// stuck, so the host's read loop must not wait for it.
		s.sendAside(s.ups[0], m.raw)
		return
	}
	if s.gateway {
		for _, u := range s.ups {
			s.send(ctx, u, m.raw)
		}
		return
	}
	s.send(ctx, s.ups[0], m.raw)
}

// send delivers a message that expects no answer.
func (s *Session) send(ctx context.Context, u *upstream, msg []byte) {
	err := u.waitReady(ctx, 30*time.Second)
	if err == nil {
		err = u.conn.send(ctx, msg)
	}
	if err != nil {
		s.log.Warn("could not deliver message upstream", "upstream", u.resName(), "err", err)
	}
}

func (s *Session) hostResponse(ctx context.Context, m message) {
	if !s.gateway {
		s.send(ctx, s.ups[0], m.raw)
		return
	}
	s.mu.Lock()
	sr, ok := s.serverReqs[m.id]
	delete(s.serverReqs, m.id)
	s.mu.Unlock()
	if !ok {
		s.log.Warn("response from host to an unknown request", "id", m.id)
		return
	}
	out, err := setPath(m.raw, []string{"id"}, []byte(sr.id))
	if err != nil {
		return
	}
	s.send(ctx, sr.up, out)
}

// badToolName answers a tools/call whose tool name is missing or unusable,
// or returns nil.
func badToolName(m message) []byte {
	name := gjson.GetBytes(m.raw, "params.name")
	if name.Type != gjson.String {
		return errorResponse(m.id, codeInvalidParams, "Invalid params: tools/call needs a tool name")
	}
	if why := checkToolName(name.Str); why != "" {
		return errorResponse(m.id, codeInvalidParams, "Invalid params: "+why)
	}
	return nil
}

// toolsCall prices, checks and reserves a tools/call before relaying it.
func (s *Session) toolsCall(ctx context.Context, m message) {
	defer s.admitted(m.id)
	if s.cancelledEarly(m.id) {
		s.log.Info("tools/call cancelled by the host before it was admitted; not relayed", "id", m.id)
		s.reply(cancelledEarlyResult(m.id))
		return
	}
	params := gjson.GetManyBytes(m.raw, "params.name", "params.arguments", "params._meta.progressToken")
	name := params[0].Str // checked by badToolName before admission
	u, tool := s.ups[0], name
	if s.gateway {
		server, t, ok := strings.Cut(name, "__")
		u = s.byName[server]
		if !ok || u == nil || t == "" {
			s.reply(errorResponse(m.id, codeInvalidParams, "Unknown tool: "+name))
			return
		}
		tool = t
	}
	s.ensureNamed(ctx, u, envelope(m.raw))
	if u.spec.Trusted {
		s.learnDeclared(ctx, u)
	}
	resource := metering.Resource(u.resName(), tool)
	var args []byte
	if params[1].Exists() {
		args = []byte(params[1].Raw)
	}
	if ex := s.resume(u, tool, m.raw); ex != nil {
		s.relayRound(ctx, m, ex, tool)
		return
	}
	ticket, dec := s.p.opts.Meter.Begin(ctx, interpose.Call{
		AgentID:   s.agentID,
		Resource:  resource,
		Operation: "tools/call",
		Upstream:  u.resName(),
		Arguments: args,
		Declared:  u.declaredPrice(tool),
	})
	if ticket == nil {
		if dec.Code == policy.CodeNotAllowed {
			s.reply(errorResponse(m.id, codeInvalidParams, "Unknown tool: "+name))
			return
		}
		s.reply(resultResponse(m.id, metering.RefusalResult(resource, dec)))
		return
	}
	p := &pending{id: m.id, method: m.method, up: u, ticket: ticket, token: params[2].Raw, tool: tool, rounds: 1, callKey: callKey(tool, m.raw)}
	s.admitCall(ctx, m, p, tool)
}

// admitCall tracks an admitted tools/call (a first round, or a later round
// of an MRTR exchange) and relays it.
func (s *Session) admitCall(ctx context.Context, m message, p *pending, tool string) {
	now := time.Now()
	if p.hardStop.IsZero() {
		p.hardStop = now.Add(s.p.opts.MaxCallDuration)
	}
	s.mu.Lock()
	if _, dup := s.pending[p.id]; dup {
		s.mu.Unlock()
		s.release(p, "duplicate request id")
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
		return
	}
	if s.admitting[p.id] {
		s.mu.Unlock()
		s.log.Info("tools/call cancelled by the host while it was admitted; not relayed", "id", p.id)
		s.release(p, "cancelled by the host before it was relayed")
		s.reply(cancelledEarlyResult(p.id))
		return
	}
	p.timer = time.AfterFunc(min(s.p.opts.CallTimeout, max(p.hardStop.Sub(now), 0)), func() { s.callTimedOut(p) })
	s.pending[p.id] = p
	if p.token != "" {
		s.byToken[p.token] = p
	}
	s.mu.Unlock()
	msg := m.raw
	if s.gateway {
		tb, _ := json.Marshal(tool)
		var err error
		if msg, err = setPath(m.raw, []string{"params", "name"}, tb); err != nil {
			s.untrack(p)
			s.release(p, "could not rewrite the request")
			s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: "+err.Error()))
			return
		}
	}
	s.forward(ctx, p, msg)
}

// cancelledEarlyResult answers a call the host cancelled before it was
// relayed. The host ignores it (it gave up on the call), but an HTTP POST
// waiting for the call's response is closed by it.
func cancelledEarlyResult(id string) []byte {
	return toolErrorResult(id, "The host cancelled this call before Caracal relayed it, so it was not made and not charged.", map[string]any{"code": "cancelled", "reason": "cancelled by the host before it was relayed"})
}

// callTimedOut fires when a tools/call has waited too long, or when a
// cancelled call's grace period ends.
func (s *Session) callTimedOut(p *pending) {
	now := time.Now()
	s.mu.Lock()
	if s.pending[p.id] != p {
		s.mu.Unlock()
		return
	}
	delete(s.pending, p.id)
	s.stopCall(p)
	s.markLate(p.id)
	cancelled := p.cancelled
	s.mu.Unlock()
	if cancelled {
		s.unconfirmed(p, "cancelled by the host; the upstream sent no response")
		return
	}
	limit := s.p.opts.CallTimeout
	if !now.Before(p.hardStop) {
		limit = s.p.opts.MaxCallDuration
	}
	s.log.Warn("tools/call timed out", "id", p.id, "after", limit)
	s.reply(toolErrorResult(p.id, fmt.Sprintf("The tool server did not answer within %s. Its outcome is unknown, so the call was charged as unconfirmed.", limit), map[string]any{"code": "timeout", "reason": "no response within " + limit.String()}))
	s.unconfirmed(p, "no response within "+limit.String())
	params, _ := json.Marshal(map[string]any{"requestId": json.RawMessage(p.id), "reason": "timed out in Caracal after " + limit.String()})
	s.sendAside(p.up, notificationBytes("notifications/cancelled", params))
}

// cancelSendTimeout bounds how long delivering a cancellation may take.
const cancelSendTimeout = 10 * time.Second

// sendAside delivers a cancellation without holding up the caller: an
// upstream that has stopped answering (an HTTP server stuck in a tool) must
// not delay the host's answer or stall the host's read loop.
func (s *Session) sendAside(u *upstream, msg []byte) {
	s.settles.Add(1)
	go func() {
		defer s.settles.Done()
		ctx, cancel := context.WithTimeout(s.ctx, cancelSendTimeout)
		defer cancel()
		s.send(ctx, u, msg)
	}()
}

// touch extends a call's timeout when progress arrives, never past its
// hard stop.
func (s *Session) touch(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byToken[token]
	if p == nil || p.cancelled {
		return
	}
	d := s.p.opts.CallTimeout
	if left := time.Until(p.hardStop); left < d {
		d = max(left, 0)
	}
	p.timer.Reset(d)
}

func (s *Session) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
}

func (s *Session) async(fn func(ctx context.Context)) {
	s.settles.Add(1)
	go func() {
		defer s.settles.Done()
		ctx, cancel := s.settleCtx()
		defer cancel()
		fn(ctx)
	}()
}

func (s *Session) release(p *pending, reason string) {
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Release(ctx, p.ticket, reason); err != nil {
			s.log.Error("release failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}

func (s *Session) unconfirmed(p *pending, reason string) {
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Unconfirmed(ctx, p.ticket, reason); err != nil {
			s.log.Error("unconfirmed settlement failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}

// finishCall settles a tools/call from its response.
func (s *Session) finishCall(p *pending, raw []byte) {
	res := gjson.GetManyBytes(raw, "error.code", "error.message", "result.isError")
	if res[0].Exists() {
		s.release(p, fmt.Sprintf("upstream answered with JSON-RPC error %s: %s", res[0].Raw, res[1].String()))
		return
	}
	if p.declined {
		s.release(p, fmt.Sprintf("the host declined the tool's request for input; the exchange ended after %d rounds without the tool's work", p.rounds))
		return
	}
	r := interpose.Result{ToolError: res[2].Bool(), Note: roundsNote(p.rounds)}
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Settle(ctx, p.ticket, r); err != nil {
			s.log.Error("settle failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}

// fromUpstream handles one message from an upstream.
func (s *Session) fromUpstream(u *upstream, raw []byte) {
	if err := jsoncheck.Check(raw, false); err != nil {
		s.log.Warn("dropped a message from upstream", "upstream", u.resName(), "bytes", len(raw), "err", err)
		return
	}
	if !gjson.ValidBytes(raw) {
		s.log.Warn("dropped invalid JSON from upstream", "upstream", u.resName(), "bytes", len(raw))
		return
	}
	m, ok := parseMessage(raw)
	if !ok {
		if !s.gateway {
			s.reply(raw) // not ours to judge
		}
		return
	}
	switch m.kind {
	case kindResponse:
		s.upstreamResponse(u, m)
	case kindRequest:
		if s.gateway {
			n := s.seq.Add(1)
			pid := `"caracal-s-` + strconv.FormatUint(n, 10) + `"`
			out, err := setPath(m.raw, []string{"id"}, []byte(pid))
			if err != nil {
				return
			}
			s.mu.Lock()
			s.serverReqs[pid] = serverReq{up: u, id: m.id}
			s.mu.Unlock()
			s.reply(out)
			return
		}
		s.reply(m.raw)
	case kindNotification:
		switch m.method {
		case "notifications/progress":
			if t := gjson.GetBytes(m.raw, "params.progressToken"); t.Exists() {
				s.touch(t.Raw)
			}
		case "notifications/cancelled":
			if s.gateway {
				rid := gjson.GetBytes(m.raw, "params.requestId").Raw
				s.mu.Lock()
				var pid string
				for k, sr := range s.serverReqs {
					if sr.up == u && sr.id == rid {
						pid = k
						delete(s.serverReqs, k)
						break
					}
				}
				s.mu.Unlock()
				if pid == "" {
					return
				}
				out, err := setPath(m.raw, []string{"params", "requestId"}, []byte(pid))
				if err != nil {
					return
				}
				s.reply(out)
				return
			}
		}
		s.reply(m.raw)
	}
}

func (s *Session) upstreamResponse(u *upstream, m message) {
	learnServerInfo(u, m.raw)
	s.mu.Lock()
	if w, ok := s.internal[m.id]; ok && w.up == u {
		delete(s.internal, m.id)
		s.mu.Unlock()
		w.ch <- m.raw
		return
	}
	p := s.pending[m.id]
	if p != nil && p.up != u {
		p = nil
	}
	if p != nil {
		delete(s.pending, m.id)
		s.stopCall(p)
	} else if _, late := s.late[m.id]; late {
		delete(s.late, m.id)
		s.mu.Unlock()
		s.log.Info("dropped a late response the proxy already answered", "id", m.id)
		return
	}
	s.mu.Unlock()
	if p == nil {
		if !s.gateway {
			s.reply(m.raw)
		}
		return
	}
	out := m.raw
	switch {
	case p.ticket != nil:
		// The host hears first; the settlement's commit is off its path.
		// The reservation holds the budget until then.
		// An input_required round is held before the host hears of it,
		// so that its retry finds the exchange.
		held := s.holdRound(p, m.raw)
		s.reply(out)
		if !held {
			s.finishCall(p, m.raw)
		}
		return
	case p.list:
		out = s.decorateList(u, m)
		if s.isModernID(p.id) {
			out = cacheHints(out)
		}
	case p.method == "initialize":
		u.setName(SanitizeName(gjson.GetBytes(m.raw, "result.serverInfo.name").String()))
	}
	s.reply(out)
}

// decorateList filters and prices a single upstream's tools/list result.
func (s *Session) decorateList(u *upstream, m message) []byte {
	tools := gjson.GetBytes(m.raw, "result.tools")
	if !tools.IsArray() || tools.Index == 0 {
		return m.raw
	}
	ctx, cancel := s.settleCtx()
	defer cancel()
	elems, err := s.decorateTools(ctx, u, tools.Array(), false)
	if err != nil {
		s.log.Error("tools/list: allowlist unavailable", "err", err)
		return errorResponse(m.id, codeInternalError, errAllowlistUnavailable)
	}
	return replaceAt(m.raw, tools, joinArray(elems))
}

func joinArray(elems [][]byte) []byte {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// errAllowlistUnavailable answers a list the store could not filter. The
// store's own error is logged, never sent: it can name the database's
// address and user.
const errAllowlistUnavailable = "Caracal could not evaluate the agent's allowlist; the operator has been told"

// decorateTools keeps the tools the agent may call, adds their price and,
// in gateway mode, prefixes their names.
func (s *Session) decorateTools(ctx context.Context, u *upstream, tools []gjson.Result, prefix bool) ([][]byte, error) {
	allowed, err := s.p.opts.Meter.Allowlist(ctx, s.agentID)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(tools))
	var unpriced []string
	metaPath := []string{"_meta", gjsonKey(PriceMetaKey)}
	for _, t := range tools {
		name := t.Get("name").String()
		resource := metering.Resource(u.resName(), name)
		if !t.IsObject() || name == "" || !allowed(resource) {
			continue
		}
		var declared *policy.PriceRule
		if u.spec.Trusted {
			declared = metering.DeclaredPrice(resource, t)
			u.setDeclared(name, declared)
		}
		q, err := s.p.opts.Meter.Quote(ctx, resource, nil, declared)
		if err != nil {
			// The store's error stays in the log: it can name the database.
			s.log.Error("tools/list: pricing a tool failed", "resource", resource, "err", err)
		} else if q.Unpriced {
			unpriced = append(unpriced, name)
		}
		mb, _ := json.Marshal(metering.NewPriceMeta(q, err))
		b, err := setPath([]byte(t.Raw), metaPath, mb)
		if err != nil {
			continue // _meta is not an object: not a valid tool
		}
		if prefix {
			nb, _ := json.Marshal(u.resName() + "__" + name)
			if b, err = setPath(b, []string{"name"}, nb); err != nil {
				continue
			}
		}
		out = append(out, b)
	}
	s.p.noteUnpriced(u.resName(), unpriced)
	return out, nil
}

// learnDeclared reads a trusted upstream's whole tool list once, so that a
// host calling a tool it never listed still pays the declared price.
func (s *Session) learnDeclared(ctx context.Context, u *upstream) {
	u.mu.Lock()
	if u.listed || (!u.listFailedAt.IsZero() && time.Since(u.listFailedAt) < discoverRetry) {
		// A read that failed a moment ago is not repeated on every call.
		u.mu.Unlock()
		return
	}
	if ch := u.listing; ch != nil {
		// Another call is reading the list: wait for it, so that this
		// call is priced from the same declarations.
		u.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	u.listing = ch
	u.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tools, err := s.fetchAll(cctx, u, "tools/list", "tools")
	if err == nil {
		for _, t := range tools {
			name := t.Get("name").String()
			u.setDeclared(name, metering.DeclaredPrice(metering.Resource(u.resName(), name), t))
		}
	} else {
		s.log.Warn("could not read the declared prices of a trusted upstream", "upstream", u.resName(), "err", err)
	}
	u.mu.Lock()
	u.listing = nil
	u.listed = err == nil // a failed read is tried again, a minute later
	if err != nil {
		u.listFailedAt = time.Now()
	}
	u.mu.Unlock()
	close(ch)
}

// upstreamFailed answers a request whose HTTP exchange failed.
func (s *Session) upstreamFailed(u *upstream, id string, err error, unknown bool) {
	s.mu.Lock()
	if w, ok := s.internal[id]; ok && w.up == u {
		delete(s.internal, id)
		s.mu.Unlock()
		close(w.ch)
		return
	}
	p := s.pending[id]
	if p == nil || p.up != u {
		s.mu.Unlock()
		return
	}
	delete(s.pending, id)
	s.stopCall(p)
	s.mu.Unlock()
	s.fail(p, err, unknown)
}

// fail answers a lost request. A tools/call whose outcome is unknown is
// charged as unconfirmed, never silently refunded.
func (s *Session) fail(p *pending, err error, unknown bool) {
	if p.ticket == nil {
		s.reply(errorResponse(p.id, codeInternalError, "upstream server failed before answering: "+err.Error()))
		return
	}
	if !unknown {
		s.release(p, "the upstream refused the request: "+err.Error())
		if !p.cancelled {
			s.reply(toolErrorResult(p.id, "The tool server refused the request, so it was not charged: "+err.Error(), map[string]any{"code": "upstream_error", "reason": err.Error()}))
		}
		return
	}
	s.unconfirmed(p, "upstream lost before answering: "+err.Error())
	if !p.cancelled {
		s.reply(toolErrorResult(p.id, "The tool server stopped before answering. Its outcome is unknown, so the call was charged as unconfirmed: "+err.Error(), map[string]any{"code": "upstream_lost", "reason": err.Error()}))
	}
}

// upstreamDown fails every request in flight on u. Requests not yet sent
// stay pending: forward delivers them once u is back, or releases them if
// it does not come back in time.
func (s *Session) upstreamDown(u *upstream, err error) {
	u.setReady(false)
	s.mu.Lock()
	var lost []*pending
	for id, p := range s.pending {
		if p.up == u && p.sent {
			delete(s.pending, id)
			s.stopCall(p)
			s.markLate(id)
			lost = append(lost, p)
		}
	}
	for id, w := range s.internal {
		if w.up == u {
			delete(s.internal, id)
			close(w.ch)
		}
	}
	for id, sr := range s.serverReqs {
		if sr.up == u {
			delete(s.serverReqs, id)
		}
	}
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.log.Warn("upstream stopped", "upstream", u.resName(), "err", err, "in_flight", len(lost))
	}
	for _, p := range lost {
		s.fail(p, err, true)
	}
}

// reinit repeats the host's initialize handshake with a restarted upstream.
func (s *Session) reinit(u *upstream) {
	defer u.setReady(true)
	s.mu.Lock()
	initReq, initNote := s.initReq, s.initNote
	s.mu.Unlock()
	if initReq == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	params := gjson.GetBytes(initReq, "params").Raw
	if _, err := s.request(ctx, u, "initialize", []byte(params)); err != nil {
		s.log.Error("re-initialising the restarted upstream failed", "upstream", u.resName(), "err", err)
		return
	}
	if initNote == nil {
		initNote = notificationBytes("notifications/initialized", nil)
	}
	if err := u.conn.send(ctx, initNote); err != nil {
		s.log.Error("re-initialising the restarted upstream failed", "upstream", u.resName(), "err", err)
		return
	}
	s.log.Info("upstream restarted and re-initialised", "upstream", u.resName())
}

// request sends a request of the proxy's own and waits for its response.
// It does not wait for the upstream to be ready.
func (s *Session) request(ctx context.Context, u *upstream, method string, params []byte) ([]byte, error) {
	id := `"caracal-` + strconv.FormatUint(s.seq.Add(1), 10) + `"`
	if method != "initialize" {
		// Under 2026-07-28 every request carries the host's envelope; one
		// without it would be refused, or push the upstream into 2025 mode.
		params = withEnvelope(params, s.hostEnvelope())
	}
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.internal[id] = waiter{ch: ch, up: u}
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.internal, id)
		s.mu.Unlock()
	}
	if err := u.conn.send(ctx, requestBytes(id, method, params)); err != nil {
		forget()
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, errUpstreamDown
		}
		if e := gjson.GetBytes(resp, "error"); e.Exists() {
			return nil, fmt.Errorf("%s: upstream error %s: %s", method, e.Get("code").Raw, e.Get("message").String())
		}
		return resp, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}
