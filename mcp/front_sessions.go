package mcp

import (
	"errors"
	"sync"
	"time"
)

func (f *HTTPFront) janitor() {
	t := time.NewTicker(janitorInterval(f.o.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		f.mu.Lock()
		var idle []*httpSession
		for id, s := range f.sessions {
			if now.Sub(s.used()) > f.o.IdleTimeout {
				delete(f.sessions, id)
				idle = append(idle, s)
			}
		}
		f.mu.Unlock()
		for _, s := range idle {
			go s.close()
		}
	}
}

// httpSession routes a Session's messages to the host's HTTP streams:
// a response to the POST stream that carried its request; anything else
// to the oldest open POST stream, else the GET stream, else a backlog the
// next GET stream receives.
type httpSession struct {
	id      string
	agentID string
	s       *Session

	mu       sync.Mutex
	waiters  map[string]*stream
	posts    []*stream
	get      *stream
	backlog  [][]byte
	lastUsed time.Time
	seq      uint64            // 2026: the last id given to a host request
	byHost   map[string]string // 2026: host request id → the id relayed
}

type stream struct {
	ch   chan []byte
	left int // responses still owed on a POST stream; guarded by httpSession.mu
	// ids maps the ids relayed for a 2026 POST back to the host's own.
	ids map[string]string
}

// used is when the session was last used; a session with an open stream
// is in use now.
func (h *httpSession) used() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.get != nil || len(h.posts) > 0 {
		return time.Now()
	}
	return h.lastUsed
}

func (h *httpSession) touch() {
	h.mu.Lock()
	h.lastUsed = time.Now()
	h.mu.Unlock()
}

func (h *httpSession) close() {
	if h.s != nil {
		_ = h.s.Close()
	}
}

func (h *httpSession) closeAfter(drain time.Duration) {
	if h.s != nil {
		_ = h.s.closeAfter(drain)
	}
}

// hostWriteTimeout is how long a message waits for a host's HTTP stream to
// take it once the stream's buffer is full, that is once the host has
// stopped reading: 30 s rides out a slow client without holding the
// upstream's reader, and every message behind it, for good.
const hostWriteTimeout = 30 * time.Second

func (h *httpSession) toHost(msg []byte) error {
	m, _ := parseMessage(msg)
	h.mu.Lock()
	var st *stream
	if m.kind == kindResponse {
		st = h.waiters[m.id]
		delete(h.waiters, m.id)
		msg = st.hostID(msg, m.id)
		if st != nil && st != h.get {
			// A stream that owes nothing more takes no new messages: its
			// reader is about to stop reading.
			if st.left--; st.left == 0 {
				h.dropPost(st)
			}
		}
	} else if len(h.posts) > 0 {
		st = h.posts[0]
	} else if h.get != nil {
		st = h.get
	} else {
		if len(h.backlog) < 1024 {
			h.backlog = append(h.backlog, msg)
		}
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	if st == nil {
		return nil // the host went away; the response's settlement is already done
	}
	select {
	case st.ch <- msg:
	case <-time.After(hostWriteTimeout):
		return errors.New("host stream is not reading")
	}
	return nil
}

func (h *httpSession) dropPost(st *stream) {
	for i, p := range h.posts {
		if p == st {
			h.posts = append(h.posts[:i], h.posts[i+1:]...)
			return
		}
	}
}

// openPost opens the stream for a POST's responses and claims its
// requests' ids. It returns the messages to handle and the refusals of
// requests whose id is already awaited in this session.
func (h *httpSession) openPost(msgs []message) (st *stream, kept []message, refused [][]byte) {
	st = &stream{ch: make(chan []byte, 256)}
	if h == nil {
		return st, msgs, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		if m.kind == kindRequest {
			if _, busy := h.waiters[m.id]; busy {
				refused = append(refused, errorResponse(m.id, codeInvalidRequest, "Invalid Request: a request with this id is already in flight"))
				continue
			}
			h.waiters[m.id] = st
			st.left++
		}
		kept = append(kept, m)
	}
	if st.left > 0 {
		h.posts = append(h.posts, st)
	}
	return st, kept, refused
}

func (h *httpSession) closePost(st *stream, ids []string) {
	h.mu.Lock()
	for _, id := range ids {
		if h.waiters[id] == st {
			delete(h.waiters, id)
		}
	}
	h.dropPost(st)
	h.mu.Unlock()
}
