// Package dashboard is the web dashboard of `caracal serve`: a single page
// of hand-written HTML, CSS and JavaScript modules embedded in the binary,
// its sign-in sessions, and the server-sent event stream of new ledger
// events. It wraps the API handler: a request under /v1 that carries the
// dashboard's session cookie instead of a bearer token is passed to the
// API with the session's admin token, once the session, the request's
// origin and (for a change) its CSRF token are checked. The API itself
// then applies every rule, a read-only token's included.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

//go:embed assets
var assets embed.FS

// Identity is who an admin token belongs to.
type Identity struct {
	Name     string `json:"name"`
	ReadOnly bool   `json:"read_only"`
}

// ErrBadToken is what a TokenChecker returns for a token that is unknown,
// revoked or malformed.
var ErrBadToken = errors.New("invalid admin token")

// TokenChecker resolves an admin token (cra_…) at sign-in.
type TokenChecker interface {
	CheckAdminToken(ctx context.Context, token string) (Identity, error)
}

// EventReader is the store read the live ledger stream polls: the same
// read by sequence number as `caracal ledger tail -f`.
type EventReader interface {
	TreeSize(ctx context.Context) (int64, error)
	QueryEvents(ctx context.Context, f ledger.EventFilter, fn func(ledger.Event) error) error
}

// Options configure the dashboard.
type Options struct {
	// API serves /v1; the dashboard passes it session requests with the
	// session's bearer token.
	API    http.Handler
	Tokens TokenChecker
	Events EventReader
	Logger *slog.Logger
	// SessionTTL is how long a session lasts after sign-in; 12 hours if zero.
	SessionTTL time.Duration
	// Poll is how often the live stream reads the store; 250 ms if zero.
	Poll time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Stop, when closed, ends every live stream: the server is shutting
	// down, and an open stream would otherwise hold the shutdown up until
	// its timeout.
	Stop <-chan struct{}
}

// Handler is the dashboard and the API behind it.
type Handler struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
	static   http.Handler
	mux      *http.ServeMux
}

// New returns the dashboard handler.
func New(o Options) (*Handler, error) {
	if o.API == nil || o.Tokens == nil || o.Events == nil {
		return nil, errors.New("dashboard: API, Tokens and Events are required")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	h := &Handler{opts: o, log: log, sessions: newSessions(o.SessionTTL, o.Now), static: http.FileServerFS(sub), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /ui/session", h.signIn)
	h.mux.HandleFunc("GET /ui/session", h.whoami)
	h.mux.HandleFunc("DELETE /ui/session", h.signOut)
	h.mux.HandleFunc("GET /ui/events", h.stream)
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	h.mux.HandleFunc("/v1/", h.api)
	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.HandleFunc("GET /assets/", h.asset)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Everything else is the API's: its 404 and 405 answers.
		o.API.ServeHTTP(w, r)
	})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// securityHeaders are set on every dashboard page and asset: nothing is
// loaded from elsewhere, and no other site may frame the dashboard.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	// FileServer redirects /index.html to /; serve the bytes directly.
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, "index missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/assets")
	if strings.HasSuffix(r2.URL.Path, "/") {
		http.NotFound(w, r)
		return
	}
	h.static.ServeHTTP(w, r2)
}
