// Package llmproxy is Caracal's HTTP mode: a reverse proxy in front of LLM
// APIs (OpenAI-compatible and Anthropic) that authenticates agents by their
// Caracal key, reserves each request's worst-case cost before relaying it,
// injects the provider's key, relays responses and streams as they arrive,
// and settles every call from the usage the provider reports.
//
// See docs/http-proxy.md for the rules it follows.
package llmproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// Engine is what the proxy needs from the enforcement pipeline: the
// metering every front drives, and agent keys. *interpose.Engine satisfies
// it.
type Engine interface {
	interpose.Meter
	interpose.Authenticator
}

// Provider is one upstream LLM API.
type Provider struct {
	// Name is the path prefix (/<name>/…) and the provider part of
	// resources (llm:<name>/<model>).
	Name string
	// Kind is the API dialect; if empty it is anthropic when the name or
	// the base URL's host says so, and openai otherwise.
	Kind    Kind
	BaseURL string
	// APIKey is injected into every relayed request; it is never logged.
	APIKey string
	// Timeout bounds the wait for the provider's response headers; zero
	// means Options.UpstreamTimeout.
	Timeout time.Duration
}

// Options configure a Proxy.
type Options struct {
	Engine    Engine
	Providers []Provider
	Logger    *slog.Logger
	// ModelLimits extend and override DefaultModelLimits, keyed by
	// model-name glob.
	ModelLimits map[string]ModelLimit
	// FallbackLimit applies to models no pattern matches; default
	// 1,000,000 context and 128,000 output tokens.
	FallbackLimit ModelLimit
	// ImageTokens is the input bound charged per image part; default 8,192.
	ImageTokens int64
	// MaxRequestBytes bounds a metered request body; default 32 MiB.
	MaxRequestBytes int64
	// UpstreamTimeout bounds the wait for response headers; default 10 min.
	UpstreamTimeout time.Duration
	// MaxDuration bounds a whole exchange, streams included; default 15 min.
	MaxDuration time.Duration
	// DrainTimeout and DrainBytes bound how long and how much the proxy
	// keeps reading a response whose client went away, to learn its usage;
	// defaults 60 s and 64 MiB.
	DrainTimeout time.Duration
	DrainBytes   int64
	// MaxEventBytes bounds one buffered SSE event; a larger event is relayed
	// unparsed. Default 8 MiB.
	MaxEventBytes int
	// Transport overrides the upstream transport (tests, benchmarks).
	Transport http.RoundTripper
}

// Response headers.
const (
	HeaderDecision  = "Caracal-Decision"
	HeaderRemaining = "Caracal-Remaining"
	HeaderRequestID = "Caracal-Request-Id"
)

// Proxy is an http.Handler serving /<provider>/… for every provider.
type Proxy struct {
	opts      Options
	log       *slog.Logger
	providers map[string]*provider
	limits    *limitTable
	// drains tracks responses still being read after their client left.
	drains sync.WaitGroup
	// aborting ends when Abort is called; every upstream exchange ends
	// with it.
	aborting context.Context
	abort    context.CancelFunc
}

type provider struct {
	Provider
	target *url.URL
	rp     *httputil.ReverseProxy
	// keyForms are the spellings of APIKey scrubbed from responses.
	keyForms []string
}

// New returns a Proxy.
func New(o Options) (*Proxy, error) {
	if o.Engine == nil {
		return nil, errors.New("llmproxy: no engine")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FallbackLimit == (ModelLimit{}) {
		o.FallbackLimit = defaultFallbackLimit
	}
	setDefault(&o.ImageTokens, 8192)
	setDefault(&o.MaxRequestBytes, 32<<20)
	setDefault(&o.UpstreamTimeout, 10*time.Minute)
	setDefault(&o.MaxDuration, 15*time.Minute)
	setDefault(&o.DrainTimeout, 60*time.Second)
	setDefault(&o.DrainBytes, 64<<20)
	setDefault(&o.MaxEventBytes, 8<<20)
	p := &Proxy{
		opts:      o,
		log:       o.Logger,
		providers: map[string]*provider{},
		limits:    newLimitTable(DefaultModelLimits(), o.ModelLimits, o.FallbackLimit),
	}
	p.aborting, p.abort = context.WithCancel(context.Background())
	for _, cfg := range o.Providers {
		if cfg.Name == "" || strings.Contains(cfg.Name, "/") {
			return nil, fmt.Errorf("llmproxy: invalid provider name %q", cfg.Name)
		}
		if _, dup := p.providers[cfg.Name]; dup {
			return nil, fmt.Errorf("llmproxy: duplicate provider %q", cfg.Name)
		}
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("llmproxy: provider %s: invalid base URL %q", cfg.Name, cfg.BaseURL)
		}
		if cfg.Kind == "" {
			cfg.Kind = KindOpenAI
			if strings.Contains(cfg.Name, "anthropic") || strings.HasSuffix(u.Hostname(), "anthropic.com") {
				cfg.Kind = KindAnthropic
			}
		}
		if cfg.Kind != KindOpenAI && cfg.Kind != KindAnthropic {
			return nil, fmt.Errorf("llmproxy: provider %s: unknown kind %q (want openai or anthropic)", cfg.Name, cfg.Kind)
		}
		setDefault(&cfg.Timeout, o.UpstreamTimeout)
		pv := &provider{Provider: cfg, target: u, keyForms: keyForms(cfg.APIKey)}
		tr := o.Transport
		if tr == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.ResponseHeaderTimeout = cfg.Timeout
			t.MaxIdleConnsPerHost = 256
			t.MaxIdleConns = 1024
			tr = t
		}
		pv.rp = &httputil.ReverseProxy{
			Rewrite:        p.rewrite,
			Transport:      scrub1xx{next: tr, forms: pv.keyForms},
			FlushInterval:  -1,
			ModifyResponse: p.modifyResponse,
			ErrorHandler:   p.upstreamError,
			BufferPool:     copyBuffers{},
			ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		}
		p.providers[cfg.Name] = pv
	}
	return p, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Abort ends every upstream exchange still running, streams included, and
// any started later: a shutdown that cannot wait any longer. Each call
// settles the way a cut exchange does — unconfirmed once the request was
// relayed, released if it never was — and its handler returns.
func (p *Proxy) Abort() { p.abort() }

// Wait blocks until every response still being read after its client left
// has been settled, or ctx ends.
func (p *Proxy) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.drains.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type callKey struct{}

// call is one admitted request on its way through the proxy.
type call struct {
	p      *Proxy
	prov   *provider
	ep     endpoint
	req    llmRequest
	rest   string // path after /<provider>
	body   []byte // metered request body as sent upstream; nil: stream the client's
	ticket *interpose.Ticket
	upCtx  context.Context
	cancel context.CancelFunc
	// stopWatch stops the client-gone watcher.
	stopWatch func() bool
	wrote     atomic.Bool
	finished  atomic.Bool
	status    int
}

// ServeHTTP serves /<provider>/…, and /healthz for liveness checks.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
		return
	}
	name, rest := splitProvider(r.URL.Path)
	prov := p.providers[name]
	if prov == nil {
		known := make([]string, 0, len(p.providers))
		for n := range p.providers {
			known = append(known, "/"+n+"/")
		}
		slices.Sort(known)
		writeError(w, KindOpenAI, http.StatusNotFound, "", fmt.Sprintf("unknown provider path %q: this proxy serves %s", r.URL.Path, strings.Join(known, ", ")))
		return
	}
	kind := prov.Kind
	key := credential(r)
	if key == "" {
		writeError(w, kind, http.StatusUnauthorized, "invalid_api_key", "missing Caracal agent key: send it where the SDK sends its API key (Authorization: Bearer crk_… or x-api-key: crk_…)")
		return
	}
	ctx := r.Context()
	agent, err := p.opts.Engine.Authenticate(ctx, key)
	switch {
	case errors.Is(err, interpose.ErrAgentSuspended):
		w.Header().Set(HeaderDecision, string(policy.CodeAgentSuspended))
		writeError(w, kind, http.StatusForbidden, string(policy.CodeAgentSuspended), "Caracal refused this request: "+err.Error())
		return
	case errors.Is(err, interpose.ErrUnknownKey), errors.Is(err, interpose.ErrKeyRevoked), errors.Is(err, interpose.ErrKeyExpired):
		writeError(w, kind, http.StatusUnauthorized, "invalid_api_key", "Caracal agent key refused: "+err.Error())
		return
	case err != nil:
		// Anything else is the store failing: fail closed, and say so.
		p.log.Error("authenticate", "err", err)
		w.Header().Set(HeaderDecision, string(policy.CodeUnavailable))
		writeError(w, kind, http.StatusServiceUnavailable, string(policy.CodeUnavailable), "Caracal cannot check the agent key right now; the request was not relayed")
		return
	}
	if !cleanPath(rest) {
		// "/v1/chat/completions/x/.." is classified by its last segments
		// but names chat/completions to any server that resolves dot
		// segments: a metered call must not pass as a flat-priced route.
		writeError(w, kind, http.StatusBadRequest, "invalid_path", fmt.Sprintf("request path %q has empty, \".\" or \"..\" segments; send the canonical path", r.URL.Path))
		return
	}
	c := &call{p: p, prov: prov, rest: rest, ep: classify(kind, r.Method, rest)}
	reqID := uuid.NewString()
	bc := interpose.Call{AgentID: agent.ID, Upstream: prov.Name, Operation: c.ep.operation(), RequestID: reqID}
	if c.ep == epOther {
		route := strings.TrimPrefix(rest, "/")
		bc.Resource = "http:" + prov.Name + "/" + route
	} else if !p.prepareLLM(w, r, c, &bc) {
		return
	}
	t, d := p.opts.Engine.Begin(ctx, bc)
	if t == nil {
		p.refuse(w, kind, d)
		return
	}
	c.ticket = t
	if c.ep != epOther && c.req.stream && (c.ep == epChat || c.ep == epCompletions) && !c.req.wantsUsage {
		c.body = injectIncludeUsage(c.body)
	}

	// The upstream exchange is detached from the client's context so that
	// a client that leaves does not stop the proxy from learning the usage;
	// it is bounded by MaxDuration, and by DrainTimeout once the client is
	// gone.
	base := context.WithValue(context.WithoutCancel(ctx), callKey{}, c)
	base = httptrace.WithClientTrace(base, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { c.wrote.Store(true) },
	})
	c.upCtx, c.cancel = context.WithTimeout(base, p.opts.MaxDuration)
	watch := context.AfterFunc(ctx, func() {
		time.AfterFunc(p.opts.DrainTimeout, c.cancel)
	})
	stopAbort := context.AfterFunc(p.aborting, c.cancel)
	c.stopWatch = func() bool { stopAbort(); return watch() }
	prov.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, callKey{}, c)))
}

// prepareLLM reads and prices a metered request; it answers the client
// itself and returns false when the request cannot go on.
func (p *Proxy) prepareLLM(w http.ResponseWriter, r *http.Request, c *call, bc *interpose.Call) bool {
	kind := c.prov.Kind
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.opts.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, kind, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body exceeds %d bytes", p.opts.MaxRequestBytes))
			return false
		}
		if cutOff(w, kind, err) {
			return false
		}
		writeError(w, kind, http.StatusBadRequest, "", "cannot read request body: "+err.Error())
		return false
	}
	if err := jsoncheck.Check(body, true); err != nil {
		// The body is relayed as sent, and the provider's decoder takes the
		// last of a repeated "model" or "max_tokens" where gjson takes the
		// first: refuse what could be priced as one call and run as another.
		writeError(w, kind, http.StatusBadRequest, "invalid_json", "request body refused: "+err.Error())
		return false
	}
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		writeError(w, kind, http.StatusBadRequest, "invalid_json", "request body is not a JSON object")
		return false
	}
	c.body = body
	c.req = parseRequest(c.ep, body)
	if c.req.model == "" || strings.ContainsAny(c.req.model, "*") {
		writeError(w, kind, http.StatusBadRequest, "invalid_model", "request body has no valid \"model\"")
		return false
	}
	bc.Resource = "llm:" + c.prov.Name + "/" + c.req.model
	q, err := p.opts.Engine.Quote(r.Context(), bc.Resource, nil, nil)
	if err != nil {
		p.refuse(w, kind, policy.Decision{Code: policy.CodeUnavailable, Reason: "cannot price " + bc.Resource + ": " + err.Error()})
		return false
	}
	if q.Rule == nil {
		// Unpriced: the engine charges the default price or, in strict
		// mode, refuses.
		return true
	}
	limit := p.limits.lookup(c.req.model)
	in := estimateInput(body, limit, p.opts.ImageTokens)
	out := c.req.maxOutput
	if out == 0 {
		out = limit.Output
	}
	if c.ep == epEmbeddings {
		out = 0
	}
	if c.req.choices > 1 {
		if out > math.MaxInt64/c.req.choices {
			writeError(w, kind, http.StatusBadRequest, "", fmt.Sprintf("cannot bound the cost of this request: %d choices of %d output tokens each is out of range", c.req.choices, out))
			return false
		}
		out *= c.req.choices
	}
	worst, err := worstCase(*q.Rule, in, out)
	if err != nil {
		writeError(w, kind, http.StatusBadRequest, "", "cannot bound the cost of this request: "+err.Error())
		return false
	}
	bc.Reserve = &worst
	bc.WorstCase = explainWorstCase(*q.Rule, c.ep, in, out, c.req.maxOutput > 0)
	return true
}

// cleanPath reports whether p, a path after the provider prefix, has no
// empty, "." or ".." segments (one trailing slash is allowed).
func cleanPath(p string) bool {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return true
	}
	return path.Clean(p) == p
}

func splitProvider(path string) (name, rest string) {
	path = strings.TrimPrefix(path, "/")
	name, rest, _ = strings.Cut(path, "/")
	return name, "/" + rest
}

func credential(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("X-Api-Key")); k != "" {
		return k
	}
	k, _ := interpose.BearerToken(r.Header.Get("Authorization"))
	return k
}

// credentialHeaders are removed from every relayed request: the agent's
// key must never reach the provider.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Api-Key", "Proxy-Authorization", "Cookie"}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	out := pr.Out.WithContext(c.upCtx)
	t := c.prov.target
	out.URL.Scheme, out.URL.Host = t.Scheme, t.Host
	out.URL.Path = strings.TrimRight(t.Path, "/") + c.rest
	out.URL.RawPath = ""
	out.Host = ""
	h := out.Header
	for _, k := range credentialHeaders {
		h.Del(k)
	}
	// The transport then asks for gzip itself and decompresses, so the
	// proxy can read usage from the body.
	h.Del("Accept-Encoding")
	if c.prov.Kind == KindAnthropic {
		h.Set("X-Api-Key", c.prov.APIKey)
	} else {
		h.Set("Authorization", "Bearer "+c.prov.APIKey)
	}
	if c.body != nil {
		body := c.body
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		h.Del("Content-Length")
	}
	pr.Out = out
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	c := resp.Request.Context().Value(callKey{}).(*call)
	c.status = resp.StatusCode
	scrubResponse(resp, c.prov.keyForms)
	c.decisionHeaders(resp.Header)
	if c.ep == epOther {
		// Priced per request: the request ran unless the provider refused.
		if resp.StatusCode < 400 {
			c.settle(nil)
		} else {
			c.release(fmt.Sprintf("upstream status %d", resp.StatusCode))
		}
		resp.Body = &closeBody{ReadCloser: resp.Body, c: c}
		return nil
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 300 && ct == "text/event-stream" {
		st := streamState{kind: c.prov.Kind, ep: c.ep}
		st.stripUsage = c.req.stream && (c.ep == epChat || c.ep == epCompletions) && !c.req.wantsUsage
		if st.stripUsage {
			resp.Header.Del("Content-Length")
			resp.ContentLength = -1
		}
		resp.Body = &sseBody{src: resp.Body, c: c, st: st, max: c.p.opts.MaxEventBytes}
		return nil
	}
	resp.Body = &jsonBody{src: resp.Body, c: c, scan: newFieldScanner("usage", 1<<16)}
	return nil
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	c := r.Context().Value(callKey{}).(*call)
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	var slow *httpserver.BodyTimeoutError
	switch {
	case errors.As(err, &slow):
		// The client's body, streamed to the provider as it came, was cut
		// off: the provider never received a whole request to run.
		c.release("request body cut off by the read timeout: " + err.Error())
	case c.wrote.Load():
		// The provider may have run the request: never refund silently.
		c.unconfirmed("upstream failed after the request was sent: " + err.Error())
	default:
		c.release("upstream unreachable: " + err.Error())
	}
	c.done()
	c.decisionHeaders(w.Header())
	if cutOff(w, c.prov.Kind, err) {
		return
	}
	if timeout {
		writeError(w, c.prov.Kind, http.StatusGatewayTimeout, "upstream_timeout", fmt.Sprintf("provider %s did not answer in time", c.prov.Name))
		return
	}
	p.log.Warn("upstream error", "provider", c.prov.Name, "request_id", c.ticket.RequestID, "err", err)
	writeError(w, c.prov.Kind, http.StatusBadGateway, "upstream_unreachable", fmt.Sprintf("provider %s could not be reached", c.prov.Name))
}

// cutOff answers 408 when err is the listener's read timeout cutting a
// trickling request body off (see internal/httpserver).
func cutOff(w http.ResponseWriter, k Kind, err error) bool {
	var slow *httpserver.BodyTimeoutError
	if !errors.As(err, &slow) {
		return false
	}
	writeError(w, k, http.StatusRequestTimeout, "request_timeout", slow.Error())
	return true
}

func (c *call) decisionHeaders(h http.Header) {
	h.Set(HeaderRequestID, c.ticket.RequestID)
	h.Set(HeaderDecision, string(policy.CodeAllowed))
	if rem, ok := minRemaining(c.ticket.Decision); ok {
		h.Set(HeaderRemaining, rem)
	}
}

// minRemaining is the binding budget: the least any policy has left.
func minRemaining(d policy.Decision) (string, bool) {
	if len(d.Remaining) == 0 {
		return "", false
	}
	m := d.Remaining[0]
	for _, r := range d.Remaining[1:] {
		if r.Remaining < m.Remaining {
			m = r
		}
	}
	return m.Remaining.String() + " " + m.Currency, true
}

func (p *Proxy) refuse(w http.ResponseWriter, k Kind, d policy.Decision) {
	status := http.StatusPaymentRequired
	if d.Code == policy.CodeUnavailable {
		status = http.StatusServiceUnavailable
	} else {
		// A refusal is final until the budget changes: SDKs must not retry.
		w.Header().Set("X-Should-Retry", "false")
	}
	w.Header().Set(HeaderDecision, string(d.Code))
	if rem, ok := minRemaining(d); ok {
		w.Header().Set(HeaderRemaining, rem)
	}
	reason := d.Reason
	if reason == "" {
		reason = string(d.Code)
	}
	writeErrorCode(w, k, status, d.Code, string(d.Code), "Caracal refused this request ("+string(d.Code)+"): "+reason)
}

func writeError(w http.ResponseWriter, k Kind, status int, code, msg string) {
	writeErrorCode(w, k, status, "", code, msg)
}

func writeErrorCode(w http.ResponseWriter, k Kind, status int, pc policy.Code, code, msg string) {
	b := errorBody(k, status, errorType(k, status, pc), code, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// settleCtx returns the context settlement runs in, detached from the
// client: the outcome must be recorded even when the client has gone.
func (c *call) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.upCtx), 30*time.Second)
}

// settle charges the call from reported usage (nil: the quoted price).
func (c *call) settle(t *policy.Tokens) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	r := interpose.Result{Tokens: t}
	switch rule := c.ticket.Quote.Rule; {
	case rule == nil || t == nil:
		// Unpriced or per-request: the quoted price, stated explicitly.
		price := c.ticket.Quote.Price
		r.Amount = &price
	default:
		if amount, err := policy.Cost(*rule, nil, billable(*rule, *t)); err == nil {
			r.Amount = &amount
		}
	}
	if _, err := c.p.opts.Engine.Settle(ctx, c.ticket, r); err != nil {
		c.p.log.Error("settle", "request_id", c.ticket.RequestID, "err", err)
	}
}

func (c *call) release(reason string) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	if _, err := c.p.opts.Engine.Release(ctx, c.ticket, reason); err != nil {
		c.p.log.Error("release", "request_id", c.ticket.RequestID, "err", err)
	}
}

func (c *call) unconfirmed(reason string) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	c.p.log.Warn("charged unconfirmed", "request_id", c.ticket.RequestID, "reason", reason)
	if _, err := c.p.opts.Engine.Unconfirmed(ctx, c.ticket, reason); err != nil {
		c.p.log.Error("unconfirmed", "request_id", c.ticket.RequestID, "err", err)
	}
}

// done releases the exchange's resources once the response is finished.
func (c *call) done() {
	c.stopWatch()
	c.cancel()
}

// closeBody ends the exchange when a passed-through body is closed.
type closeBody struct {
	io.ReadCloser
	c *call
}

func (b *closeBody) Close() error {
	err := b.ReadCloser.Close()
	b.c.done()
	return err
}

// bufPool recycles the 32 KiB buffers responses are copied and read
// through, so a busy proxy does not allocate two per request.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type copyBuffers struct{}

func (copyBuffers) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { bufPool.Put(&b) }
