package mcp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// A stdio host that goes away (stdin closed, or the process told to stop)
// with a call in flight ends the session without waiting for the answer:
// the call is charged as unconfirmed before ServeStdio returns, however
// long the drain timeout of other fronts is.
func TestStdioEndsPromptlyWithCallInFlight(t *testing.T) {
	for _, how := range []string{"stdin closed", "context cancelled"} {
		t.Run(how, func(t *testing.T) {
			m := newFakeMeter("1")
			log := filepath.Join(t.TempDir(), "calls.log")
			p, err := New(Options{Meter: m, DrainTimeout: time.Minute, Stderr: io.Discard, Upstreams: []UpstreamSpec{fakeSpec("fake", log)}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() { done <- p.ServeStdio(ctx, "agent-1", inR, outW); outW.Close() }()
			go func() {
				sc := bufio.NewScanner(outR)
				for sc.Scan() {
				}
			}()
			h := &hostClient{t: t, w: inW, log: log}
			h.send(initLine)
			h.send(initializedLine)
			h.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang","arguments":{}}}`)
			deadline := time.Now().Add(10 * time.Second)
			for !slices.Contains(h.upstreamCalls(), "hang") {
				if time.Now().After(deadline) {
					t.Fatal("the call never reached the upstream")
				}
				time.Sleep(5 * time.Millisecond)
			}
			stopped := time.Now()
			if how == "stdin closed" {
				inW.Close()
			} else {
				cancel()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ServeStdio: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("ServeStdio still waits for the call's answer")
			}
			t.Logf("ServeStdio returned %s after the host left", time.Since(stopped))
			ev := m.snapshot()
			if len(ev) != 1 || ev[0].Outcome != policy.OutcomeUnconfirmed || ev[0].Resource != "mcp:fake/hang" {
				t.Fatalf("events %+v; want the hanging call settled as unconfirmed before ServeStdio returned", ev)
			}
		})
	}
}

// unpricedMeter quotes every resource without a price of its own as
// unpriced, as the engine does.
type unpricedMeter struct{ *fakeMeter }

func (u unpricedMeter) Quote(ctx context.Context, resource string, args []byte, declared *policy.PriceRule) (interpose.Quote, error) {
	q, err := u.fakeMeter.Quote(ctx, resource, args, declared)
	u.mu.Lock()
	_, priced := u.prices[resource]
	u.mu.Unlock()
	q.Unpriced = !priced && !q.Declared
	return q, err
}

func TestUnpricedToolsLoggedOncePerUpstream(t *testing.T) {
	m := newFakeMeter("1")
	m.prices["mcp:fake/echo"] = money.MustParse("0.01")
	var logs lockedBuffer
	h := startHost(t, Options{Meter: unpricedMeter{m}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h.init()
	for i := range 2 {
		h.call(fmt.Sprint(10+i), "tools/list", `{}`)
	}
	out := logs.String()
	if n := strings.Count(out, "tools without a price"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "upstream=fake") || !strings.Contains(out, "fail") || strings.Contains(out, "echo") {
		t.Fatalf("log does not list the unpriced tools of the first page, and only them:\n%s", out)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
