package mcp

import (
	"context"
	"io"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

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

// Calls that arrive while the session closes are either admitted before
// Close's drain (and then settled by it) or refused without a charge:
// none is left holding a reservation, and none is admitted behind
// Close's back (which the race detector reports as a WaitGroup misuse).
func TestCloseRacingAdmissions(t *testing.T) {
	m := newFakeMeter("1000")
	s, _, toHost := connSession(t, m, 0)
	const callers, each = 8, 25
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				id := g*each + i
				s.HandleHost(context.Background(), []byte(`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"tools/call","params":{"name":"echo","arguments":{}}}`))
			}
		}()
	}
	closed := make(chan error, 1)
	// No drain: the calls admitted are settled at once, as by Abort.
	go func() { <-start; closed <- s.closeAfter(0) }()
	close(start)
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close has returned and no HandleHost is running: every call that
	// was admitted is settled, and no call is answered twice.
	m.mu.Lock()
	begun, reserved := m.n, m.reserved
	m.mu.Unlock()
	if reserved != 0 {
		t.Fatalf("%d calls begun, %s still reserved after Close", begun, reserved)
	}
	if ev := m.snapshot(); len(ev) != begun {
		t.Fatalf("%d calls begun, %d settled: %+v", begun, len(ev), ev)
	}
	answered := map[string]int{}
	for len(toHost) > 0 {
		msg := <-toHost
		answered[gjson.GetBytes(msg, "id").Raw]++
	}
	// A call Close settled has no answer: its host is gone.
	for id := range callers * each {
		if n := answered[strconv.Itoa(id)]; n > 1 {
			t.Errorf("call %d answered %d times, want at most once", id, n)
		}
	}
}
