package mcp

import (
	"context"
	"encoding/json"
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
		var wg sync.WaitGroup
		for i, u := range s.ups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
				defer cancel()
				raw, err := s.request(cctx, u, "server/discover", withEnvelope(nil, env))
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
		for i, raw := range results {
			if raw == nil {
				continue
			}
			u := s.ups[i]
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
