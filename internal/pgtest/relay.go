package pgtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
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
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
	r.mu.Lock()
	delete(r.conns, client)
	delete(r.conns, server)
	r.mu.Unlock()
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
