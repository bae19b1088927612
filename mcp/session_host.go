package mcp

import (
	"context"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/tidwall/gjson"
)

// hostTooLarge answers an oversize message from the host.
func (s *Session) hostTooLarge(e *TooLargeError) {
	id := ""
	if v := gjson.GetBytes(e.Prefix, "id"); v.Exists() && (v.Type == gjson.Number || v.Type == gjson.String) {
		id = v.Raw
	}
	s.log.Warn("message from host too large", "size", e.Size, "max", e.Max)
	s.reply(errorResponse(id, codeInvalidRequest, e.Error()))
}

// HandleHost handles one message (or batch) from the host.
func (s *Session) HandleHost(ctx context.Context, raw []byte) {
	c := firstNonSpace(raw)
	if err := jsoncheck.Check(raw, true); err != nil {
		id, code, msg := rejectJSON(raw, err)
		s.log.Warn("refused a message from the host", "err", err)
		s.reply(errorResponse(id, code, msg))
		return
	}
	if !gjson.ValidBytes(raw) {
		s.reply(errorResponse("", codeParseError, "Parse error: the message is not valid JSON"))
		return
	}
	switch c {
	case '[':
		// Batches (JSON-RPC 2.0, dropped from MCP in 2025-06-18) are
		// unpacked and each message handled alone.
		arr := gjson.ParseBytes(raw).Array()
		if len(arr) == 0 {
			s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: empty batch"))
		}
		for _, e := range arr {
			if e.IsObject() {
				s.handleOne(ctx, []byte(e.Raw))
			} else {
				s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: batch element is not an object"))
			}
		}
		return
	case '{':
		s.handleOne(ctx, raw)
	default:
		s.reply(errorResponse("", codeInvalidRequest, "Invalid Request: not a JSON-RPC message"))
	}
}

func (s *Session) handleOne(ctx context.Context, raw []byte) {
	m, ok := parseMessage(raw)
	if r := checkHostMessage(m, ok); r != nil {
		s.log.Warn("refused a message from the host", "method", m.method, "reason", r.reason)
		if !r.silent {
			s.reply(r.resp)
		}
		return
	}
	if m.kind == kindRequest {
		s.mu.Lock()
		s.noteRevision(m)
		s.mu.Unlock()
	}
	switch m.kind {
	case kindRequest:
		s.hostRequest(ctx, m)
	case kindNotification:
		s.hostNotification(ctx, m)
	case kindResponse:
		s.hostResponse(ctx, m)
	}
}

func (s *Session) hostRequest(ctx context.Context, m message) {
	switch m.method {
	case "initialize":
		s.mu.Lock()
		s.initReq = m.raw
		s.mu.Unlock()
		if s.gateway {
			s.gatewayInitialize(ctx, m)
			return
		}
	case "tools/call":
		// Pricing and reserving waits on the store; calls admitted in
		// parallel keep one slow commit from holding up the session.
		// The id is marked as being admitted first, in the host's order,
		// so that a cancellation read next is not lost.
		// A call whose tool name is unusable is refused here, before any
		// metering and in the host's order.
		if resp := badToolName(m); resp != nil {
			s.reply(resp)
			return
		}
		s.expectCalls(m.id)
		s.begins <- struct{}{}
		if !s.beginCall() {
			<-s.begins
			s.admitted(m.id)
			s.reply(closingResult(m.id))
			return
		}
		go func() {
			defer func() { <-s.begins; s.beginning.Done() }()
			s.toolsCall(ctx, m)
		}()
		return
	}
	if s.gateway {
		s.gatewayRequest(ctx, m)
		return
	}
	u := s.ups[0]
	p := &pending{id: m.id, method: m.method, up: u, list: m.method == "tools/list"}
	if !s.track(p) {
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
		return
	}
	s.forward(ctx, p, m.raw)
}

// forward sends a tracked request upstream, answering it with an error if
// it cannot be delivered.
func (s *Session) forward(ctx context.Context, p *pending, msg []byte) {
	err := p.up.waitReady(ctx, upstreamReadyWait)
	if err == nil {
		err = p.up.conn.send(ctx, msg)
	}
	if err == nil {
		s.mu.Lock()
		p.sent = true
		s.mu.Unlock()
		return
	}
	if !s.untrack(p) {
		return
	}
	s.log.Warn("could not deliver request upstream", "method", p.method, "upstream", p.up.resName(), "err", err)
	if p.ticket != nil {
		s.release(p, "the upstream server could not be reached: "+err.Error())
		s.reply(toolErrorResult(p.id, "Caracal could not reach the tool server, so the call was not made and not charged: "+err.Error(), nil))
		return
	}
	s.reply(errorResponse(p.id, codeInternalError, "Caracal could not reach the upstream server: "+err.Error()))
}

func (s *Session) hostNotification(ctx context.Context, m message) {
	switch m.method {
	case "notifications/initialized":
		s.mu.Lock()
		s.initNote = m.raw
		s.mu.Unlock()
	case "notifications/cancelled":
		rid := canonicalID(gjson.GetBytes(m.raw, "params.requestId"))
		if s.gateway && s.cancelListen(rid, m.raw) {
			return
		}
		s.mu.Lock()
		p := s.pending[rid]
		if p != nil && p.ticket != nil && !p.cancelled {
			p.cancelled = true
			p.timer.Reset(s.p.opts.CancelGrace)
		}
		if _, admitting := s.admitting[rid]; p == nil && admitting {
			// The call is still being priced and reserved: it is
			// dropped there, and the upstream never hears of it.
			s.admitting[rid] = true
			s.mu.Unlock()
			s.log.Info("host cancelled a tools/call before it was relayed", "id", rid)
			return
		}
		s.mu.Unlock()
		if p != nil {
			s.sendAside(p.up, m.raw)
			return
		}
		if s.gateway {
			return // nothing in flight: nowhere to send it
		}
		// Probably a call that already timed out here: the upstream may be
		// stuck, so the host's read loop must not wait for it.
		s.sendAside(s.ups[0], m.raw)
		return
	}
	if s.gateway {
		for _, u := range s.ups {
			s.send(ctx, u, m.raw)
		}
		return
	}
	s.send(ctx, s.ups[0], m.raw)
}

// send delivers a message that expects no answer.
func (s *Session) send(ctx context.Context, u *upstream, msg []byte) {
	err := u.waitReady(ctx, upstreamReadyWait)
	if err == nil {
		err = u.conn.send(ctx, msg)
	}
	if err != nil {
		s.log.Warn("could not deliver message upstream", "upstream", u.resName(), "err", err)
	}
}

func (s *Session) hostResponse(ctx context.Context, m message) {
	if !s.gateway {
		s.send(ctx, s.ups[0], m.raw)
		return
	}
	s.mu.Lock()
	sr, ok := s.serverReqs[m.id]
	delete(s.serverReqs, m.id)
	s.mu.Unlock()
	if !ok {
		s.log.Warn("response from host to an unknown request", "id", m.id)
		return
	}
	out, err := setPath(m.raw, []string{"id"}, []byte(sr.id))
	if err != nil {
		return
	}
	s.send(ctx, sr.up, out)
}
