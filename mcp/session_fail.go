package mcp

import (
	"context"

	"github.com/tidwall/gjson"
)

// upstreamFailed answers a request whose HTTP exchange failed.
func (s *Session) upstreamFailed(u *upstream, id string, err error, unknown bool) {
	s.mu.Lock()
	if w, ok := s.internal[id]; ok && w.up == u {
		delete(s.internal, id)
		s.mu.Unlock()
		close(w.ch)
		return
	}
	p := s.pending[id]
	if p == nil || p.up != u {
		s.mu.Unlock()
		return
	}
	delete(s.pending, id)
	s.stopCall(p)
	s.mu.Unlock()
	s.fail(p, err, unknown)
}

// fail answers a lost request. A tools/call whose outcome is unknown is
// charged as unconfirmed, never silently refunded.
func (s *Session) fail(p *pending, err error, unknown bool) {
	if p.ticket == nil {
		s.reply(errorResponse(p.id, codeInternalError, "upstream server failed before answering: "+err.Error()))
		return
	}
	if !unknown {
		s.release(p, "the upstream refused the request: "+err.Error())
		if !p.cancelled {
			s.reply(toolErrorResult(p.id, "The tool server refused the request, so it was not charged: "+err.Error(), map[string]any{"code": "upstream_error", "reason": err.Error()}))
		}
		return
	}
	s.unconfirmed(p, "upstream lost before answering: "+err.Error())
	if !p.cancelled {
		s.reply(toolErrorResult(p.id, "The tool server stopped before answering. Its outcome is unknown, so the call was charged as unconfirmed: "+err.Error(), map[string]any{"code": "upstream_lost", "reason": err.Error()}))
	}
}

// upstreamDown fails every request in flight on u. Requests not yet sent
// stay pending: forward delivers them once u is back, or releases them if
// it does not come back in time.
func (s *Session) upstreamDown(u *upstream, err error) {
	u.setReady(false)
	s.mu.Lock()
	var lost []*pending
	for id, p := range s.pending {
		if p.up == u && p.sent {
			delete(s.pending, id)
			s.stopCall(p)
			s.markLate(id)
			lost = append(lost, p)
		}
	}
	for id, w := range s.internal {
		if w.up == u {
			delete(s.internal, id)
			close(w.ch)
		}
	}
	for id, sr := range s.serverReqs {
		if sr.up == u {
			delete(s.serverReqs, id)
		}
	}
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.log.Warn("upstream stopped", "upstream", u.resName(), "err", err, "in_flight", len(lost))
	}
	for _, p := range lost {
		s.fail(p, err, true)
	}
}

// reinitTimeout bounds repeating the initialize handshake with a restarted
// upstream: the messages waiting for it give up after upstreamReadyWait,
// so a longer handshake would serve none of them.
const reinitTimeout = upstreamReadyWait

// reinit repeats the host's initialize handshake with a restarted upstream.
func (s *Session) reinit(u *upstream) {
	defer u.setReady(true)
	s.mu.Lock()
	initReq, initNote := s.initReq, s.initNote
	s.mu.Unlock()
	if initReq == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, reinitTimeout)
	defer cancel()
	params := gjson.GetBytes(initReq, "params").Raw
	if _, err := s.request(ctx, u, "initialize", []byte(params)); err != nil {
		s.log.Error("re-initialising the restarted upstream failed", "upstream", u.resName(), "err", err)
		return
	}
	if initNote == nil {
		initNote = notificationBytes("notifications/initialized", nil)
	}
	if err := u.conn.send(ctx, initNote); err != nil {
		s.log.Error("re-initialising the restarted upstream failed", "upstream", u.resName(), "err", err)
		return
	}
	s.log.Info("upstream restarted and re-initialised", "upstream", u.resName())
}
