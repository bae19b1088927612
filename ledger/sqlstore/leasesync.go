package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/caracal-dev/caracal/policy"
)

// The statements of a holder's periodic sync (syncLeases) not shared with
// other paths.
const (
	wantedLeasesSQL = `SELECT policy_id, bucket_ns FROM leases WHERE holder_id = ? AND wanted`
	clearWantedSQL  = `UPDATE leases SET wanted = ? WHERE holder_id = ? AND wanted`
	leaseDeleteSQL  = `DELETE FROM leases WHERE holder_id = ? AND policy_id = ? AND bucket_ns = ?`
)

// tightFor is how long a lease grants exactly one call's worth after its
// holder was asked to give headroom back.
const tightFor = 2 * time.Second

// syncLeases is a holder's periodic transaction, under the leased
// policies' row locks:
//
//  1. heartbeat: extend the holder's expiry (a holder reclaimed meanwhile
//     forgets its leases and registers anew at its next reservation);
//  2. fold: every reservation of the holder's that finished, here or in
//     any other process (the expiry sweep, a settlement through another
//     replica), leaves its leases, its charge moving to usage spent;
//  3. give back: a lease that is frozen (agents or policies changed),
//     wanted by another process, or of a bucket that is no longer current
//     returns its unused rest to the budget, and one left empty is deleted;
//  4. refresh: the window's usage outside each lease is read again, for
//     the next decisions' view.
//
// The book is changed only after the commit, in the same order.
func (s *Store) syncLeases(ctx context.Context) error {
	s.lz.txMu.Lock()
	defer s.lz.txMu.Unlock()
	s.lz.mu.Lock()
	holder := s.lz.holder
	s.lz.mu.Unlock()
	if holder == "" {
		return nil
	}
	now := time.Now()
	var (
		folds  []folded
		back   []leaseMove
		drop   []leaseKey
		wanted map[leaseKey]bool
		sums   map[string]windowSums
	)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Every 100 ms, with one statement per leased policy: prepared
		// statements where SQLite has them, as parsing dominates.
		q := s.ptx(tx)
		if err := s.heartbeat(ctx, q, holder, now); err != nil {
			return err
		}
		ids, err := s.leasePolicies(ctx, q, holder)
		if err != nil {
			return err
		}
		if err := s.lockPolicyIDs(ctx, tx, ids); err != nil {
			return err
		}
		if folds, err = s.foldTx(ctx, q, holder); err != nil {
			return err
		}
		if wanted, err = s.wantedLeases(ctx, q, holder); err != nil {
			return err
		}
		var pols []policy.Policy
		back, drop, pols = s.planGiveBack(folds, wanted, now)
		if err := s.applyLeaseMoves(ctx, q, holder, back); err != nil {
			return err
		}
		if len(wanted) > 0 {
			if _, err := q.ExecContext(ctx, s.q(clearWantedSQL), false, holder); err != nil {
				return fmt.Errorf("clear wanted leases: %w", err)
			}
		}
		for _, k := range drop {
			if _, err := q.ExecContext(ctx, s.q(leaseDeleteSQL), holder, k.policyID, k.bucket); err != nil {
				return fmt.Errorf("delete lease: %w", err)
			}
		}
		sums, err = s.sumWindows(ctx, q, holder, pols, now)
		return err
	})
	if errors.Is(err, errHolderGone) {
		s.lz.mu.Lock()
		s.lz.reset()
		s.lz.holder = ""
		s.lz.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync leases: %w", err)
	}
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	s.lz.beat = now
	for _, f := range folds {
		s.lz.fold(f.key, f.requestID, f.amount, f.charge)
	}
	for _, m := range back {
		if l := s.lz.lease(m.key); l != nil {
			l.grant += m.grant
		}
	}
	for k := range wanted {
		if l := s.lz.lease(k); l != nil {
			l.tightUntil = now.Add(tightFor)
		}
	}
	for _, k := range drop {
		delete(s.lz.leases, k)
	}
	for k, l := range s.lz.leases {
		if w, ok := sums[k.policyID]; ok {
			l.baseSpent = w.spent + w.othersFinished
			l.baseReserved = w.reserved + w.leased - l.grant - w.othersFinished
		}
	}
	return nil
}

// wantedLeases lists the holder's leases another process asked back.
func (s *Store) wantedLeases(ctx context.Context, q querier, holder string) (map[leaseKey]bool, error) {
	rows, err := q.QueryContext(ctx, s.q(wantedLeasesSQL), holder)
	if err != nil {
		return nil, fmt.Errorf("read wanted leases: %w", err)
	}
	defer rows.Close()
	var out map[leaseKey]bool
	for rows.Next() {
		var k leaseKey
		if err := rows.Scan(&k.policyID, &k.bucket); err != nil {
			return nil, fmt.Errorf("read wanted leases: %w", err)
		}
		if out == nil {
			out = make(map[leaseKey]bool)
		}
		out[k] = true
	}
	return out, rows.Err()
}

// planGiveBack freezes the leases that give back their unused rest at
// this sync and returns the moves that do it, the leases left empty (to
// delete) and the policies of the leases kept. folds are the reservations
// this sync folds, not yet applied to the book. Freezing first means
// nothing is admitted under a lease between working out its rest and
// the commit, and finishes only add to the rest, so the book never admits
// more than the committed grant.
func (s *Store) planGiveBack(folds []folded, wanted map[leaseKey]bool, now time.Time) ([]leaseMove, []leaseKey, []policy.Policy) {
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	// What each lease will have once the folds apply.
	type after struct{ grant, used int64 }
	next := make(map[leaseKey]*after, len(s.lz.leases))
	left := make(map[leaseKey]int, len(s.lz.leases))
	for k, l := range s.lz.leases {
		next[k] = &after{grant: l.grant, used: l.open + l.charged}
		left[k] = len(l.entries)
	}
	for _, f := range folds {
		a := next[f.key]
		if a == nil {
			continue
		}
		a.grant -= foldCovered(f.amount, f.charge)
		if e := s.lz.leases[f.key].entries[f.requestID]; e != nil {
			a.used -= e.covered()
			left[f.key]--
		}
	}
	var back []leaseMove
	var drop []leaseKey
	seen := make(map[string]bool)
	var pols []policy.Policy
	for k, l := range s.lz.leases {
		stale := false
		if bs, err := s.zones.BucketStart(l.pol, now); err == nil && bs.UnixNano() != k.bucket {
			stale = true
		}
		if stale || wanted[k] {
			l.frozen = true
		}
		a := next[k]
		if l.frozen {
			if rest := a.grant - a.used; rest > 0 {
				back = append(back, leaseMove{key: k, grant: -rest})
				a.grant -= rest
			}
		}
		if l.frozen && left[k] == 0 && a.grant == 0 {
			drop = append(drop, k)
			continue
		}
		if !seen[k.policyID] {
			seen[k.policyID] = true
			pols = append(pols, l.pol)
		}
	}
	return back, drop, pols
}

// renewLeases tops up, ahead of need, every lease in use that has less
// than a quarter of its last grant left, so that a steady stream of calls
// rarely waits for a lease transaction.
func (s *Store) renewLeases(ctx context.Context) error {
	s.lz.txMu.Lock()
	defer s.lz.txMu.Unlock()
	now := time.Now()
	s.lz.mu.Lock()
	holder := s.lz.holder
	var (
		keys  []leaseKey
		pols  []policy.Policy
		needs []int64
		tight []bool
	)
	for k, l := range s.lz.leases {
		if l.frozen || l.lastGrant <= l.lastNeed || now.Before(l.tightUntil) || l.avail() >= l.lastGrant/4 {
			continue
		}
		keys = append(keys, k)
		pols = append(pols, l.pol)
		needs = append(needs, max(l.lastNeed, 1))
		tight = append(tight, false)
	}
	s.lz.mu.Unlock()
	if holder == "" || len(keys) == 0 {
		return nil
	}
	var acqs []acquired
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.heartbeat(ctx, tx, holder, now); err != nil {
			return err
		}
		var err error
		acqs, err = s.acquireTx(ctx, tx, holder, keys, pols, needs, tight, now, now)
		return err
	})
	if errors.Is(err, errConfigStale) {
		s.configChanged()
		return nil
	}
	if err != nil {
		return fmt.Errorf("renew leases: %w", err)
	}
	s.lz.mu.Lock()
	defer s.lz.mu.Unlock()
	s.lz.beat = now
	for i, a := range acqs {
		if l := s.lz.lease(a.key); l != nil {
			s.applyAcquired(l, a, needs[i])
		}
	}
	return nil
}
