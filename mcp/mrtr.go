package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/interpose"
)

// Multi Round-Trip Requests (protocol revision 2026-07-28): a tools/call
// may be answered with resultType "input_required", asking the host for
// input (elicitation, sampling, roots); the host then sends the same call
// again, as a new request, with inputResponses and the requestState the
// server handed out. The rounds are one call: the first round's reservation
// is held across them and the call is charged once, when a round completes.

// exchange is an MRTR call between rounds: the server asked for input and
// the host has not retried yet.
type exchange struct {
	ticket *interpose.Ticket
	up     *upstream
	key    string
	rounds int
	timer  *time.Timer
	// hardStop is the first round's: --max-call-duration bounds the whole
	// exchange, so the reservation, which outlasts the longest call, holds
	// until the exchange ends.
	hardStop time.Time
}

// callKey is a call's identity for matching a retry that carries no
// requestState: the tool and its arguments, compacted.
func callKey(tool string, raw []byte) string {
	args := gjson.GetBytes(raw, "params.arguments").Raw
	var b bytes.Buffer
	if json.Compact(&b, []byte(args)) != nil {
		b.Reset()
		b.WriteString(args)
	}
	return "a\x00" + tool + "\x00" + b.String()
}

// stateKey matches a retry by the requestState the server handed out,
// which the host echoes unchanged; it is scoped to the tool so that a
// state cannot move a reservation to another tool.
func stateKey(tool, state string) string { return "s\x00" + tool + "\x00" + state }

// roundsNote is the ledger note of a call that took more than one round.
func roundsNote(rounds int) string {
	if rounds <= 1 {
		return ""
	}
	return fmt.Sprintf("mrtr: %d rounds", rounds)
}

// holdRound keeps an input_required round's reservation for the host's
// retry instead of settling it, and reports whether it did. A price rule
// with charge_rounds settles every round as a call of its own.
func (s *Session) holdRound(p *pending, raw []byte) bool {
	res := gjson.GetBytes(raw, "result")
	if res.Get("resultType").String() != "input_required" {
		return false
	}
	if r := p.ticket.Quote.Rule; r != nil && r.ChargeRounds {
		return false
	}
	key := p.callKey
	if st := res.Get("requestState"); st.Type == gjson.String {
		key = stateKey(p.tool, st.Str)
	}
	ex := &exchange{ticket: p.ticket, up: p.up, key: key, rounds: p.rounds, hardStop: p.hardStop}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.release(p, "the host disconnected during a multi-round call")
		return true
	}
	if s.exchanges == nil {
		s.exchanges = map[string]*exchange{}
	}
	if old := s.exchanges[key]; old != nil {
		// The same call asked twice without a retry between: the older
		// exchange can no longer be told apart and ends released.
		old.timer.Stop()
		s.mu.Unlock()
		s.releaseExchange(old, "superseded by another round of the same call")
		s.mu.Lock()
	}
	s.exchanges[key] = ex
	// A host that never retries abandons the exchange; it ends released
	// once it has waited as long as a call may go without an answer, or
	// when the whole exchange reaches --max-call-duration.
	wait := min(s.p.opts.CallTimeout, max(time.Until(ex.hardStop), 0))
	ex.timer = time.AfterFunc(wait, func() {
		s.mu.Lock()
		if s.exchanges[key] != ex {
			s.mu.Unlock()
			return
		}
		delete(s.exchanges, key)
		s.mu.Unlock()
		s.log.Info("multi-round tools/call abandoned by the host", "request", ex.ticket.RequestID, "rounds", ex.rounds)
		s.releaseExchange(ex, fmt.Sprintf("the host did not retry the multi-round call within %s; abandoned after %d rounds", wait.Round(time.Millisecond), ex.rounds))
	})
	s.mu.Unlock()
	return true
}

// resume takes the exchange a retried tools/call continues, if any.
func (s *Session) resume(u *upstream, tool string, raw []byte) *exchange {
	params := gjson.GetManyBytes(raw, "params.requestState", "params.inputResponses")
	var key string
	switch {
	case params[0].Type == gjson.String:
		key = stateKey(tool, params[0].Str)
	case params[1].Exists():
		key = callKey(tool, raw)
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := s.exchanges[key]
	if ex == nil || ex.up != u {
		return nil
	}
	delete(s.exchanges, key)
	ex.timer.Stop()
	return ex
}

// relayRound relays a later round of an MRTR exchange under the
// exchange's reservation: it was admitted with the first round and is not
// priced, checked or reserved again.
func (s *Session) relayRound(ctx context.Context, m message, ex *exchange, tool string) {
	p := &pending{
		id: m.id, method: m.method, up: ex.up, ticket: ex.ticket, hardStop: ex.hardStop,
		token:  gjson.GetBytes(m.raw, "params._meta.progressToken").Raw,
		tool:   tool,
		rounds: ex.rounds + 1, callKey: callKey(tool, m.raw),
		declined: declined(gjson.GetBytes(m.raw, "params.inputResponses")),
	}
	s.admitCall(ctx, m, p, tool)
}

// declined says whether the host declined or cancelled any of the input
// the server asked for (an elicitation answered "decline" or "cancel").
func declined(responses gjson.Result) bool {
	out := false
	responses.ForEach(func(_, v gjson.Result) bool {
		switch v.Get("action").String() {
		case "decline", "cancel":
			out = true
			return false
		}
		return true
	})
	return out
}

func (s *Session) releaseExchange(ex *exchange, reason string) {
	s.release(&pending{ticket: ex.ticket}, reason)
}

// dropExchanges releases every exchange still waiting for a retry: the
// host that could retry is gone.
func (s *Session) dropExchanges() {
	s.mu.Lock()
	exs := s.exchanges
	s.exchanges = nil
	s.mu.Unlock()
	for _, ex := range exs {
		ex.timer.Stop()
		s.releaseExchange(ex, fmt.Sprintf("the host disconnected during a multi-round call, after %d rounds", ex.rounds))
	}
}

// isModernID says whether the host request with this id declared
// revision 2026-07-28 or later.
func (s *Session) isModernID(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.modern[id]
	return ok
}
