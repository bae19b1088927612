package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
	"github.com/tidwall/gjson"
)

func (f *HTTPFront) post(w http.ResponseWriter, r *http.Request, agentID string) {
	max := f.p.opts.MaxMessageSize
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		jsonError(w, http.StatusBadRequest, codeParseError, "Parse error: "+err.Error())
		return
	}
	if int64(len(body)) > max {
		e := &TooLargeError{Size: int64(len(body)), Max: max}
		jsonError(w, http.StatusRequestEntityTooLarge, codeInvalidRequest, e.Error())
		return
	}
	if err := jsoncheck.Check(body, true); err != nil {
		id, code, msg := rejectJSON(body, err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(errorResponse(id, code, msg))
		return
	}
	if !gjson.ValidBytes(body) {
		jsonError(w, http.StatusBadRequest, codeParseError, "Parse error: the body is not valid JSON")
		return
	}
	batch := firstNonSpace(body) == '['
	// Messages the session would refuse are answered here, in this POST's
	// response: the session's answers to them (id null) would have no
	// stream to go to.
	var raws [][]byte
	var refused [][]byte
	switch firstNonSpace(body) {
	case '[':
		arr := gjson.ParseBytes(body).Array()
		if len(arr) == 0 {
			// JSON-RPC 2.0 answers an empty batch with one error object,
			// not an array, as the stdio session does.
			batch = false
			refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: empty batch"))
		}
		for _, e := range arr {
			if !e.IsObject() {
				refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: batch element is not an object"))
				continue
			}
			raws = append(raws, []byte(e.Raw))
		}
	case '{':
		raws = append(raws, body)
	default:
		refused = append(refused, errorResponse("", codeInvalidRequest, "Invalid Request: not a JSON-RPC message"))
	}
	var msgs []message
	for _, raw := range raws {
		m, ok := parseMessage(raw)
		if r := checkHostMessage(m, ok); r != nil {
			f.p.log.Warn("HTTP front: refused a message from the host", "method", m.method, "reason", r.reason)
			refused = append(refused, r.resp)
			continue
		}
		msgs = append(msgs, m)
	}
	initialize := false
	for _, m := range msgs {
		if m.kind == kindRequest && m.method == "initialize" {
			initialize = true
		}
	}
	var h *httpSession
	var remap map[string]string // 2026: relayed id → the host's
	if !initialize && isModernPost(r, msgs) {
		var ok bool
		if h, ok = f.agentSession(w, r, agentID); !ok {
			return
		}
		msgs, remap = h.remapIDs(msgs)
	} else if initialize {
		if r.Header.Get("Mcp-Session-Id") != "" {
			jsonError(w, http.StatusBadRequest, codeInvalidRequest, "Bad Request: initialize inside an existing session")
			return
		}
		if !f.admit(w) {
			return
		}
		defer f.admitted()
		h = &httpSession{agentID: agentID, waiters: map[string]*stream{}, lastUsed: time.Now()}
		s, err := f.p.NewSession(r.Context(), agentID, h.toHost)
		if err != nil {
			jsonError(w, http.StatusBadGateway, codeInternalError, "Caracal could not start the upstream: "+err.Error())
			return
		}
		h.s = s
	} else if len(msgs) > 0 {
		var ok bool
		if h, ok = f.session(w, r, agentID); !ok {
			return
		}
	}
	// Claim this POST's request ids: a request whose id another POST of
	// the session still waits for is refused here, so the first POST
	// still gets its own response.
	st, msgs, dups := h.openPost(msgs)
	h.setRemap(st, remap)
	refused = append(refused, dups...)
	var ids, calls []string
	kept := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		kept = append(kept, m.raw)
		if m.kind == kindRequest {
			ids = append(ids, m.id)
			if m.method == "tools/call" {
				calls = append(calls, m.id)
			}
		}
	}
	if batch {
		body = joinArray(kept)
	} else if len(kept) == 1 {
		body = kept[0]
	}
	if len(ids) == 0 {
		if len(kept) > 0 {
			h.s.HandleHost(context.WithoutCancel(r.Context()), body)
		}
		if len(refused) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		if batch {
			_, _ = w.Write(joinArray(refused))
		} else {
			_, _ = w.Write(refused[0])
		}
		return
	}
	defer h.closePost(st, ids)
	// A cancellation on another POST may overtake this one's admission.
	h.s.expectCalls(calls...)
	// The call must not be cut short if the host hangs up: its outcome
	// still has to be learned and settled.
	go h.s.HandleHost(context.WithoutCancel(r.Context()), body)
	if initialize {
		f.answerInitialize(w, r, h, st, ids[0])
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		streamResponses(w, r, h, st, hostIDs(ids, remap), refused)
		return
	}
	jsonResponses(w, r, h, st, hostIDs(ids, remap), batch, refused)
}

// answerInitialize waits for the initialize response, names the session
// (the HTTP upstream's own session id when there is one) and answers.
func (f *HTTPFront) answerInitialize(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, id string) {
	var resp []byte
	for resp == nil {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse && m.id == id {
				resp = msg
			}
		case <-r.Context().Done():
			h.close()
			return
		}
	}
	if gjson.GetBytes(resp, "error").Exists() {
		h.close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(resp)
		return
	}
	sid := h.s.upstreamSessionID()
	f.mu.Lock()
	if sid == "" || f.sessions[sid] != nil {
		sid = newSessionID()
	}
	h.id = sid
	f.sessions[sid] = h
	f.mu.Unlock()
	w.Header().Set("Mcp-Session-Id", sid)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(resp)
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func streamResponses(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, ids []string, refused [][]byte) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for _, msg := range refused {
		if err := writeSSE(w, "", msg); err != nil {
			return
		}
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	for len(left) > 0 {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse {
				delete(left, m.id)
			}
			if err := writeSSE(w, "", msg); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

func jsonResponses(w http.ResponseWriter, r *http.Request, h *httpSession, st *stream, ids []string, batch bool, refused [][]byte) {
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	out := refused
	for len(left) > 0 {
		select {
		case msg := <-st.ch:
			if m, _ := parseMessage(msg); m.kind == kindResponse && left[m.id] {
				delete(left, m.id)
				out = append(out, msg)
				continue
			}
			// Requests and notifications have no place in a JSON reply;
			// hand them to the GET stream.
			h.mu.Lock()
			if len(h.backlog) < 1024 {
				h.backlog = append(h.backlog, msg)
			}
			h.mu.Unlock()
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if batch {
		_, _ = w.Write(joinArray(out))
		return
	}
	_, _ = w.Write(out[0])
}
