package mcp

import (
	"sync"
	"time"
)

// Close ends every session, each waiting for its calls in flight up to
// the drain timeout.
func (f *HTTPFront) Close() error { return f.closeSessions(f.p.opts.DrainTimeout) }

// Drain ends every GET stream, which would otherwise hold a graceful
// shutdown until its deadline: the host reconnects elsewhere. POST
// streams, which carry calls in flight, go on.
func (f *HTTPFront) Drain() { f.drainOnce.Do(func() { close(f.draining) }) }

// Abort ends every session at once: calls in flight are settled as
// unconfirmed if they reached their upstream and released if they never
// did, and the POSTs waiting for them are answered.
func (f *HTTPFront) Abort() { _ = f.closeSessions(0) }

func (f *HTTPFront) closeSessions(drain time.Duration) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.stop)
	ss := make([]*httpSession, 0, len(f.sessions))
	for _, s := range f.sessions {
		ss = append(ss, s)
	}
	f.sessions = map[string]*httpSession{}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() { defer wg.Done(); s.closeAfter(drain) }()
	}
	wg.Wait()
	return nil
}
