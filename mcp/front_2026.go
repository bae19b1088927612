package mcp

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// Revision 2026-07-28 over the HTTP front: requests carry no
// Mcp-Session-Id and open no session with initialize. Each is
// authenticated by its own Bearer key, like every request, and relayed
// through one Session per agent, opened on the agent's first 2026 request
// and closed like any session once idle. Hosts choose their request ids
// independently, so the front renames each request's id to one unique in
// the agent's session and gives the host's id back on the response.

// isModernPost says whether a POST without a session id carries 2026
// requests (and notifications) only.
func isModernPost(r *http.Request, msgs []message) bool {
	if r.Header.Get("Mcp-Session-Id") != "" || len(msgs) == 0 {
		return false
	}
	modern := false
	for _, m := range msgs {
		switch {
		case m.kind == kindResponse:
			return false
		case isModern(requestRevision(m.raw)):
			modern = true
		case m.kind == kindRequest:
			return false
		}
	}
	return modern
}

// agentSessionKey names an agent's session for session-less 2026 traffic
// in the front's session table.
func agentSessionKey(agentID string) string { return "caracal-2026-" + agentID }

// agentSession returns the agent's session for 2026 traffic, opening it
// on first use; it writes the error response if it cannot.
func (f *HTTPFront) agentSession(w http.ResponseWriter, r *http.Request, agentID string) (*httpSession, bool) {
	key := agentSessionKey(agentID)
	f.modernMu.Lock()
	defer f.modernMu.Unlock()
	f.mu.Lock()
	h := f.sessions[key]
	f.mu.Unlock()
	if h != nil {
		h.touch()
		return h, true
	}
	if !f.admit(w) {
		return nil, false
	}
	defer f.admitted()
	h = &httpSession{id: key, agentID: agentID, waiters: map[string]*stream{}, lastUsed: time.Now()}
	s, err := f.p.NewSession(r.Context(), agentID, h.toHost)
	if err != nil {
		jsonError(w, http.StatusBadGateway, codeInternalError, "Caracal could not start the upstream: "+err.Error())
		return nil, false
	}
	h.s = s
	f.mu.Lock()
	f.sessions[key] = h
	f.mu.Unlock()
	return h, true
}

// remapIDs gives each request an id unique in the agent's session and
// points cancellations at it; remap maps the new ids back to the host's.
func (h *httpSession) remapIDs(msgs []message) (out []message, remap map[string]string) {
	remap = map[string]string{}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byHost == nil {
		h.byHost = map[string]string{}
	}
	for _, m := range msgs {
		switch {
		case m.kind == kindRequest:
			h.seq++
			nid := `"h26-` + strconv.FormatUint(h.seq, 10) + `"`
			raw, err := setPath(m.raw, []string{"id"}, []byte(nid))
			if err != nil {
				continue
			}
			remap[nid] = m.id
			if len(h.byHost) > 4096 {
				h.byHost = map[string]string{}
			}
			h.byHost[m.id] = nid
			m.raw, m.id = raw, nid
		case m.method == "notifications/cancelled":
			rid := canonicalID(gjson.GetBytes(m.raw, "params.requestId"))
			if nid, ok := h.byHost[rid]; ok {
				if raw, err := setPath(m.raw, []string{"params", "requestId"}, []byte(nid)); err == nil {
					m.raw = raw
				}
			}
		}
		out = append(out, m)
	}
	return out, remap
}

// setRemap attaches a POST's id map to its stream, before any of its
// requests is relayed.
func (h *httpSession) setRemap(st *stream, remap map[string]string) {
	if remap == nil {
		return
	}
	h.mu.Lock()
	st.ids = remap
	h.mu.Unlock()
}

// hostID is the host's own id for a response on st; h.mu is held.
func (st *stream) hostID(msg []byte, id string) []byte {
	if st == nil || st.ids == nil {
		return msg
	}
	orig, ok := st.ids[id]
	if !ok {
		return msg
	}
	out, err := setPath(msg, []string{"id"}, []byte(orig))
	if err != nil {
		return msg
	}
	return out
}

// hostIDs are the host's ids of a POST's requests.
func hostIDs(ids []string, remap map[string]string) []string {
	if remap == nil {
		return ids
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = remap[id]
	}
	return out
}
