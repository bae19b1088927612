package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// startServe runs Serve with h on a loopback port; it returns the address,
// the function that starts the shutdown, and Serve's result.
func startServe(t *testing.T, h http.Handler, o ServeOptions) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, New(h, Timeouts{}, nil), ln, o) }()
	return ln.Addr().String(), cancel, done
}

func waitServe(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Serve did not return")
	}
}

func TestServeLetsRequestsInFlightFinish(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		if r.Context().Err() != nil {
			t.Error("the request's context ended with the shutdown signal")
		}
		_, _ = io.WriteString(w, "complete")
	})
	var draining, aborted atomic.Bool
	addr, stop, done := startServe(t, h, ServeOptions{
		ShutdownTimeout: safety,
		Draining:        func() { draining.Store(true) },
		Abort:           func() { aborted.Store(true) },
	})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- result{string(b), err}
	}()
	<-started
	stop()
	// Draining is called before Serve waits on anything: wait for the
	// listener to close, which follows it.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		_ = c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !draining.Load() {
		t.Error("Draining not called when the shutdown began")
	}
	close(release)
	r := <-got
	if r.err != nil || r.body != "complete" {
		t.Fatalf("in-flight request: body %q, err %v; want it complete", r.body, r.err)
	}
	waitServe(t, done)
	if aborted.Load() {
		t.Error("Abort called although every request finished in time")
	}
}

func TestServeCancelsRequestsAtTheDeadline(t *testing.T) {
	started := make(chan struct{})
	var abortedFirst atomic.Bool
	aborted := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		select {
		case <-aborted:
			abortedFirst.Store(true)
		default:
		}
	})
	addr, stop, done := startServe(t, h, ServeOptions{
		ShutdownTimeout: 50 * time.Millisecond,
		Abort:           func() { close(aborted) },
	})
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-started
	stop()
	waitServe(t, done)
	select {
	case <-aborted:
	default:
		t.Fatal("Abort not called at the deadline")
	}
	if !abortedFirst.Load() {
		t.Error("the request's context was cancelled before Abort, or its handler had not returned when Serve did")
	}
}
