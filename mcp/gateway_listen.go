package mcp

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/tidwall/gjson"
)

// subscriptions/listen through the gateway (revision 2026-07-28). A
// subscription's id is its listen request's id, and the server stamps it
// into every notification it sends for it. The gateway opens one upstream
// subscription, under an id of its own, on every upstream that answered
// server/discover, and stamps the host's id back onto what they send: one
// merged acknowledgement once every upstream has acknowledged, each
// upstream's change notifications as they come, and the host's result once
// every upstream has ended its subscription.

const metaSubscriptionID = "io.modelcontextprotocol/subscriptionId"

// listenRoutes maps the gateway's upstream subscriptions to the host's.
type listenRoutes struct {
	mu     sync.Mutex
	byUp   map[string]*upSub      // the gateway's upstream listen id → its subscription
	byHost map[string]*hostListen // the host's listen id → its subscription
}

type upSub struct {
	up    *upstream
	id    string // the gateway's listen id upstream (JSON text)
	host  *hostListen
	acked bool
	ended bool
}

type hostListen struct {
	id     string // the host's listen id (JSON text)
	subs   []*upSub
	filter map[string]any // the merged acknowledged filter
	acked  bool           // the merged acknowledgement was sent
}

// gatewayListen opens the host's subscription on every upstream that
// serves revision 2026-07-28.
func (s *Session) gatewayListen(ctx context.Context, m message, d *gatewayDiscovery) {
	r := &d.listen
	h := &hostListen{id: m.id, filter: map[string]any{}}
	r.mu.Lock()
	if r.byHost == nil {
		r.byUp, r.byHost = map[string]*upSub{}, map[string]*hostListen{}
	}
	if _, dup := r.byHost[m.id]; dup {
		r.mu.Unlock()
		s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: a subscription with this id is already open"))
		return
	}
	for _, u := range s.ups {
		if !d.modern[u] {
			continue
		}
		sub := &upSub{up: u, id: `"caracal-l-` + strconv.FormatUint(s.seq.Add(1), 10) + `"`, host: h}
		h.subs = append(h.subs, sub)
		r.byUp[sub.id] = sub
	}
	if len(h.subs) == 0 {
		r.mu.Unlock()
		s.reply(errorResponse(m.id, codeMethodNotFound, "Method not found: no upstream server of the Caracal gateway serves subscriptions/listen"))
		return
	}
	r.byHost[m.id] = h
	subs := slices.Clone(h.subs)
	r.mu.Unlock()
	for _, sub := range subs {
		out, err := setPath(m.raw, []string{"id"}, []byte(sub.id))
		if err != nil {
			s.reply(errorResponse(m.id, codeInvalidRequest, "Invalid Request: "+err.Error()))
			return
		}
		s.send(ctx, sub.up, out)
	}
}

// listenNotification stamps the host's subscription id onto a notification
// an upstream sent for one of the gateway's subscriptions, merging the
// acknowledgements into one. It reports whether m was handled.
func (s *Session) listenNotification(u *upstream, m message) bool {
	sid := gjson.GetBytes(m.raw, "params._meta."+gjsonKey(metaSubscriptionID))
	if !sid.Exists() {
		return false
	}
	r := &s.gwDiscovery.listen
	r.mu.Lock()
	sub := r.byUp[canonicalID(sid)]
	if sub == nil || sub.up != u {
		r.mu.Unlock()
		return false // not the gateway's: relayed unchanged
	}
	h := sub.host
	if m.method == "notifications/subscriptions/acknowledged" {
		if !sub.acked {
			sub.acked = true
			mergeFilter(h.filter, gjson.GetBytes(m.raw, "params.notifications"))
		}
		ack := s.mergedAck(h)
		r.mu.Unlock()
		if ack != nil {
			s.reply(ack)
		}
		return true
	}
	r.mu.Unlock()
	out, err := setPath(m.raw, []string{"params", "_meta", gjsonKey(metaSubscriptionID)}, []byte(h.id))
	if err == nil {
		s.reply(out)
	}
	return true
}

// mergedAck returns the host's acknowledgement once every upstream has
// acknowledged or ended its subscription, and nil before then or after it
// was sent. r.mu is held.
func (s *Session) mergedAck(h *hostListen) []byte {
	if h.acked {
		return nil
	}
	for _, sub := range h.subs {
		if !sub.acked && !sub.ended {
			return nil
		}
	}
	h.acked = true
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
		"params": map[string]any{"notifications": h.filter, "_meta": map[string]json.RawMessage{metaSubscriptionID: json.RawMessage(h.id)}}})
	return b
}

// mergeFilter adds one upstream's honoured filter to the merged one: a
// change type is honoured if any upstream honours it, and the resource
// subscriptions are the union of theirs.
func mergeFilter(dst map[string]any, f gjson.Result) {
	f.ForEach(func(k, v gjson.Result) bool {
		switch {
		case v.IsBool():
			if v.Bool() {
				dst[k.String()] = true
			}
		case v.IsArray():
			have, _ := dst[k.String()].([]string)
			for _, e := range v.Array() {
				if !slices.Contains(have, e.String()) {
					have = append(have, e.String())
				}
			}
			dst[k.String()] = have
		}
		return true
	})
}

// listenResponse handles an upstream's answer to one of the gateway's
// listen requests: its subscription has ended (gracefully, or refused
// with an error). When every upstream's has ended, so does the host's.
// It reports whether m was handled.
func (s *Session) listenResponse(u *upstream, m message) bool {
	r := &s.gwDiscovery.listen
	r.mu.Lock()
	sub := r.byUp[m.id]
	if sub == nil || sub.up != u {
		r.mu.Unlock()
		return false
	}
	delete(r.byUp, m.id)
	sub.ended = true
	if e := gjson.GetBytes(m.raw, "error"); e.Exists() {
		s.log.Warn("gateway: an upstream refused subscriptions/listen", "upstream", u.resName(), "error", e.Raw)
	}
	h := sub.host
	ack := s.mergedAck(h)
	for _, o := range h.subs {
		if !o.ended {
			r.mu.Unlock()
			if ack != nil {
				s.reply(ack)
			}
			return true
		}
	}
	_, open := r.byHost[h.id]
	delete(r.byHost, h.id)
	r.mu.Unlock()
	if ack != nil {
		s.reply(ack)
	}
	if open {
		b, _ := json.Marshal(map[string]any{"resultType": "complete", "_meta": map[string]json.RawMessage{metaSubscriptionID: json.RawMessage(h.id)}})
		s.reply(resultResponse(h.id, b))
	}
	return true
}

// cancelListen closes the host's subscription id on every upstream, as
// the host's notifications/cancelled asks. It reports whether id named an
// open subscription.
func (s *Session) cancelListen(id string, raw []byte) bool {
	r := &s.gwDiscovery.listen
	r.mu.Lock()
	h := r.byHost[id]
	if h == nil {
		r.mu.Unlock()
		return false
	}
	delete(r.byHost, id)
	var open []*upSub
	for _, sub := range h.subs {
		if !sub.ended {
			open = append(open, sub)
			delete(r.byUp, sub.id)
		}
	}
	r.mu.Unlock()
	for _, sub := range open {
		if out, err := setPath(raw, []string{"params", "requestId"}, []byte(sub.id)); err == nil {
			s.sendAside(sub.up, out)
		}
	}
	return true
}
