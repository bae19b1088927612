package interpose

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

// maxOrphans bounds how many ambiguous reservations an engine remembers,
// so a long outage under heavy traffic cannot grow memory without limit.
const maxOrphans = 100_000

// orphanReason is the reason recorded on the refunded event.
const orphanReason = "reservation reported as failed; the call was refused and never relayed"

// orphans are request IDs whose reservation may or may not have been
// committed: Reserve returned a store error (a commit reported as failed
// can still have landed) and the call was refused, so it never ran. Each is
// released by request ID once the store answers. A reservation that did
// not land is unknown to the store, which then has nothing to release.
type orphans struct {
	mu  sync.Mutex
	ids map[string]time.Time // request ID → when Reserve failed
}

// ambiguous reports whether a Reserve error leaves the reservation's fate
// unknown. The errors listed are returned before anything is written (or,
// for a conflict, name a reservation that belongs to another call).
func ambiguous(err error) bool {
	for _, definite := range []error{ledger.ErrNotFound, ledger.ErrConflict, ledger.ErrInvalid, ledger.ErrSchemaOutdated} {
		if errors.Is(err, definite) {
			return false
		}
	}
	return true
}

// remember records a request ID to release later.
func (e *Engine) rememberOrphan(requestID string) {
	e.orphans.mu.Lock()
	defer e.orphans.mu.Unlock()
	if e.orphans.ids == nil {
		e.orphans.ids = map[string]time.Time{}
	}
	if len(e.orphans.ids) >= maxOrphans {
		e.log.Error("too many reservations of unknown fate to remember; this one is left to the expiry sweep", "request_id", requestID)
		return
	}
	e.orphans.ids[requestID] = e.opts.Now()
}

// PendingReleases returns how many refused calls still wait for their
// possible reservation to be released.
func (e *Engine) PendingReleases() int {
	e.orphans.mu.Lock()
	defer e.orphans.mu.Unlock()
	return len(e.orphans.ids)
}

// ReleaseOrphans releases, by request ID, every reservation whose commit was
// reported as failed, and returns how many it released. Releasing is
// idempotent: a reservation already finished keeps its first event. An ID
// the store does not know is kept until its reservation would have expired,
// in case a commit still in flight lands late, then forgotten; one the store
// cannot be asked about is kept for the next try. Sweep calls it before
// expiring reservations, so a refused call is never charged as unconfirmed
// while the store is reachable.
func (e *Engine) ReleaseOrphans(ctx context.Context) int {
	e.orphans.mu.Lock()
	ids := make(map[string]time.Time, len(e.orphans.ids))
	for id, at := range e.orphans.ids {
		ids[id] = at
	}
	e.orphans.mu.Unlock()
	n := 0
	for id, at := range ids {
		ev, err := e.opts.Store.Release(ctx, id, orphanReason)
		switch {
		case err == nil:
			if ev.Outcome != "" && ev.Reason == orphanReason {
				n++
				e.log.Info("released the reservation of a refused call", "request_id", id)
			}
		case errors.Is(err, ledger.ErrNotFound):
			if e.opts.Now().Sub(at) < e.opts.ReservationTTL {
				continue
			}
		default:
			// The store is still failing: try them all again next time
			// rather than fail (and log) once per request.
			if ctx.Err() == nil {
				e.log.Warn("releasing the reservations of refused calls failed; will retry", "pending", len(ids), "request_id", id, "err", err)
			}
			return n
		}
		e.orphans.mu.Lock()
		delete(e.orphans.ids, id)
		e.orphans.mu.Unlock()
	}
	return n
}

// exitReleaseTimeout bounds the last release attempt when Run stops.
const exitReleaseTimeout = 5 * time.Second

// releaseOnExit makes a last attempt to release what is still pending when
// Run stops, since the request IDs live only in this process.
func (e *Engine) releaseOnExit(ctx context.Context) {
	if e.PendingReleases() == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitReleaseTimeout)
	defer cancel()
	e.ReleaseOrphans(rctx)
	if n := e.PendingReleases(); n > 0 {
		e.log.Warn("stopping before every refused call was released or found absent; the expiry sweep will settle any that landed as unconfirmed", "count", n)
	}
}
