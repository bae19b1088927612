package mcp

import "time"

// Close drains in-flight calls (up to the drain timeout), settles the
// rest as unconfirmed, stops the upstreams and waits for settlements.
func (s *Session) Close() error { return s.closeAfter(s.p.opts.DrainTimeout) }

// closeAfter is Close waiting at most drain for in-flight calls: zero
// settles them at once, as unconfirmed if they reached their upstream and
// released if they never did.
func (s *Session) closeAfter(drain time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.beginning.Wait()
	s.drain(drain)
	s.mu.Lock()
	var lost, unsent []*pending
	for id, p := range s.pending {
		delete(s.pending, id)
		if p.ticket != nil {
			s.stopCall(p)
			if p.sent {
				lost = append(lost, p)
			} else {
				unsent = append(unsent, p)
			}
		}
	}
	s.mu.Unlock()
	s.dropExchanges()
	for _, p := range lost {
		s.unconfirmed(p, "the host disconnected before the upstream answered")
	}
	for _, p := range unsent {
		s.release(p, "the host disconnected before the call reached the upstream")
	}
	s.closeConns()
	s.cancel()
	s.settles.Wait()
	return nil
}

// drain waits until no tools/call is in flight, or for at most d.
func (s *Session) drain(d time.Duration) {
	if d <= 0 || s.callsInFlight() == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for s.callsInFlight() > 0 {
		select {
		case <-s.callLeft:
		case <-t.C:
			return
		}
	}
}

func (s *Session) callsInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pending {
		if p.ticket != nil {
			n++
		}
	}
	return n
}

// beginCall counts a tools/call's admission in for Close to wait for,
// unless the session is closing. Checking closed under s.mu orders every
// Add before Close's Wait (an Add from zero concurrent with Wait is a
// misuse of the WaitGroup), and no call is admitted after Close swept the
// pending table, where its reservation would never be settled.
func (s *Session) beginCall() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.beginning.Add(1)
	return true
}
