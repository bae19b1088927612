package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness names, as /readyz reports them in "failed".
const (
	CheckStore     = "store"
	CheckUpstreams = "upstreams"
	CheckDraining  = "draining"
)

// checkTimeout bounds one readiness check, so a hung store answers 503
// rather than leaving the prober waiting.
const checkTimeout = 2 * time.Second

// Readiness answers /readyz: every check passes and the process is not
// draining. It is safe for concurrent use.
type Readiness struct {
	draining atomic.Bool
	mu       sync.Mutex
	checks   []check
}

type check struct {
	name string
	fn   func(ctx context.Context) error
}

// NewReadiness returns a Readiness with no checks: ready until a check is
// added or it is set draining.
func NewReadiness() *Readiness { return &Readiness{} }

// Add adds a check; /readyz runs them in the order added and names the
// first that fails.
func (r *Readiness) Add(name string, fn func(ctx context.Context) error) {
	r.mu.Lock()
	r.checks = append(r.checks, check{name, fn})
	r.mu.Unlock()
}

// SetDraining makes /readyz answer 503 from now on, so a load balancer
// stops sending new work while in-flight requests finish.
func (r *Readiness) SetDraining() { r.draining.Store(true) }

// Check returns the name of the first failing check, or "" when ready.
// A check's error itself is never shown: it may hold addresses or
// credentials from the store's driver.
func (r *Readiness) Check(ctx context.Context) string {
	if r.draining.Load() {
		return CheckDraining
	}
	r.mu.Lock()
	cs := append([]check(nil), r.checks...)
	r.mu.Unlock()
	for _, c := range cs {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err := c.fn(cctx)
		cancel()
		if err != nil {
			return c.name
		}
	}
	return ""
}

// SchemaStore is what StoreCheck needs; *sqlstore.Store satisfies it.
type SchemaStore interface {
	Ping(ctx context.Context) error
	Versions(ctx context.Context) (current, latest int64, err error)
}

// StoreCheck passes when the store answers and its schema is the one this
// binary expects.
func StoreCheck(s SchemaStore) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := s.Ping(ctx); err != nil {
			return err
		}
		cur, latest, err := s.Versions(ctx)
		if err != nil {
			return err
		}
		if cur != latest {
			return fmt.Errorf("schema version %d, want %d", cur, latest)
		}
		return nil
	}
}

// Handler serves /healthz, /readyz and, when reg is set, /metrics, and
// passes every other request to next (which may be nil: 404). These
// routes need no authentication and reveal no secrets, so they are
// answered before next sees the request.
func Handler(next http.Handler, reg *prometheus.Registry, ready *Readiness) http.Handler {
	var metrics http.Handler
	if reg != nil {
		metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	}
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		get := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch {
		case get && r.URL.Path == "/healthz":
			writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
		case get && r.URL.Path == "/readyz":
			if ready == nil {
				writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
				return
			}
			if failed := ready.Check(r.Context()); failed != "" {
				writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "failed": failed})
				return
			}
			writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
		case get && r.URL.Path == "/metrics" && metrics != nil:
			metrics.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeStatus(w http.ResponseWriter, code int, body map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
