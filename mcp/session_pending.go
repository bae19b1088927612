package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caracal-dev/caracal/interpose"
)

// pending is a host request in flight upstream.
type pending struct {
	id     string // JSON text of the host's id
	method string
	up     *upstream
	list   bool // tools/list whose result the proxy decorates

	// tools/call only
	ticket    *interpose.Ticket
	token     string // progress token's JSON text
	timer     *time.Timer
	hardStop  time.Time
	cancelled bool
	// MRTR: the tool's name within its upstream, the call's identity for
	// matching a retry, the round this is, and whether it answers a
	// declined or cancelled input request.
	tool     string
	callKey  string
	rounds   int
	declined bool
	// sent is set (under Session.mu) once the request was handed to the
	// upstream: a request still waiting for a restarting upstream was
	// never delivered, so losing the upstream does not make its outcome
	// unknown.
	sent bool
}

type waiter struct {
	ch chan []byte
	up *upstream
}

type serverReq struct {
	up *upstream
	id string // the upstream's own id
}

// expectCalls marks tools/call ids as being admitted, before admission
// starts, so that a cancellation that overtakes admission is remembered.
func (s *Session) expectCalls(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.admitting[id]; !ok {
			s.admitting[id] = false
		}
	}
}

// cancelledEarly reports whether the host cancelled a call being admitted.
func (s *Session) cancelledEarly(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitting[id]
}

// admitted forgets an id once its admission has ended.
func (s *Session) admitted(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.admitting, id)
}

// track registers p; it is false if the id is already in flight.
func (s *Session) track(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.pending[p.id]; dup {
		return false
	}
	s.pending[p.id] = p
	if p.token != "" {
		s.byToken[p.token] = p
	}
	return true
}

// untrack removes p if it is still in flight and reports whether it was.
func (s *Session) untrack(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[p.id] != p {
		return false
	}
	delete(s.pending, p.id)
	s.stopCall(p)
	return true
}

// stopCall stops p's timer, forgets its progress token and wakes a
// draining Close; p has just left s.pending and s.mu is held.
func (s *Session) stopCall(p *pending) {
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.token != "" && s.byToken[p.token] == p {
		delete(s.byToken, p.token)
	}
	if p.ticket != nil {
		select {
		case s.callLeft <- struct{}{}:
		default: // a signal is already waiting to be read
		}
	}
}

// markLate remembers an id the proxy already answered so that a late
// response from upstream is dropped; s.mu is held.
func (s *Session) markLate(id string) {
	now := time.Now()
	if len(s.late) > 4096 {
		for k, t := range s.late {
			if now.Sub(t) > 10*time.Minute {
				delete(s.late, k)
			}
		}
	}
	s.late[id] = now
}

// callTimedOut fires when a tools/call has waited too long, or when a
// cancelled call's grace period ends.
func (s *Session) callTimedOut(p *pending) {
	now := time.Now()
	s.mu.Lock()
	if s.pending[p.id] != p {
		s.mu.Unlock()
		return
	}
	delete(s.pending, p.id)
	s.stopCall(p)
	s.markLate(p.id)
	cancelled := p.cancelled
	s.mu.Unlock()
	if cancelled {
		s.unconfirmed(p, "cancelled by the host; the upstream sent no response")
		return
	}
	limit := s.p.opts.CallTimeout
	if !now.Before(p.hardStop) {
		limit = s.p.opts.MaxCallDuration
	}
	s.log.Warn("tools/call timed out", "id", p.id, "after", limit)
	s.reply(toolErrorResult(p.id, fmt.Sprintf("The tool server did not answer within %s. Its outcome is unknown, so the call was charged as unconfirmed.", limit), map[string]any{"code": "timeout", "reason": "no response within " + limit.String()}))
	s.unconfirmed(p, "no response within "+limit.String())
	params, _ := json.Marshal(map[string]any{"requestId": json.RawMessage(p.id), "reason": "timed out in Caracal after " + limit.String()})
	s.sendAside(p.up, notificationBytes("notifications/cancelled", params))
}

// cancelSendTimeout bounds how long delivering a cancellation may take.
const cancelSendTimeout = 10 * time.Second

// sendAside delivers a cancellation without holding up the caller: an
// upstream that has stopped answering (an HTTP server stuck in a tool) must
// not delay the host's answer or stall the host's read loop.
func (s *Session) sendAside(u *upstream, msg []byte) {
	s.settles.Add(1)
	go func() {
		defer s.settles.Done()
		ctx, cancel := context.WithTimeout(s.ctx, cancelSendTimeout)
		defer cancel()
		s.send(ctx, u, msg)
	}()
}

// touch extends a call's timeout when progress arrives, never past its
// hard stop.
func (s *Session) touch(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byToken[token]
	if p == nil || p.cancelled {
		return
	}
	d := s.p.opts.CallTimeout
	if left := time.Until(p.hardStop); left < d {
		d = max(left, 0)
	}
	p.timer.Reset(d)
}
