// Package llmproxy is Caracal's HTTP mode: a reverse proxy in front of LLM
// APIs (OpenAI-compatible and Anthropic) that authenticates agents by their
// Caracal key, reserves each request's worst-case cost before relaying it,
// injects the provider's key, relays responses and streams as they arrive,
// and settles every call from the usage the provider reports.
//
// See docs/http-proxy.md for the rules it follows.
package llmproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
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

	"github.com/tidwall/gjson"

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
	reqID := interpose.NewRequestID()
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
		// The error can carry the store's text: it goes to the log only.
		p.log.Error("pricing failed; request refused", "resource", bc.Resource, "err", err)
		p.refuse(w, kind, policy.Decision{Code: policy.CodeUnavailable, Reason: "cannot price the call"})
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
	rule, ep, capped := *q.Rule, c.ep, c.req.maxOutput > 0
	bc.WorstCase = func() interpose.WorstCase { return explainWorstCase(rule, ep, in, out, capped) }
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
