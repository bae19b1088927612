package mcp

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
)

// gatewayDiscovery is what the gateway learned from its upstreams'
// server/discover results, for hosts of revision 2026-07-28, which send no
// initialize.
type gatewayDiscovery struct {
	once         sync.Once
	caps         map[string]map[string]json.RawMessage
	instructions []string
	ok           int
	// modern marks the upstreams that answered server/discover: only they
	// serve subscriptions/listen.
	modern map[*upstream]bool
	listen listenRoutes
}

// gatewayModern serves the gateway requests of a 2026 host that need
// what initialize used to tell: it learns the upstreams' capabilities with
// server/discover (once per session, with the host's envelope) and answers
// server/discover itself. It reports whether it answered m.
func (s *Session) gatewayModern(ctx context.Context, m message) bool {
	env := envelope(m.raw)
	if env == nil {
		return false
	}
	d := s.gatewayDiscover(ctx, env)
	if m.method == "subscriptions/listen" {
		s.gatewayListen(ctx, m, d)
		return true
	}
	if m.method != "server/discover" {
		return false
	}
	if d.ok == 0 {
		s.reply(errorResponse(m.id, codeInternalError, "no upstream server answered server/discover"))
		return true
	}
	out := map[string]any{
		"resultType":        "complete",
		"supportedVersions": []string{rev2026},
		"capabilities":      d.caps,
		"ttlMs":             0,
		"cacheScope":        "private",
		"_meta":             map[string]any{metaServerInfo: map[string]string{"name": "caracal", "version": s.p.opts.Version}},
	}
	if len(d.instructions) > 0 {
		out["instructions"] = strings.Join(d.instructions, "\n\n")
	}
	b, _ := json.Marshal(out)
	s.reply(resultResponse(m.id, b))
	return true
}

// gatewayDiscover asks every upstream server/discover once per session
// and records each one's capabilities, which route lists, resource reads
// and logging as initialize's did. An upstream that fails is logged and
// left without capabilities; it is not asked again on every request.
func (s *Session) gatewayDiscover(ctx context.Context, env []byte) *gatewayDiscovery {
	d := &s.gwDiscovery
	d.once.Do(func() {
		d.caps = map[string]map[string]json.RawMessage{}
		results := make([][]byte, len(s.ups))
		modern := make([]bool, len(s.ups))
		var wg sync.WaitGroup
		for i, u := range s.ups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
				defer cancel()
				raw, err := s.request(cctx, u, "server/discover", withEnvelope(nil, env))
				modern[i] = err == nil
				if err != nil {
					// An upstream of an earlier revision: the gateway opens
					// its session itself, as the host's initialize would.
					raw, err = s.initLegacy(cctx, u, env)
				}
				if err != nil {
					s.log.Error("gateway: the upstream answered neither server/discover nor initialize", "upstream", u.resName(), "err", err)
					return
				}
				results[i] = raw
			}()
		}
		wg.Wait()
		d.modern = map[*upstream]bool{}
		for i, raw := range results {
			if raw == nil {
				continue
			}
			u := s.ups[i]
			d.modern[u] = modern[i]
			result := gjson.GetBytes(raw, "result")
			u.mu.Lock()
			u.caps = result.Get("capabilities")
			u.mu.Unlock()
			mergeCaps(d.caps, result.Get("capabilities"))
			if in := result.Get("instructions").String(); in != "" {
				d.instructions = append(d.instructions, u.resName()+": "+in)
			}
			d.ok++
		}
	})
	return d
}

// legacyRevision is the revision the gateway asks of an upstream that
// does not speak 2026-07-28.
const legacyRevision = "2025-11-25"

// initLegacy opens a 2025 session with an upstream for a 2026 host, with
// the client info and capabilities of the host's envelope. The host's
// later requests reach it with their envelope, which earlier revisions
// ignore as unknown _meta; its results get resultType from the relay.
func (s *Session) initLegacy(ctx context.Context, u *upstream, env []byte) ([]byte, error) {
	e := gjson.ParseBytes(env)
	params := map[string]any{
		"protocolVersion": legacyRevision,
		"capabilities":    json.RawMessage(orEmpty(e.Get(gjsonKey(metaClientCapabilities)).Raw)),
		"clientInfo":      json.RawMessage(orEmpty(e.Get(gjsonKey(metaClientInfo)).Raw)),
	}
	b, _ := json.Marshal(params)
	raw, err := s.request(ctx, u, "initialize", b)
	if err != nil {
		return nil, err
	}
	if err := u.conn.send(ctx, notificationBytes("notifications/initialized", nil)); err != nil {
		return nil, err
	}
	return raw, nil
}

func orEmpty(raw string) string {
	if raw == "" {
		return "{}"
	}
	return raw
}

// codeNoHostChannel answers an upstream's request that a 2026 host cannot
// receive. It is the JSON-RPC "method not found" code: from the upstream's
// side, the client does not serve that method.
const codeNoHostChannel = codeMethodNotFound

// refuseToModernHost answers, in place of a 2026 host, a request an
// upstream of an earlier revision sends to its client (elicitation/create,
// sampling/createMessage, roots/list, ping). Revision 2026-07-28 has no
// server-to-client requests, so the host could never answer and the
// upstream's tool would wait until its timeout. The upstream gets a
// JSON-RPC error naming why at once; its SDK ends the tool call with an
// error result carrying that message, which the host reads. It reports
// whether m was answered.
func (s *Session) refuseToModernHost(u *upstream, m message) bool {
	if s.hostEnvelope() == nil {
		return false // a 2025 host: the request is relayed to it
	}
	msg := "caracal gateway: the host speaks MCP " + rev2026 + ", which has no server-to-client requests, so " +
		m.method + " from upstream " + strconv.Quote(u.resName()) + " cannot reach it"
	s.log.Warn("gateway: refused a server-to-client request for a 2026 host", "upstream", u.resName(), "method", m.method)
	s.sendAside(u, errorResponse(m.id, codeNoHostChannel, msg))
	return true
}
