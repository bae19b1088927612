package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// leaser is a process's lease holding: its book, its holder row and the
// background loop that keeps them current.
type leaser struct {
	book
	// holder is the lease_holders row of this process ("" until the first
	// reservation that needs one); beat is when its heartbeat last
	// committed. Both are guarded by book.mu.
	holder string
	beat   time.Time
	// txMu serialises this process's lease transactions (acquire, sync)
	// with the application of their results to the book, so the book
	// sees them in commit order: a sync that gives headroom back must not
	// be overtaken by an acquire that thaws the same lease.
	txMu sync.Mutex
	// loop runs once, from the first reservation that needs a holder,
	// until Close.
	loopOnce sync.Once
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// stopLoop stops the background loop, if it ran, and keeps it from
// starting; it reports whether it ran. It is safe to call more than once.
func (z *leaser) stopLoop() bool {
	z.loopOnce.Do(func() {}) // no loop starts after this
	ran := false
	z.stopOnce.Do(func() {
		if z.stop != nil {
			close(z.stop)
			<-z.done
			ran = true
		}
	})
	return ran
}

// wantWait bounds how long a call that does not fit waits for other
// processes to give back headroom they lease but do not use: three of
// their syncs and a margin.
const wantWait = 3*leaseSyncInterval + 100*time.Millisecond

// maxAcquires bounds the lease transactions one reservation runs.
const maxAcquires = 8

// reserveLeased decides r in memory against this process's leases and
// writes the reservation (or the denial) durably before returning. See
// Reserve.
func (s *Store) reserveLeased(ctx context.Context, r *ledger.ReserveRequest, ce chainEntry) (policy.Decision, error) {
	n := len(ce.pols)
	req := policy.Request{Chain: ce.chain, Policies: make([]policy.PolicyUsage, n), Resource: r.Resource,
		Price: r.Amount, Currency: r.Currency, AllowUnbudgeted: r.AllowUnbudgeted}
	if n == 0 {
		d := policy.Decide(&req)
		if !d.Allow {
			return d, s.writeDenial(ctx, r, ce, d)
		}
		return d, s.writeReservation(ctx, r, ce, nil, "")
	}
	keys := make([]leaseKey, n)
	pols := make([]policy.Policy, n)
	for i, pu := range ce.pols {
		bs, err := s.zones.BucketStart(pu.Policy, r.Now)
		if err != nil {
			return policy.Decision{}, fmt.Errorf("policy %s: bucket: %w", pu.Policy.ID, err)
		}
		keys[i] = leaseKey{policyID: pu.Policy.ID, bucket: bs.UnixNano()}
		pols[i] = pu.Policy
	}
	if err := s.ensureHolder(ctx); err != nil {
		return policy.Decision{}, err
	}
	if err := s.heldConflict(r.RequestID); err != nil {
		return policy.Decision{}, err
	}
	deadline := time.Now().Add(wantWait)
	// attempt counts lease transactions that did not settle the call one
	// way or the other; waiting for other processes' headroom does not.
	for attempt := 0; ; {
		s.lz.mu.Lock()
		d, holder, ok := s.tryAdmit(r, &req, ce, keys)
		s.lz.mu.Unlock()
		if ok {
			return s.commitAdmitted(ctx, r, ce, keys, holder, d)
		}
		if !d.Allow && d.Code != policy.CodeBudgetExceeded {
			return d, s.writeDenial(ctx, r, ce, d)
		}
		if attempt >= maxAcquires {
			return policy.Decision{}, fmt.Errorf("no lease after %d attempts: %w", attempt, ledger.ErrUnavailable)
		}
		ad, admitted, othersHold, err := s.acquire(ctx, r, &req, ce, keys, pols)
		if errors.Is(err, errConfigStale) {
			// Decide again over the policies as they are now.
			s.configChanged()
			fresh, err := s.chainFor(ctx, r.AgentID)
			if err != nil {
				return policy.Decision{}, err
			}
			return s.reserveLeased(ctx, r, fresh)
		}
		if err != nil {
			return policy.Decision{}, err
		}
		if admitted != "" {
			return s.commitAdmitted(ctx, r, ce, keys, admitted, ad)
		}
		if ad.Allow {
			attempt++
			continue // thawed or renewed meanwhile: decide again
		}
		if othersHold && time.Now().Before(deadline) {
			// Other processes lease headroom they may not use; they give it
			// back at their next sync.
			select {
			case <-ctx.Done():
				return policy.Decision{}, ctx.Err()
			case <-time.After(leaseSyncInterval / 4):
			}
			continue
		}
		return ad, s.writeDenial(ctx, r, ce, ad)
	}
}

// heldConflict refuses a request ID this process already holds open.
func (s *Store) heldConflict(requestID string) error {
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	if _, ok := s.lz.held[requestID]; ok {
		return fmt.Errorf("request %q is already reserved: %w", requestID, ledger.ErrConflict)
	}
	return nil
}

// commitAdmitted makes an admitted reservation durable, or gives its
// headroom back if it cannot.
func (s *Store) commitAdmitted(ctx context.Context, r *ledger.ReserveRequest, ce chainEntry, keys []leaseKey, holder string, d policy.Decision) (policy.Decision, error) {
	if err := s.writeReservation(ctx, r, ce, keys, holder); err != nil {
		s.lz.mu.Lock()
		s.lz.unadmit(r.RequestID)
		s.lz.mu.Unlock()
		return policy.Decision{}, err
	}
	return d, nil
}

// tryAdmit decides r against the book and, if allowed and every lease has
// room, admits it. The caller holds s.lz.mu. It returns the decision, the
// holder the reservation is written under and whether it was admitted.
func (s *Store) tryAdmit(r *ledger.ReserveRequest, req *policy.Request, ce chainEntry, keys []leaseKey) (policy.Decision, string, bool) {
	for i, pu := range ce.pols {
		if l := s.lz.lease(keys[i]); l != nil {
			req.Policies[i] = l.usage(pu.AgentName)
			continue
		}
		req.Policies[i] = policy.PolicyUsage{Policy: pu.Policy, AgentName: pu.AgentName}
	}
	d := policy.Decide(req)
	if !d.Allow || s.lz.holder == "" || time.Since(s.lz.beat) > s.leaseTTL/2 || !s.lz.fits(keys, int64(r.Amount)) {
		return d, "", false
	}
	s.lz.admit(r.RequestID, keys, int64(r.Amount))
	return d, s.lz.holder, true
}

// acquire leases headroom for r on every key in one transaction, applies
// it to the book and, in the same hold of the book's lock, tries to admit
// r, so the headroom leased for a call goes to that call. It returns the
// decision over the fresh view, the holder r was admitted under ("" if it
// was not) and whether other processes lease headroom on a policy r did
// not fit.
func (s *Store) acquire(ctx context.Context, r *ledger.ReserveRequest, req *policy.Request, ce chainEntry, keys []leaseKey, pols []policy.Policy) (policy.Decision, string, bool, error) {
	s.lz.txMu.Lock()
	defer s.lz.txMu.Unlock()
	// The holder may have been reclaimed and forgotten since this call
	// began (a lapsed heartbeat): register anew.
	if err := s.registerLocked(ctx); err != nil {
		return policy.Decision{}, "", false, err
	}
	now := time.Now()
	s.lz.mu.Lock()
	holder := s.lz.holder
	needs := make([]int64, len(keys))
	tight := make([]bool, len(keys))
	for i, k := range keys {
		needs[i] = int64(r.Amount)
		if l := s.lz.lease(k); l != nil {
			// A frozen lease's rest counts too: the transaction thaws it
			// only if the budget, read under its row lock, still has room
			// for it.
			needs[i] = max(int64(r.Amount)-max(l.avail(), 0), 0)
			tight[i] = now.Before(l.tightUntil)
		}
	}
	s.lz.mu.Unlock()
	if holder == "" {
		return policy.Decision{}, "", false, fmt.Errorf("no lease holder: %w", ledger.ErrUnavailable)
	}
	var acqs []acquired
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.heartbeat(ctx, tx, holder, now); err != nil {
			return err
		}
		var err error
		acqs, err = s.acquireTx(ctx, tx, holder, keys, pols, needs, tight, now, r.Now)
		return err
	})
	if err != nil {
		return policy.Decision{}, "", false, fmt.Errorf("acquire lease: %w", err)
	}
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	s.lz.beat = now
	others := false
	for i, a := range acqs {
		l := s.lz.ensure(a.key, pols[i])
		s.applyAcquired(l, a, needs[i])
		if a.grant < needs[i] && a.othersLeased > 0 {
			others = true
		}
	}
	d, admitted, ok := s.tryAdmit(r, req, ce, keys)
	if !ok {
		admitted = ""
	}
	return d, admitted, others, nil
}

// applyAcquired applies one committed acquire to its lease. A frozen
// lease thaws when the budget, read under its row lock against the policy
// version in force, was within its limit: its rest, counted in usage
// leased all along, then is too, and is this process's to use.
func (s *Store) applyAcquired(l *lease, a acquired, need int64) {
	l.grant += a.grant
	l.baseSpent = a.sums.spent + a.sums.othersFinished
	l.baseReserved = a.sums.reserved + a.othersLeased - a.sums.othersFinished
	if a.headroom >= 0 {
		l.frozen = false
	}
	if a.grant > 0 {
		l.lastGrant, l.lastNeed = a.grant, need
	}
}

const heartbeatSQL = `UPDATE lease_holders SET expires_ns = ? WHERE id = ?`

// heartbeat extends holder's lease expiry; a holder reclaimed meanwhile
// (its heartbeat lapsed) is errHolderGone.
func (s *Store) heartbeat(ctx context.Context, q querier, holder string, now time.Time) error {
	res, err := q.ExecContext(ctx, s.q(heartbeatSQL), now.Add(s.leaseTTL).UnixNano(), holder)
	if err != nil {
		return fmt.Errorf("lease heartbeat: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errHolderGone
	}
	return nil
}

// errHolderGone means another process reclaimed this one's leases.
var errHolderGone = fmt.Errorf("this process's leases were reclaimed: %w", ledger.ErrUnavailable)

// ensureHolder registers this process as a lease holder if it is not one
// and starts its background loop.
func (s *Store) ensureHolder(ctx context.Context) error {
	s.lz.mu.Lock()
	ok := s.lz.holder != ""
	s.lz.mu.Unlock()
	if !ok {
		s.lz.txMu.Lock()
		err := s.registerLocked(ctx)
		s.lz.txMu.Unlock()
		if err != nil {
			return err
		}
	}
	if s.manualLeases {
		return nil
	}
	s.lz.loopOnce.Do(func() {
		s.lz.stop = make(chan struct{})
		s.lz.done = make(chan struct{})
		go s.leaseLoop()
	})
	return nil
}

// SyncLeases runs one round of what the background lease loop does
// every leaseSyncInterval, but for reclaiming others' leases: poll for
// configuration changes, sync this process's leases (heartbeat, fold,
// give back) and renew those running low. It is for callers that opened
// the store with Options.ManualLeases.
func (s *Store) SyncLeases(ctx context.Context) error {
	if err := s.pollConfig(ctx); err != nil {
		return err
	}
	if err := s.syncLeases(ctx); err != nil {
		return err
	}
	return s.renewLeases(ctx)
}

// LeaseHolder returns this process's lease holder ID, "" if it holds no
// leases.
func (s *Store) LeaseHolder() string {
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	return s.lz.holder
}

// Abandon closes the database as a killed process would leave it: its
// leases and open reservations stay as they are, for another process to
// reclaim once its heartbeat lapses. It is for crash tests and
// simulations; a process that exits cleanly calls Close.
func (s *Store) Abandon() error {
	s.lz.stopLoop()
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// registerLocked registers a holder if there is none; the caller holds txMu.
func (s *Store) registerLocked(ctx context.Context) error {
	s.lz.mu.Lock()
	ok := s.lz.holder != ""
	s.lz.mu.Unlock()
	if ok {
		return nil
	}
	id, err := s.register(ctx)
	if err != nil {
		return err
	}
	s.lz.mu.Lock()
	s.lz.reset()
	s.lz.holder, s.lz.beat = id, time.Now()
	s.lz.mu.Unlock()
	return nil
}

// leaseLoop syncs this process's leases every leaseSyncInterval, polls for
// configuration changes and reclaims the leases of processes whose
// heartbeat lapsed, until Close. Failures are retried at the next tick:
// while the database is away the heartbeat lapses, and after half the
// lease TTL this process admits nothing (fails closed).
func (s *Store) leaseLoop() {
	defer close(s.lz.done)
	t := time.NewTicker(leaseSyncInterval)
	defer t.Stop()
	var lastPoll, lastReclaim time.Time
	for {
		select {
		case <-s.lz.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.leaseTTL/2)
		now := time.Now()
		if now.Sub(lastPoll) >= configPollInterval {
			if s.pollConfig(ctx) == nil {
				lastPoll = now
			}
		}
		_ = s.syncLeases(ctx)
		_ = s.renewLeases(ctx)
		if now.Sub(lastReclaim) >= time.Second {
			if _, err := s.ReclaimLeases(ctx, now); err == nil {
				lastReclaim = now
			}
		}
		cancel()
	}
}

// closeLeases stops the loop and gives back every lease's unused
// headroom, so a process that exits cleanly leaves nothing to reclaim
// but the reservations still open.
func (s *Store) closeLeases(ctx context.Context) {
	if !s.lz.stopLoop() {
		return
	}
	s.lz.mu.Lock()
	for _, l := range s.lz.leases {
		l.frozen = true
	}
	s.lz.mu.Unlock()
	_ = s.syncLeases(ctx)
	s.lz.mu.Lock()
	holder, empty := s.lz.holder, len(s.lz.held) == 0
	s.lz.mu.Unlock()
	if holder == "" || !empty {
		return
	}
	_ = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM leases WHERE holder_id = ? AND grant_nanos = 0`), holder); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM lease_holders WHERE id = ? AND NOT EXISTS (SELECT 1 FROM leases WHERE holder_id = ?)`), holder, holder)
		return err
	})
}
