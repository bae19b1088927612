package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/caracal-dev/caracal/policy"
	"github.com/tidwall/gjson"
)

// badToolName answers a tools/call whose tool name is missing or unusable,
// or returns nil.
func badToolName(m message) []byte {
	name := gjson.GetBytes(m.raw, "params.name")
	if name.Type != gjson.String {
		return errorResponse(m.id, codeInvalidParams, "Invalid params: tools/call needs a tool name")
	}
	if why := checkToolName(name.Str); why != "" {
		return errorResponse(m.id, codeInvalidParams, "Invalid params: "+why)
	}
	return nil
}

// toolsCall prices, checks and reserves a tools/call before relaying it.
func (s *Session) toolsCall(ctx context.Context, m message) {
	defer s.admitted(m.id)
	if s.cancelledEarly(m.id) {
		s.log.Info("tools/call cancelled by the host before it was admitted; not relayed", "id", m.id)
		s.reply(cancelledEarlyResult(m.id))
		return
	}
	params := gjson.GetManyBytes(m.raw, "params.name", "params.arguments", "params._meta.progressToken")
	name := params[0].Str // checked by badToolName before admission
	u, tool := s.ups[0], name
	if s.gateway {
		server, t, ok := strings.Cut(name, "__")
		u = s.byName[server]
		if !ok || u == nil || t == "" {
			s.reply(errorResponse(m.id, codeInvalidParams, "Unknown tool: "+name))
			return
		}
		tool = t
	}
	s.ensureNamed(ctx, u, envelope(m.raw))
	if u.spec.Trusted {
		s.learnDeclared(ctx, u)
	}
	resource := metering.Resource(u.resName(), tool)
	var args []byte
	if params[1].Exists() {
		args = []byte(params[1].Raw)
	}
	if ex := s.resume(u, tool, m.raw); ex != nil {
		s.relayRound(ctx, m, ex, tool)
		return
	}
	ticket, dec := s.p.opts.Meter.Begin(ctx, interpose.Call{
		AgentID:   s.agentID,
		Resource:  resource,
		Operation: "tools/call",
		Upstream:  u.resName(),
		Arguments: args,
		Declared:  u.declaredPrice(tool),
	})
	if ticket == nil {
		if dec.Code == policy.CodeNotAllowed {
			s.reply(errorResponse(m.id, codeInvalidParams, "Unknown tool: "+name))
			return
		}
		s.reply(resultResponse(m.id, metering.RefusalResult(resource, dec)))
		return
	}
	p := &pending{id: m.id, method: m.method, up: u, ticket: ticket, token: params[2].Raw, tool: tool, rounds: 1, callKey: callKey(tool, m.raw)}
	s.admitCall(ctx, m, p, tool)
}

// admitCall tracks an admitted tools/call (a first round, or a later round
// of an MRTR exchange) and relays it.
func (s *Session) admitCall(ctx context.Context, m message, p *pending, tool string) {
	now := time.Now()
	if p.hardStop.IsZero() {
		p.hardStop = now.Add(s.p.opts.MaxCallDuration)
	}
	s.mu.Lock()
	if _, dup := s.pending[p.id]; dup {
		s.mu.Unlock()
		s.release(p, "duplicate request id")
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
		return
	}
	if s.admitting[p.id] {
		s.mu.Unlock()
		s.log.Info("tools/call cancelled by the host while it was admitted; not relayed", "id", p.id)
		s.release(p, "cancelled by the host before it was relayed")
		s.reply(cancelledEarlyResult(p.id))
		return
	}
	p.timer = time.AfterFunc(min(s.p.opts.CallTimeout, max(p.hardStop.Sub(now), 0)), func() { s.callTimedOut(p) })
	s.pending[p.id] = p
	if p.token != "" {
		s.byToken[p.token] = p
	}
	s.mu.Unlock()
	msg := m.raw
	if s.gateway {
		tb, _ := json.Marshal(tool)
		var err error
		if msg, err = setPath(m.raw, []string{"params", "name"}, tb); err != nil {
			s.untrack(p)
			s.release(p, "could not rewrite the request")
			s.reply(errorResponse(m.id, codeInvalidParams, "Invalid params: "+err.Error()))
			return
		}
	}
	s.forward(ctx, p, msg)
}

// cancelledEarlyResult answers a call the host cancelled before it was
// relayed. The host ignores it (it gave up on the call), but an HTTP POST
// waiting for the call's response is closed by it.
func cancelledEarlyResult(id string) []byte {
	return toolErrorResult(id, "The host cancelled this call before Caracal relayed it, so it was not made and not charged.", map[string]any{"code": "cancelled", "reason": "cancelled by the host before it was relayed"})
}

// closingResult answers a call that arrived while its session was closing.
func closingResult(id string) []byte {
	return toolErrorResult(id, "Caracal is closing this session, so the call was not made and not charged.", map[string]any{"code": "closing", "reason": "the session was closing"})
}

// settleTimeout bounds one store operation off the host's path: a
// settlement, a release, or pricing a tools/list. 30 s is far beyond a
// healthy commit; a store slower than that is failing, and a reservation
// left unsettled expires and is settled by the sweep.
const settleTimeout = 30 * time.Second

func (s *Session) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.ctx), settleTimeout)
}

func (s *Session) async(fn func(ctx context.Context)) {
	s.settles.Add(1)
	go func() {
		defer s.settles.Done()
		ctx, cancel := s.settleCtx()
		defer cancel()
		fn(ctx)
	}()
}

func (s *Session) release(p *pending, reason string) {
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Release(ctx, p.ticket, reason); err != nil {
			s.log.Error("release failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}

func (s *Session) unconfirmed(p *pending, reason string) {
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Unconfirmed(ctx, p.ticket, reason); err != nil {
			s.log.Error("unconfirmed settlement failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}

// finishCall settles a tools/call from its response.
func (s *Session) finishCall(p *pending, raw []byte) {
	res := gjson.GetManyBytes(raw, "error.code", "error.message", "result.isError")
	if res[0].Exists() {
		s.release(p, fmt.Sprintf("upstream answered with JSON-RPC error %s: %s", res[0].Raw, res[1].String()))
		return
	}
	if p.declined {
		s.release(p, fmt.Sprintf("the host declined the tool's request for input; the exchange ended after %d rounds without the tool's work", p.rounds))
		return
	}
	r := interpose.Result{ToolError: res[2].Bool(), Note: roundsNote(p.rounds), Background: true}
	s.async(func(ctx context.Context) {
		if _, err := s.p.opts.Meter.Settle(ctx, p.ticket, r); err != nil {
			s.log.Error("settle failed", "request", p.ticket.RequestID, "err", err)
		}
	})
}
