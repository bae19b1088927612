package mcp

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/policy"
)

// TestHTTPFrontGracefulShutdown serves the front as `caracal mcp --listen`
// does and stops it with a GET stream open and a call in flight that
// outlasts the shutdown timeout: the GET stream ends when the drain
// begins, the call's session is closed at the deadline without waiting
// out the (long) session drain timeout, and the call is settled
// unconfirmed before Serve returns.
func TestHTTPFrontGracefulShutdown(t *testing.T) {
	m := newFakeMeter("1")
	log := filepath.Join(t.TempDir(), "calls.log")
	p, err := New(Options{Meter: m, DrainTimeout: time.Hour, Stderr: io.Discard, Upstreams: []UpstreamSpec{fakeSpec("fake", log)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.NewHTTPFront(FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}, ListenAddr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- httpserver.Serve(ctx, httpserver.New(f, httpserver.Timeouts{}, nil), ln, httpserver.ServeOptions{
			ShutdownTimeout: 200 * time.Millisecond,
			Draining:        f.Drain,
			Abort:           f.Abort,
		})
	}()
	url := "http://" + ln.Addr().String() + "/mcp"
	sid := initSession(t, url)
	do(t, url, httpReq{key: "crk_good", session: sid, body: initializedLine})

	getEnded := make(chan struct{})
	getOpen := make(chan struct{})
	go func() {
		defer close(getEnded)
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer crk_good")
		req.Header.Set("Mcp-Session-Id", sid)
		resp, err := http.DefaultClient.Do(req)
		close(getOpen)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	<-getOpen
	callDone := make(chan struct{})
	go func() {
		defer close(callDone)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang","arguments":{}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer crk_good")
		req.Header.Set("Mcp-Session-Id", sid)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if slices.Contains(strings.Fields(string(b)), "hang") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}

	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return: the shutdown waited for the call or the GET stream")
	}
	ev := m.snapshot()
	if len(ev) != 1 || ev[0].Outcome != policy.OutcomeUnconfirmed || ev[0].Resource != "mcp:fake/hang" {
		t.Fatalf("events %+v; want the hanging call settled unconfirmed before Serve returned", ev)
	}
	for what, ch := range map[string]chan struct{}{"GET stream": getEnded, "POST of the call": callDone} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Errorf("the %s did not end", what)
		}
	}
}

// TestHTTPFrontDrainEndsGETStreams: a GET stream, which never ends by
// itself, does not hold a graceful shutdown until its deadline.
func TestHTTPFrontDrainEndsGETStreams(t *testing.T) {
	p, err := New(Options{Meter: newFakeMeter("1"), Stderr: io.Discard, Upstreams: []UpstreamSpec{fakeSpec("fake", filepath.Join(t.TempDir(), "calls.log"))}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.NewHTTPFront(FrontOptions{Auth: fakeAuth{"crk_good": "agent-1"}, ListenAddr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- httpserver.Serve(ctx, httpserver.New(f, httpserver.Timeouts{}, nil), ln, httpserver.ServeOptions{
			ShutdownTimeout: time.Hour,
			Draining:        f.Drain,
			Abort:           func() { t.Error("aborted: the GET stream held the shutdown until its deadline") },
		})
	}()
	url := "http://" + ln.Addr().String() + "/mcp"
	sid := initSession(t, url)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer crk_good")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %d", resp.StatusCode)
	}
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return: the GET stream held the shutdown")
	}
}
