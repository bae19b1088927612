package mcp

import (
	"context"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// chanConn is an upstream connection that hands every message it is sent
// to the test. Like the real connections, close returns only once the
// messages it is delivering have been handled.
type chanConn struct {
	sent       chan []byte
	delivering sync.WaitGroup
}

func (c *chanConn) send(_ context.Context, msg []byte) error {
	c.sent <- append([]byte(nil), msg...)
	return nil
}
func (c *chanConn) close() error      { c.delivering.Wait(); return nil }
func (c *chanConn) sessionID() string { return "" }

// deliver hands msg from the upstream to the session, as a connection's
// reader does.
func (c *chanConn) deliver(s *Session, msg string) {
	c.delivering.Add(1)
	go func() {
		defer c.delivering.Done()
		s.fromUpstream(s.ups[0], []byte(msg))
	}()
}

// connSession is a session whose one upstream, named "fake", is a
// chanConn; messages to the host go to the returned channel.
func connSession(t *testing.T, m interpose.Meter, drain time.Duration) (*Session, *chanConn, chan []byte) {
	t.Helper()
	p, err := New(Options{Meter: m, DrainTimeout: drain, Stderr: io.Discard,
		Upstreams: []UpstreamSpec{{Name: "fake", URL: "http://127.0.0.1:1/mcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	toHost := make(chan []byte, 4096)
	s, err := p.NewSession(context.Background(), "agent-1", func(msg []byte) error {
		toHost <- msg
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.ups[0].conn.close()
	c := &chanConn{sent: make(chan []byte, 4096)}
	s.ups[0].conn = c
	return s, c, toHost
}

// Close waits for a call in flight and ends as soon as its answer comes,
// however long the drain timeout: the answer settles the call as charged,
// not unconfirmed.
func TestCloseEndsWhenLastCallIsAnswered(t *testing.T) {
	m := newFakeMeter("1")
	s, c, _ := connSession(t, m, time.Hour)
	s.HandleHost(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`))
	select {
	case <-c.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Answer only once Close is draining, so that it is the answer that
	// ends the wait.
	for {
		s.mu.Lock()
		draining := s.closed
		s.mu.Unlock()
		if draining {
			break
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) with the call still in flight", err)
		default:
			runtime.Gosched()
		}
	}
	c.deliver(s, `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close still waits after the last call was answered")
	}
	ev := m.snapshot()
	if len(ev) != 1 || ev[0].Outcome != policy.OutcomeCharged {
		t.Fatalf("events %+v; want the call settled as charged from its answer", ev)
	}
}
