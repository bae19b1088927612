package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/tidwall/gjson"
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

// IsLoopback reports whether a listen address (host:port) binds only to
// the loopback interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return IsLoopback(host)
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

// Close ends every session, each waiting for its calls in flight up to
// the drain timeout.
func (f *HTTPFront) Close() error { return f.closeSessions(f.p.opts.DrainTimeout) }

// Drain ends every GET stream, which would otherwise hold a graceful
// shutdown until its deadline: the host reconnects elsewhere. POST
// streams, which carry calls in flight, go on.
func (f *HTTPFront) Drain() { f.drainOnce.Do(func() { close(f.draining) }) }

// Abort ends every session at once: calls in flight are settled as
// unconfirmed if they reached their upstream and released if they never
// did, and the POSTs waiting for them are answered.
func (f *HTTPFront) Abort() { _ = f.closeSessions(0) }

func (f *HTTPFront) closeSessions(drain time.Duration) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.stop)
	ss := make([]*httpSession, 0, len(f.sessions))
	for _, s := range f.sessions {
		ss = append(ss, s)
	}
	f.sessions = map[string]*httpSession{}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() { defer wg.Done(); s.closeAfter(drain) }()
	}
	wg.Wait()
	return nil
}

func (f *HTTPFront) janitor() {
	t := time.NewTicker(janitorInterval(f.o.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		f.mu.Lock()
		var idle []*httpSession
		for id, s := range f.sessions {
			if now.Sub(s.used()) > f.o.IdleTimeout {
				delete(f.sessions, id)
				idle = append(idle, s)
			}
		}
		f.mu.Unlock()
		for _, s := range idle {
			go s.close()
		}
	}
}

// httpSession routes a Session's messages to the host's HTTP streams:
// a response to the POST stream that carried its request; anything else
// to the oldest open POST stream, else the GET stream, else a backlog the
// next GET stream receives.
type httpSession struct {
	id      string
	agentID string
	s       *Session

	mu       sync.Mutex
	waiters  map[string]*stream
	posts    []*stream
	get      *stream
	backlog  [][]byte
	lastUsed time.Time
	seq      uint64            // 2026: the last id given to a host request
	byHost   map[string]string // 2026: host request id → the id relayed
}

type stream struct {
	ch   chan []byte
	left int // responses still owed on a POST stream; guarded by httpSession.mu
	// ids maps the ids relayed for a 2026 POST back to the host's own.
	ids map[string]string
}

// used is when the session was last used; a session with an open stream
// is in use now.
func (h *httpSession) used() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.get != nil || len(h.posts) > 0 {
		return time.Now()
	}
	return h.lastUsed
}

func (h *httpSession) touch() {
	h.mu.Lock()
	h.lastUsed = time.Now()
	h.mu.Unlock()
}

func (h *httpSession) close() {
	if h.s != nil {
		_ = h.s.Close()
	}
}

func (h *httpSession) closeAfter(drain time.Duration) {
	if h.s != nil {
		_ = h.s.closeAfter(drain)
	}
}

func (h *httpSession) toHost(msg []byte) error {
	m, _ := parseMessage(msg)
	h.mu.Lock()
	var st *stream
	if m.kind == kindResponse {
		st = h.waiters[m.id]
		delete(h.waiters, m.id)
		msg = st.hostID(msg, m.id)
		if st != nil && st != h.get {
			// A stream that owes nothing more takes no new messages: its
			// reader is about to stop reading.
			if st.left--; st.left == 0 {
				h.dropPost(st)
			}
		}
	} else if len(h.posts) > 0 {
		st = h.posts[0]
	} else if h.get != nil {
		st = h.get
	} else {
		if len(h.backlog) < 1024 {
			h.backlog = append(h.backlog, msg)
		}
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	if st == nil {
		return nil // the host went away; the response's settlement is already done
	}
	select {
	case st.ch <- msg:
	case <-time.After(30 * time.Second):
		return errors.New("host stream is not reading")
	}
	return nil
}

func (h *httpSession) dropPost(st *stream) {
	for i, p := range h.posts {
		if p == st {
			h.posts = append(h.posts[:i], h.posts[i+1:]...)
			return
		}
	}
}

// openPost opens the stream for a POST's responses and claims its
// requests' ids. It returns the messages to handle and the refusals of
// requests whose id is already awaited in this session.
func (h *httpSession) openPost(msgs []message) (st *stream, kept []message, refused [][]byte) {
	st = &stream{ch: make(chan []byte, 256)}
	if h == nil {
		return st, msgs, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		if m.kind == kindRequest {
			if _, busy := h.waiters[m.id]; busy {
				refused = append(refused, errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
				continue
			}
			h.waiters[m.id] = st
			st.left++
		}
		kept = append(kept, m)
	}
	if st.left > 0 {
		h.posts = append(h.posts, st)
	}
	return st, kept, refused
}

func (h *httpSession) closePost(st *stream, ids []string) {
	h.mu.Lock()
	for _, id := range ids {
		if h.waiters[id] == st {
			delete(h.waiters, id)
		}
	}
	h.dropPost(st)
	h.mu.Unlock()
}

func jsonError(w http.ResponseWriter, status int, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorResponse("", code, msg))
}

// checkOrigin guards against DNS rebinding: a browser page on another site
// must not reach a local server through a name that resolves to it.
func (f *HTTPFront) checkOrigin(r *http.Request) error {
	host := r.Host
	ok := false
	for _, h := range f.o.AllowedHosts {
		if strings.EqualFold(h, host) || strings.EqualFold(h, hostOnly(host)) {
			ok = true
		}
	}
	if !ok {
		if IsLoopback(f.o.ListenAddr) {
			ok = isLoopbackHost(host)
		} else {
			ok = true // reached over the network: the key is the guard
		}
	}
	if !ok {
		return fmt.Errorf("host %q is not allowed", host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	for _, o := range f.o.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return nil
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not allowed", origin)
	}
	if isLoopbackHost(u.Host) && isLoopbackHost(host) {
		return nil
	}
	if strings.EqualFold(u.Host, host) {
		return nil
	}
	return fmt.Errorf("origin %q is not allowed", origin)
}

func hostOnly(h string) string {
	if x, _, err := net.SplitHostPort(h); err == nil {
		return x
	}
	return h
}

// errStoreUnavailable is why a request got 503: the key could not be checked.
var errStoreUnavailable = errors.New("the agent key cannot be checked right now; the request was not relayed")

// agent returns the agent a request acts for, or the HTTP status and error
// to refuse it with.
func (f *HTTPFront) agent(r *http.Request) (string, int, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if f.o.DefaultAgentID != "" {
			return f.o.DefaultAgentID, 0, nil
		}
		return "", http.StatusUnauthorized, errors.New("missing Authorization: Bearer <agent key>")
	}
	key, ok := interpose.BearerToken(auth)
	if !ok {
		return "", http.StatusUnauthorized, errors.New("the Authorization header must be Bearer <agent key>")
	}
	if f.o.Auth == nil {
		return "", http.StatusUnauthorized, errors.New("agent keys are not accepted here")
	}
	a, err := f.o.Auth.Authenticate(r.Context(), key)
	switch {
	case err == nil:
		return a.ID, 0, nil
	case errors.Is(err, interpose.ErrUnknownKey), errors.Is(err, interpose.ErrKeyRevoked),
		errors.Is(err, interpose.ErrKeyExpired), errors.Is(err, interpose.ErrAgentSuspended):
		return "", http.StatusUnauthorized, err
	}
	// Anything else is the store failing. Its error can name the
	// database's address and user: it goes to the log, not the client.
	f.p.log.Error("HTTP front: authenticating an agent key failed", "err", err)
	return "", http.StatusServiceUnavailable, errStoreUnavailable
}

func (f *HTTPFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f.checkOrigin(r); err != nil {
		jsonError(w, http.StatusForbidden, codeInvalidRequest, "Forbidden: "+err.Error())
		return
	}
	agentID, status, err := f.agent(r)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
		jsonError(w, status, codeInternalError, "Service Unavailable: "+err.Error())
		return
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="caracal"`)
		jsonError(w, http.StatusUnauthorized, codeInvalidRequest, "Unauthorized: "+err.Error())
		return
	}
	switch r.Method {
	case http.MethodPost:
		f.post(w, r, agentID)
	case http.MethodGet:
		f.getStream(w, r, agentID)
	case http.MethodDelete:
		h, ok := f.session(w, r, agentID)
		if !ok {
			return
		}
		f.mu.Lock()
		delete(f.sessions, h.id)
		f.mu.Unlock()
		h.close()
		w.WriteHeader(http.StatusOK)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		jsonError(w, http.StatusMethodNotAllowed, codeInvalidRequest, "Method not allowed")
	}
}

// session finds the request's session; it writes the error response if
// there is none.
func (f *HTTPFront) session(w http.ResponseWriter, r *http.Request, agentID string) (*httpSession, bool) {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		jsonError(w, http.StatusBadRequest, codeInvalidRequest, "Bad Request: missing Mcp-Session-Id header")
		return nil, false
	}
	f.mu.Lock()
	h := f.sessions[id]
	f.mu.Unlock()
	if h == nil {
		jsonError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return nil, false
	}
	if h.agentID != agentID {
		jsonError(w, http.StatusForbidden, codeInvalidRequest, "Forbidden: the session belongs to another agent")
		return nil, false
	}
	h.touch()
	return h, true
}

func (f *HTTPFront) post(w http.ResponseWriter, r *http.Request, agentID string) {
	max := f.p.opts.MaxMessageSize
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		jsonError(w, http.StatusBadRequest, codeParseError, "Parse error: "+err.Error())
		return
	}
	if int64(len(body)) > max {
		e := &TooLargeError{Size: int64(len(body)), Max: max}
		jsonError(w, http.StatusRequestEntityTooLarge, codeInvalidRequest, e.Error())
		return
	}
	if err := jsoncheck.Check(body, true); err != nil {
		id, code, msg := rejectJSON(body, err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(errorResponse(id, code, msg))
		return
	}
	if !gjson.ValidBytes(body) {
		jsonError(w, http.StatusBadRequest, codeParseError, "Parse error: the body is not valid JSON")
		return
	}
	batch := firstNonSpace(body) == '['
	// Messages the session would refuse are answered here, in this POST's
	// response: the session's answers to them (id null) would have no
	// stream to go to.
	var raws [][]byte
	var refused [][]byte
	switch firstNonSpace(body) {
	case '[':
		arr := gjson.ParseBytes(body).Array()
		if len(arr) == 0 {
			refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: empty batch"))
		}
		for _, e := range arr {
			if !e.IsObject() {
				refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: batch element is not an object"))
				continue
			}
			raws = append(raws, []byte(e.Raw))
		}
	case '{':
		raws = append(raws, body)
	default:
		refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: not a JSON-RPC message"))
	}
	var msgs []message
	for _, raw := range raws {
		m, ok := parseMessage(raw)
		if r := checkHostMessage(m, ok); r != nil {
			f.p.log.Warn("HTTP front: refused a message from the host", "method", m.method, "reason", r.reason)
			refused = append(refused, r.resp)
			continue
		}
		msgs = append(msgs, m)
	}
	initialize := false
	for _, m := range msgs {
		if m.kind == kindRequest && m.method == "initialize" {
			initialize = true
		}
	}
	var h *httpSession
	var remap map[string]string // 2026: relayed id → the host's
	if !initialize && isModernPost(r, msgs) {
		var ok bool
		if h, ok = f.agentSession(w, r, agentID); !ok {
			return
		}
		msgs, remap = h.remapIDs(msgs)
	} else if initialize {
		if r.Header.Get("Mcp-Session-Id") != "" {
			jsonError(w, http.StatusBadRequest, codeInvalidRequest, "Bad Request: initialize inside an existing session")
			return
		}
		if !f.admit(w) {
			return
		}
		defer f.admitted()
		h = &httpSession{agentID: agentID, waiters: map[string]*stream{}, lastUsed: time.Now()}
		s, err := f.p.NewSession(r.Context(), agentID, h.toHost)
		if err != nil {
			jsonError(w, http.StatusBadGateway, codeInternalError, "Caracal could not start the upstream: "+err.Error())
			return
		}
		h.s = s
	} else if len(msgs) > 0 {
		var ok bool
		if h, ok = f.session(w, r, agentID); !ok {
			return
		}
	}
	// Claim this POST's request ids: a request whose id another POST of
	// the session still waits for is refused here, so the first POST
	// still gets its own response.
	st, msgs, dups := h.openPost(msgs)
	h.setRemap(st, remap)
	refused = append(refused, dups...)
	var ids, calls []string
	kept := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		kept = append(kept, m.raw)
		if m.kind == kindRequest {
			ids = append(ids, m.id)
			if m.method == "tools/call" {
				calls = append(calls, m.id)
			}
		}
	}
	if batch {
		body = joinArray(kept)
	} else if len(kept) == 1 {
		body = kept[0]
	}
	if len(ids) == 0 {
		if len(kept) > 0 {
			h.s.HandleHost(context.WithoutCancel(r.Context()), body)
		}
		if len(refused) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		if batch {
			_, _ = w.Write(joinArray(refused))
		} else {
			_, _ = w.Write(refused[0])
		}
		return
	}
	defer h.closePost(st, ids)
	// A cancellation on another POST may overtake this one's admission.
	h.s.expectCalls(calls...)
	// The call must not be cut short if the host hangs up: its outcome
	// still has to be learned and settled.
	go h.s.HandleHost(context.WithoutCancel(r.Context()), body)
	if initialize {
		f.answerInitialize(w, r, h, st, ids[0])
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		streamResponses(w, r, h, st, hostIDs(ids, remap), refused)
		return
	}
	jsonResponses(w, r, h, st, hostIDs(ids, remap), batch, refused)
}

// answerInitialize waits for the initialize response, names the session
// (the HTTP upstream's own session id when there is one) and answers.
func (f *HTTPFront) answerInitialize(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, id string) {
	var resp []byte
	for resp == nil {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse && m.id == id {
				resp = msg
			}
		case <-r.Context().Done():
			h.close()
			return
		}
	}
	if gjson.GetBytes(resp, "error").Exists() {
		h.close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(resp)
		return
	}
	sid := h.s.upstreamSessionID()
	f.mu.Lock()
	if sid == "" || f.sessions[sid] != nil {
		sid = newSessionID()
	}
	h.id = sid
	f.sessions[sid] = h
	f.mu.Unlock()
	w.Header().Set("Mcp-Session-Id", sid)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(resp)
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func streamResponses(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, ids []string, refused [][]byte) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for _, msg := range refused {
		if err := writeSSE(w, "", msg); err != nil {
			return
		}
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	for len(left) > 0 {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse {
				delete(left, m.id)
			}
			if err := writeSSE(w, "", msg); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

func jsonResponses(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, ids []string, batch bool, refused [][]byte) {
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	out := refused
	for len(left) > 0 {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse && left[m.id] {
				delete(left, m.id)
				out = append(out, msg)
				continue
			}
			// Requests and notifications have no place in a JSON reply;
			// hand them to the GET stream.
			h.mu.Lock()
			if len(h.backlog) < 1024 {
				h.backlog = append(h.backlog, msg)
			}
			h.mu.Unlock()
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if batch {
		_, _ = w.Write(joinArray(out))
		return
	}
	_, _ = w.Write(out[0])
}

func (f *HTTPFront) getStream(w http.ResponseWriter, r *http.Request, agentID string) {
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		jsonError(w, http.StatusNotAcceptable, codeInvalidRequest, "Not Acceptable: the GET stream needs Accept: text/event-stream")
		return
	}
	h, ok := f.session(w, r, agentID)
	if !ok {
		return
	}
	st := &stream{ch: make(chan []byte, 256)}
	h.mu.Lock()
	if h.get != nil {
		h.mu.Unlock()
		jsonError(w, http.StatusConflict, codeInvalidRequest, "Conflict: a GET stream is already open for this session")
		return
	}
	h.get = st
	backlog := h.backlog
	h.backlog = nil
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.get == st {
			h.get = nil
		}
		h.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	for _, msg := range backlog {
		_ = writeSSE(w, "", msg)
	}
	if fl != nil {
		fl.Flush()
	}
	ping := time.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		select {
		case msg := <-st.ch:
			if err := writeSSE(w, "", msg); err != nil {
				return
			}
		case <-ping.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-f.draining:
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// upstreamSessionID is the single HTTP upstream's session id, if any.
func (s *Session) upstreamSessionID() string {
	if len(s.ups) != 1 {
		return ""
	}
	if c, ok := s.ups[0].conn.(*httpConn); ok {
		return c.SessionID()
	}
	return ""
}
