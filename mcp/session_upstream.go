package mcp

import (
	"context"
	"fmt"
	"strconv"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/tidwall/gjson"
)

// fromUpstream handles one message from an upstream.
func (s *Session) fromUpstream(u *upstream, raw []byte) {
	if err := jsoncheck.Check(raw, false); err != nil {
		s.log.Warn("dropped a message from upstream", "upstream", u.resName(), "bytes", len(raw), "err", err)
		return
	}
	if !gjson.ValidBytes(raw) {
		s.log.Warn("dropped invalid JSON from upstream", "upstream", u.resName(), "bytes", len(raw))
		return
	}
	m, ok := parseMessage(raw)
	if !ok {
		if !s.gateway {
			s.reply(raw) // not ours to judge
		}
		return
	}
	switch m.kind {
	case kindResponse:
		if s.gateway && s.listenResponse(u, m) {
			return
		}
		s.upstreamResponse(u, m)
	case kindRequest:
		if s.gateway {
			if s.refuseToModernHost(u, m) {
				return
			}
			n := s.seq.Add(1)
			pid := `"caracal-s-` + strconv.FormatUint(n, 10) + `"`
			out, err := setPath(m.raw, []string{"id"}, []byte(pid))
			if err != nil {
				return
			}
			s.mu.Lock()
			s.serverReqs[pid] = serverReq{up: u, id: m.id}
			s.mu.Unlock()
			s.reply(out)
			return
		}
		s.reply(m.raw)
	case kindNotification:
		if s.gateway && s.listenNotification(u, m) {
			return
		}
		switch m.method {
		case "notifications/progress":
			if t := gjson.GetBytes(m.raw, "params.progressToken"); t.Exists() {
				s.touch(t.Raw)
			}
		case "notifications/cancelled":
			if s.gateway {
				rid := gjson.GetBytes(m.raw, "params.requestId").Raw
				s.mu.Lock()
				var pid string
				for k, sr := range s.serverReqs {
					if sr.up == u && sr.id == rid {
						pid = k
						delete(s.serverReqs, k)
						break
					}
				}
				s.mu.Unlock()
				if pid == "" {
					return
				}
				out, err := setPath(m.raw, []string{"params", "requestId"}, []byte(pid))
				if err != nil {
					return
				}
				s.reply(out)
				return
			}
		}
		s.reply(m.raw)
	}
}

func (s *Session) upstreamResponse(u *upstream, m message) {
	learnServerInfo(u, m.raw)
	s.mu.Lock()
	if w, ok := s.internal[m.id]; ok && w.up == u {
		delete(s.internal, m.id)
		s.mu.Unlock()
		w.ch <- m.raw
		return
	}
	p := s.pending[m.id]
	if p != nil && p.up != u {
		p = nil
	}
	if p != nil {
		delete(s.pending, m.id)
		s.stopCall(p)
	} else if _, late := s.late[m.id]; late {
		delete(s.late, m.id)
		s.mu.Unlock()
		s.log.Info("dropped a late response the proxy already answered", "id", m.id)
		return
	}
	s.mu.Unlock()
	if p == nil {
		if !s.gateway {
			s.reply(m.raw)
		}
		return
	}
	out := m.raw
	switch {
	case p.ticket != nil:
		// The host hears first; the settlement's commit is off its path.
		// The reservation holds the budget until then.
		// An input_required round is held before the host hears of it,
		// so that its retry finds the exchange.
		held := s.holdRound(p, m.raw)
		s.reply(out)
		if !held {
			s.finishCall(p, m.raw)
		}
		return
	case p.list:
		out = s.decorateList(u, m)
		if s.isModernID(p.id) {
			out = cacheHints(out)
		}
	case p.method == "initialize":
		u.setName(SanitizeName(gjson.GetBytes(m.raw, "result.serverInfo.name").String()))
	}
	s.reply(out)
}

// request sends a request of the proxy's own and waits for its response.
// It does not wait for the upstream to be ready.
func (s *Session) request(ctx context.Context, u *upstream, method string, params []byte) ([]byte, error) {
	id := `"caracal-` + strconv.FormatUint(s.seq.Add(1), 10) + `"`
	if method != "initialize" {
		// Under 2026-07-28 every request carries the host's envelope; one
		// without it would be refused, or push the upstream into 2025 mode.
		params = withEnvelope(params, s.hostEnvelope())
	}
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.internal[id] = waiter{ch: ch, up: u}
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.internal, id)
		s.mu.Unlock()
	}
	if err := u.conn.send(ctx, requestBytes(id, method, params)); err != nil {
		forget()
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, errUpstreamDown
		}
		if e := gjson.GetBytes(resp, "error"); e.Exists() {
			return nil, fmt.Errorf("%s: upstream error %s: %s", method, e.Get("code").Raw, e.Get("message").String())
		}
		return resp, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}
