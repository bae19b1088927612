package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultShutdownTimeout is how long requests in flight may run once a
// listener is told to stop: under the 30 s a Kubernetes pod is given
// between SIGTERM and SIGKILL, leaving time to settle what is cut off.
const DefaultShutdownTimeout = 25 * time.Second

// abortGrace bounds the wait, after the shutdown deadline, for handlers
// whose work was cancelled to record that and return.
const abortGrace = 10 * time.Second

// ServeOptions say how Serve serves and how it stops.
type ServeOptions struct {
	// TLS, when set, serves HTTPS with its certificate.
	TLS *Certificate
	// ShutdownTimeout bounds how long requests in flight may go on once
	// ctx ends; zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Draining is called as soon as ctx ends, before anything else: the
	// place to turn readiness to 503 so load balancers stop sending.
	Draining func()
	// Abort is called at the shutdown deadline when requests are still
	// running, just before their contexts are cancelled: the place to end
	// what handlers wait on that does not follow the request's context
	// (an upstream exchange kept alive to learn its usage, an MCP
	// session), so that each settles and returns.
	Abort func()
	// Pending, if set, waits (until its context ends) for work that
	// outlives its request — a response still read after its client
	// left, to learn its usage — which gets the same deadline.
	Pending func(ctx context.Context) error
	Logger  *slog.Logger
}

// Serve serves srv on ln until ctx ends, then shuts down gracefully: it
// stops accepting at once, lets requests in flight finish for up to
// ShutdownTimeout, then aborts the rest and waits (bounded) for their
// handlers to record that. It returns nil after a shutdown, or the error
// that stopped serving. It sets srv.BaseContext and wraps srv.Handler.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, o ServeOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := o.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	// Requests' contexts derive from base, not from ctx, so that the
	// signal that starts the shutdown does not cancel the requests it
	// means to let finish.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	var inflight handlers
	srv.Handler = inflight.track(srv.Handler)
	if o.TLS != nil {
		ln = o.TLS.listener(ln)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	if o.Draining != nil {
		o.Draining()
	}
	log.Info("shutting down: no new connections; letting requests in flight finish", "in_flight", inflight.n.Load(), "timeout", timeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err == nil && o.Pending != nil {
		err = o.Pending(sctx)
	}
	if err == nil {
		log.Info("shutdown: every request finished")
		return nil
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	log.Warn("shutdown deadline passed; cancelling the requests still running", "in_flight", inflight.n.Load())
	if o.Abort != nil {
		o.Abort()
	}
	cancelBase()
	gctx, gcancel := context.WithTimeout(context.WithoutCancel(ctx), abortGrace)
	defer gcancel()
	if err := inflight.wait(gctx); err != nil {
		log.Error("shutdown: requests still running after being cancelled", "in_flight", inflight.n.Load())
	}
	if o.Pending != nil {
		if err := o.Pending(gctx); err != nil {
			log.Error("shutdown: work of finished requests still running after being cancelled", "err", err)
		}
	}
	_ = srv.Close()
	return nil
}

// handlers counts the requests whose handlers are running. It is polled,
// as http.Server.Shutdown polls its connections, because a connection
// already reading its next request may still start a handler while the
// count is being waited on.
type handlers struct {
	n atomic.Int64
}

func (c *handlers) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		defer c.n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func (c *handlers) wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.n.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
