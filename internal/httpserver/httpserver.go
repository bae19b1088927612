// Package httpserver builds the http.Server of every Caracal listener —
// `caracal proxy` and the Streamable HTTP front of `caracal mcp` — so that
// what a listener tolerates from a client is decided in one place.
//
// Threats it bounds: a client that trickles its request headers or body a
// byte at a time, or parks an idle keep-alive connection, holds a
// connection (and a goroutine, and on the proxy a reserved budget
// decision in the making) for as long as it likes. Each gets a deadline.
// What it must not bound is the response: a streamed completion or an MCP
// SSE stream runs for minutes, so there is no write timeout. The body
// deadline is set per request, once its headers are in, so each body gets
// the whole allowance whatever the headers took, and it is lifted as soon
// as the body has been read, so the response that follows is not bounded
// by it.
//
// The package also serves a listener over TLS with a certificate re-read
// from its files when they change (Certificate), and runs a listener until
// its context ends and then drains it (Serve): the one shutdown sequence of
// every serving command.
package httpserver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// Defaults of Timeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// Timeouts bound how long a client may take; zero fields take the defaults.
type Timeouts struct {
	// ReadHeader bounds reading a request's line and headers.
	ReadHeader time.Duration
	// Read bounds reading a request's body, counted from when its headers
	// have been read; a body not complete by then is cut off.
	Read time.Duration
	// Idle bounds the wait for the next request on a keep-alive connection.
	Idle time.Duration
}

// WithDefaults fills the zero fields of t with the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.ReadHeader == 0 {
		t.ReadHeader = DefaultReadHeaderTimeout
	}
	if t.Read == 0 {
		t.Read = DefaultReadTimeout
	}
	if t.Idle == 0 {
		t.Idle = DefaultIdleTimeout
	}
	return t
}

// New returns the server for h with the timeouts t (zero fields: the
// defaults). Its errors (a client's bad TLS or protocol) go to log at
// debug level.
func New(h http.Handler, t Timeouts, log *slog.Logger) *http.Server {
	t = t.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           bodyDeadline(h, t.Read),
		ReadHeaderTimeout: t.ReadHeader,
		IdleTimeout:       t.Idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// bodyDeadline gives each request body d to arrive, then lifts the
// deadline so that the response can stream for as long as it needs.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Without a body the server is already waiting, in the
		// background, for the client to hang up; a deadline would end
		// that wait and cancel the request.
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			// A writer that cannot (a test recorder): serve unbounded.
			h.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, limit: d}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline at the end of the body and names
// the deadline when it cuts the body off.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	limit time.Duration
	done  bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		err = &BodyTimeoutError{Limit: b.limit, Err: err}
	}
	return n, err
}

// BodyTimeoutError is the error reading a request body that did not
// arrive within the read timeout. It matches os.ErrDeadlineExceeded.
type BodyTimeoutError struct {
	Limit time.Duration
	Err   error
}

func (e *BodyTimeoutError) Error() string {
	return fmt.Sprintf("request body not received within the read timeout of %s", e.Limit)
}

func (e *BodyTimeoutError) Unwrap() error { return e.Err }
