package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay is a TCP relay between a test and a database server that the test
// can cut: Down makes the database unreachable (open connections are
// severed and new ones refused) and Up makes it reachable again, without
// stopping the server other tests share.
type Relay struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// lose is the armed LoseReplyTo, or nil.
	lose *loseReply
}

// loseReply is one armed LoseReplyTo.
type loseReply struct {
	marker []byte
	done   chan struct{}
	// before: the marked bytes themselves are dropped (CutBefore).
	before bool
}

// NewRelay starts a relay to the server of databaseURL and returns it with
// the URL that reaches the same database through it. The relay stops when
// the test ends.
func NewRelay(t testing.TB, databaseURL string) (*Relay, string) {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil || u.Host == "" {
		t.Fatalf("pgtest: relay needs a host:port URL, got %s", redact(databaseURL))
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: relay: %v", err)
	}
	r := &Relay{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	r.serve(ln)
	t.Cleanup(func() {
		r.Down()
		r.wg.Wait()
	})
	u.Host = r.addr
	return r, u.String()
}

func (r *Relay) serve(ln net.Listener) {
	r.ln = ln
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.pipe(c)
			}()
		}
	}()
}

func (r *Relay) pipe(client net.Conn) {
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		client.Close()
		return
	}
	r.mu.Lock()
	if r.ln == nil { // cut while dialling
		r.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	r.conns[client], r.conns[server] = struct{}{}, struct{}{}
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	var lost atomic.Pointer[loseReply]
	// toServer copies the client's bytes, and claims an armed LoseReplyTo
	// when they contain its marker, before the server can answer them.
	toServer := func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if l := r.claim(buf[:n]); l != nil {
					if l.before {
						close(l.done)
						break
					}
					lost.Store(l)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
		client.Close()
		done <- struct{}{}
	}
	// toClient copies the server's bytes, except the reply to a claimed
	// marker: that is dropped and the connection cut.
	toClient := func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				if l := lost.Load(); l != nil {
					client.Close()
					server.Close()
					close(l.done)
					break
				}
				if _, werr := client.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
		server.Close()
		done <- struct{}{}
	}
	go toServer()
	go toClient()
	<-done
	<-done
	r.mu.Lock()
	delete(r.conns, client)
	delete(r.conns, server)
	r.mu.Unlock()
}

// LoseReplyTo arms the relay once: the next client bytes that contain
// marker reach the server, but the server's reply to them is dropped and
// that connection cut. With marker "commit\x00" (the simple-query message
// pgx sends to commit), the client sees its COMMIT fail with a closed
// connection although the transaction landed. The channel returned is
// closed once the reply has been dropped.
func (r *Relay) LoseReplyTo(marker []byte) <-chan struct{} {
	l := &loseReply{marker: bytes.Clone(marker), done: make(chan struct{})}
	r.mu.Lock()
	r.lose = l
	r.mu.Unlock()
	return l.done
}

// CutBefore arms the relay once: the next client bytes that contain
// marker never reach the server; the connection is cut instead, so the
// client's statement fails having done nothing. The channel returned is
// closed once the bytes have been dropped.
func (r *Relay) CutBefore(marker []byte) <-chan struct{} {
	l := &loseReply{marker: bytes.Clone(marker), done: make(chan struct{}), before: true}
	r.mu.Lock()
	r.lose = l
	r.mu.Unlock()
	return l.done
}

// claim disarms and returns the armed LoseReplyTo if b contains its marker.
func (r *Relay) claim(b []byte) *loseReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lose == nil || !bytes.Contains(b, r.lose.marker) {
		return nil
	}
	l := r.lose
	r.lose = nil
	return l
}

// Down closes the relay's listening port and every relayed connection:
// clients see their connections drop and new ones refused.
func (r *Relay) Down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
}

// Up listens again on the same address.
func (r *Relay) Up(t testing.TB) {
	t.Helper()
	if err := r.up(); err != nil {
		t.Fatal(err)
	}
}

func (r *Relay) up() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return errors.New("pgtest: relay is already up")
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("pgtest: relay: listen again on %s: %w", r.addr, err)
	}
	r.serve(ln)
	return nil
}
