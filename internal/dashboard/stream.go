package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

// heartbeat keeps an idle stream's connection from being closed by
// proxies between the browser and the server.
const heartbeat = 15 * time.Second

// recheckToken is how often a live stream checks that its session's token
// is still valid (the API checks it on every request; the stream makes
// none).
const recheckToken = 5 * time.Second

// stream is GET /ui/events: server-sent events, one "ledger" event per new
// ledger event, read by sequence number as `caracal ledger tail -f` reads
// them (only events already in the Merkle tree, in seq order, so none is
// missed). Each event's SSE id is its seq: a reconnecting EventSource
// sends Last-Event-ID and resumes after it.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	sid, ss, ok := h.fromSession(r)
	if !ok {
		problem(w, http.StatusUnauthorized, "unauthorized", "not signed in")
		return
	}
	if !sameOrigin(r) {
		problem(w, http.StatusForbidden, "forbidden", "cross-origin request refused")
		return
	}
	ctx := r.Context()
	var next int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			problem(w, http.StatusBadRequest, "invalid_request", "Last-Event-ID: want a sequence number")
			return
		}
		next = n + 1
	} else {
		n, err := h.opts.Events.TreeSize(ctx)
		if err != nil {
			h.log.Error("dashboard stream: read the tree size", "err", err)
			problem(w, http.StatusServiceUnavailable, "unavailable", "the ledger cannot be read right now")
			return
		}
		next = n
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The retry hint, and a first flush so the browser sees the stream open.
	if _, err := fmt.Fprint(w, "retry: 1000\n: open\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(h.opts.Poll)
	defer tick.Stop()
	lastWrite, lastCheck := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.opts.Stop:
			return
		case <-tick.C:
		}
		// A stream lasts no longer than its session, nor than its token:
		// sign-out and expiry end it at the next poll, a revoked token
		// within recheckToken.
		if _, ok := h.sessions.get(sid); !ok {
			return
		}
		if time.Since(lastCheck) >= recheckToken {
			lastCheck = time.Now()
			if _, err := h.opts.Tokens.CheckAdminToken(ctx, ss.token); errors.Is(err, ErrBadToken) {
				h.sessions.remove(sid)
				return
			}
		}
		f := ledger.EventFilter{Integrated: true, FromSeq: next}
		wrote := false
		err := h.opts.Events.QueryEvents(ctx, f, func(ev ledger.Event) error {
			next = ev.Seq + 1
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			wrote = true
			_, err = fmt.Fprintf(w, "id: %d\nevent: ledger\ndata: %s\n\n", ev.Seq, b)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ledger.ErrUnavailable) {
				continue // keep following through a database restart
			}
			h.log.Error("dashboard stream: read new events", "err", err)
			return
		}
		if !wrote && time.Since(lastWrite) >= heartbeat {
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			wrote = true
		}
		if wrote {
			lastWrite = time.Now()
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
