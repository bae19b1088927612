package mcp

import (
	"io"
	"net/http"
	"strings"
	"time"
)

func (f *HTTPFront) getStream(w http.ResponseWriter, r *http.Request, agentID string) {
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		jsonError(w, http.StatusNotAcceptable, codeInvalidRequest, "Not Acceptable: the GET stream needs Accept: text/event-stream")
		return
	}
	h, ok := f.session(w, r, agentID)
	if !ok {
		return
	}
	st := &stream{ch: make(chan []byte, 256)}
	h.mu.Lock()
	if h.get != nil {
		h.mu.Unlock()
		jsonError(w, http.StatusConflict, codeInvalidRequest, "Conflict: a GET stream is already open for this session")
		return
	}
	h.get = st
	backlog := h.backlog
	h.backlog = nil
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.get == st {
			h.get = nil
		}
		h.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	for _, msg := range backlog {
		_ = writeSSE(w, "", msg)
	}
	if fl != nil {
		fl.Flush()
	}
	ping := time.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		select {
		case msg := <-st.ch:
			if err := writeSSE(w, "", msg); err != nil {
				return
			}
		case <-ping.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-f.draining:
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}
