package mcp

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Protocol revision 2026-07-28 drops the initialize handshake: every request
// carries the protocol version, client info and capabilities in its
// params._meta, and every result names its kind in resultType. Caracal reads
// the revision per request, so one relay serves hosts of every revision.
const (
	// rev2026 is the first revision without a handshake.
	rev2026 = "2026-07-28"

	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaServerInfo         = "io.modelcontextprotocol/serverInfo"
	metaLogLevel           = "io.modelcontextprotocol/logLevel"
)

// priceFreshness is how long the engine may serve a price it read: its
// price cache keeps a rule up to one second. A priced tools/list may be
// cached by the host no longer than that, or it would show stale prices.
const priceFreshness = time.Second

// requestRevision is the protocol revision a request declares in its
// _meta envelope, or "" for a request of an earlier revision (those
// negotiate theirs once, in initialize).
func requestRevision(raw []byte) string {
	return gjson.GetBytes(raw, "params._meta."+gjsonKey(metaProtocolVersion)).String()
}

// isModern says whether rev is 2026-07-28 or later. Revisions are dates,
// so they compare as strings.
func isModern(rev string) bool {
	return len(rev) == len(rev2026) && rev >= rev2026
}

// envelope is the part of a host's request _meta that every 2026 request
// must carry: Caracal's own requests upstream copy it, so the upstream sees
// the same revision, client and capabilities as the host's requests.
func envelope(raw []byte) []byte {
	meta := gjson.GetBytes(raw, "params._meta")
	if !meta.IsObject() || !isModern(meta.Get(gjsonKey(metaProtocolVersion)).String()) {
		return nil
	}
	out := []byte(`{}`)
	for _, k := range []string{metaProtocolVersion, metaClientInfo, metaClientCapabilities, metaLogLevel} {
		if v := meta.Get(gjsonKey(k)); v.Exists() {
			out, _ = setPath(out, []string{gjsonKey(k)}, []byte(v.Raw))
		}
	}
	return out
}

// withEnvelope adds env as params._meta of Caracal's own request params
// (nil params stand for {}). A nil env leaves params alone.
func withEnvelope(params, env []byte) []byte {
	if env == nil {
		return params
	}
	if len(params) == 0 {
		params = []byte(`{}`)
	}
	out := params
	gjson.ParseBytes(env).ForEach(func(k, v gjson.Result) bool {
		if o, err := setPath(out, []string{"_meta", gjsonKey(k.Str)}, []byte(v.Raw)); err == nil {
			out = o
		}
		return true
	})
	return out
}

// markComplete adds resultType "complete" to a success response Caracal
// wrote itself, for a host speaking 2026-07-28, which rejects a result
// without it. A result that already names its type is left alone. A list
// Caracal merged itself (gateway) gets the cache hints the revision
// requires: private, and never longer-lived than prices stay fresh (tools)
// or at all (the rest, whose upstreams' hints were not kept).
func markComplete(resp []byte) []byte {
	res := gjson.GetBytes(resp, "result")
	if !res.IsObject() || res.Get("resultType").Exists() {
		return resp
	}
	out, err := setPath(resp, []string{"result", "resultType"}, []byte(`"complete"`))
	if err != nil {
		return resp
	}
	if res.Get("cacheScope").Exists() {
		return out
	}
	switch {
	case res.Get("tools").IsArray():
		return cacheHints(out)
	case res.Get("prompts").IsArray(), res.Get("resources").IsArray(), res.Get("resourceTemplates").IsArray():
		if o, err := setPath(out, []string{"result", "ttlMs"}, []byte(`0`)); err == nil {
			if o, err = setPath(o, []string{"result", "cacheScope"}, []byte(`"private"`)); err == nil {
				return o
			}
		}
	}
	return out
}

// modernIDs remembers the host requests that declared 2026-07-28, until
// they are answered, so that answers Caracal writes itself get the shape
// that revision requires. s.mu is held.
func (s *Session) noteRevision(m message) {
	if m.kind != kindRequest || !isModern(requestRevision(m.raw)) {
		return
	}
	if s.modern == nil {
		s.modern = map[string]time.Time{}
	}
	now := time.Now()
	if len(s.modern) > 4096 {
		for k, t := range s.modern {
			if now.Sub(t) > time.Hour {
				delete(s.modern, k)
			}
		}
	}
	s.modern[m.id] = now
	if env := envelope(m.raw); env != nil {
		s.env = env
	}
}

// shapeReply gives a response to a 2026 request the fields that revision
// requires, and forgets the request. Responses relayed from an upstream
// already carry them and pass unchanged.
func (s *Session) shapeReply(msg []byte) []byte {
	if len(msg) == 0 || msg[0] != '{' {
		return msg
	}
	s.mu.Lock()
	none := len(s.modern) == 0
	s.mu.Unlock()
	if none {
		return msg // a 2025 host: nothing to look up
	}
	m, ok := parseMessage(msg)
	if !ok || m.kind != kindResponse {
		return msg
	}
	s.mu.Lock()
	_, modern := s.modern[m.id]
	delete(s.modern, m.id)
	s.mu.Unlock()
	if !modern {
		return msg
	}
	return markComplete(msg)
}

// hostEnvelope is the envelope of the host's latest 2026 request, or nil
// while the host speaks an earlier revision.
func (s *Session) hostEnvelope() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env
}

// learnServerInfo names an upstream from the serverInfo a 2026 server
// stamps into every result's _meta.
func learnServerInfo(u *upstream, resp []byte) {
	if u.hasName() {
		return
	}
	if n := gjson.GetBytes(resp, "result._meta."+gjsonKey(metaServerInfo)+".name"); n.Type == gjson.String && n.Str != "" {
		u.setName(SanitizeName(n.Str))
	}
}

func (u *upstream) hasName() bool {
	select {
	case <-u.named:
		return true
	default:
		return false
	}
}

// discoverRetry is how long a failed server/discover is remembered, so a
// server that does not answer it is not asked again on every call.
const discoverRetry = time.Minute

// ensureNamed makes sure the upstream's resource name is known before a
// call is priced. A 2025 host's initialize names it; a 2026 host sends no
// initialize, so Caracal asks server/discover itself, with the host's
// envelope, and never waits for a handshake that will not come.
func (s *Session) ensureNamed(ctx context.Context, u *upstream, env []byte) {
	if u.hasName() {
		return
	}
	if env == nil {
		u.waitNamed(ctx)
		return
	}
	u.mu.Lock()
	if !u.discoverAt.IsZero() && time.Since(u.discoverAt) < discoverRetry {
		u.mu.Unlock()
		return // a discovery failed a moment ago: priced as "upstream"
	}
	if ch := u.discovering; ch != nil {
		u.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	u.discovering = ch
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.discovering = nil
		u.mu.Unlock()
		close(ch)
	}()
	cctx, cancel := context.WithTimeout(ctx, gatewayTimeout)
	defer cancel()
	resp, err := s.request(cctx, u, "server/discover", withEnvelope(nil, env))
	if err == nil {
		learnServerInfo(u, resp)
	}
	if !u.hasName() {
		u.mu.Lock()
		u.discoverAt = time.Now()
		u.mu.Unlock()
		s.log.Warn("the upstream did not say its name in server/discover; its tools are priced as mcp:upstream/…; set --name", "err", err)
	}
}

// cacheHints marks a priced tools/list result for a 2026 host: it holds
// one agent's allowlist and prices, so no shared cache may keep it
// (cacheScope "private"), and not longer than prices stay fresh.
func cacheHints(resp []byte) []byte {
	ttl := priceFreshness.Milliseconds()
	if v := gjson.GetBytes(resp, "result.ttlMs"); v.Type == gjson.Number && v.Int() >= 0 && v.Int() < ttl {
		ttl = v.Int()
	}
	out, err := setPath(resp, []string{"result", "ttlMs"}, []byte(strconv.FormatInt(ttl, 10)))
	if err != nil {
		return resp
	}
	if out, err = setPath(out, []string{"result", "cacheScope"}, []byte(`"private"`)); err != nil {
		return resp
	}
	return out
}

// nameHeaderField is the params field a 2026 request's Mcp-Name header
// mirrors, by method.
var nameHeaderField = map[string]string{
	"tools/call":     "name",
	"prompts/get":    "name",
	"resources/read": "uri",
	"tasks/get":      "taskId",
	"tasks/update":   "taskId",
	"tasks/cancel":   "taskId",
}

// modernHeaders sets the standard headers a 2026 request carries over
// Streamable HTTP, derived from its body: MCP-Protocol-Version, Mcp-Method
// and, for methods that name a tool, prompt, resource or task, Mcp-Name.
// It reports whether msg is such a request.
func modernHeaders(h http.Header, m message) bool {
	if m.kind != kindRequest {
		return false
	}
	rev := requestRevision(m.raw)
	if !isModern(rev) {
		return false
	}
	h.Set("MCP-Protocol-Version", rev)
	h.Set("Mcp-Method", m.method)
	if f, ok := nameHeaderField[m.method]; ok {
		if v := gjson.GetBytes(m.raw, "params."+f); v.Type == gjson.String {
			h.Set("Mcp-Name", headerValue(v.Str))
		}
	}
	return true
}

// headerValue encodes a value for an MCP header: as is when it is plain
// printable ASCII, else in the =?base64?…?= form the revision defines.
func headerValue(s string) string {
	plain := s != "" && s == strings.TrimSpace(s) && !(strings.HasPrefix(s, "=?base64?") && strings.HasSuffix(s, "?="))
	for i := 0; plain && i < len(s); i++ {
		if c := s[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
			plain = false
		}
	}
	if plain {
		return s
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
}
