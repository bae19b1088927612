package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/policy"
)

// DefaultLeaseTTL is how long a process's leases outlive its last
// heartbeat before another process may reclaim them.
const DefaultLeaseTTL = 10 * time.Second

// leaseSyncInterval is how often a holder heartbeats, folds finished
// reservations into usage and answers requests for its unused headroom.
const leaseSyncInterval = 100 * time.Millisecond

// leaseSize returns how much of a policy bucket's headroom to lease for a
// call that needs need, when holders processes hold leases: a share that
// shrinks with the headroom, so that a budget far from its limit is
// decided in memory for many calls, and exactly one call's worth once the
// share would be under four calls (or while another process is asking for
// headroom back: tight), so the last calls of a budget are decided as
// exactly as with no leases. It is never more than the headroom, nor more
// than 1024 calls' worth, and zero when the call does not fit.
func leaseSize(headroom, need int64, holders int, tight bool) int64 {
	if need < 0 || headroom < need || headroom <= 0 {
		return 0
	}
	if tight {
		return need
	}
	if holders < 1 {
		holders = 1
	}
	share := headroom / int64(2*holders)
	if share < 4*need {
		return need
	}
	if need > 0 && share > 1024*need {
		share = 1024 * need
	}
	return share
}

// holderName names this process among lease holders: host and process ID.
func holderName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// deadHere reports whether a holder of that name was a process of this
// machine that no longer runs: a process restarted after a crash then
// reclaims its predecessor's leases at once instead of after the TTL. A
// false positive (another PID namespace under the same host name) only
// makes a live holder register anew.
func deadHere(name string) bool {
	host, _ := os.Hostname()
	h, pid, ok := strings.Cut(name, ":")
	if !ok || h != host {
		return false
	}
	n, err := strconv.Atoi(pid)
	return err == nil && n != os.Getpid() && processGone(n)
}

// register makes this process a lease holder.
func (s *Store) register(ctx context.Context) (string, error) {
	id := uuid.NewString()
	now := time.Now()
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO lease_holders (id, name, started_ns, expires_ns) VALUES (?, ?, ?, ?)`),
		id, holderName(), now.UnixNano(), now.Add(s.leaseTTL).UnixNano())
	if err != nil {
		return "", s.wrap(fmt.Errorf("register lease holder: %w", err))
	}
	return id, nil
}

// windowSums is a policy's usage summed over its window: the usage rows,
// and what of leased is other holders' finished reservations not yet
// folded (spent, as far as anyone reading the budget is concerned).
type windowSums struct{ spent, reserved, leased, othersFinished int64 }

// othersFinishedSQL sums what finished reservations take of other
// holders' leases on one policy from a window start on. "holder > ”"
// (every holder ID is non-empty) makes SQLite drive the join from the
// partial index of held reservations, which are few, where "IS NOT NULL"
// lets it scan every reservation bucket.
const othersFinishedSQL = `SELECT CAST(COALESCE(SUM(` + foldCoveredSQL + `), 0) AS BIGINT)
	FROM reservations r JOIN reservation_buckets b ON b.request_id = r.request_id
	WHERE r.holder > '' AND r.holder <> ? AND r.status <> 'open' AND b.policy_id = ? AND b.bucket_ns >= ?`

// sumWindows reads the usage of each policy over its window at now, as
// holder sees it.
func (s *Store) sumWindows(ctx context.Context, q querier, holder string, pols []policy.Policy, now time.Time) (map[string]windowSums, error) {
	out, err := s.sumUsageRows(ctx, q, pols, now)
	if err != nil {
		return nil, err
	}
	for _, p := range pols {
		ws, err := s.zones.WindowStart(p, now)
		if err != nil {
			return nil, fmt.Errorf("policy %s: window: %w", p.ID, err)
		}
		w := out[p.ID]
		if err := q.QueryRowContext(ctx, s.q(othersFinishedSQL), holder, p.ID, ws.UnixNano()).Scan(&w.othersFinished); err != nil {
			return nil, fmt.Errorf("read leased usage: %w", err)
		}
		out[p.ID] = w
	}
	return out, nil
}

// sumUsageRows reads the usage rows of each policy over its window at
// now, in one query.
func (s *Store) sumUsageRows(ctx context.Context, q querier, pols []policy.Policy, now time.Time) (map[string]windowSums, error) {
	out := make(map[string]windowSums, len(pols))
	if len(pols) == 0 {
		return out, nil
	}
	var b strings.Builder
	b.WriteString(`SELECT policy_id, CAST(SUM(spent_nanos) AS BIGINT), CAST(SUM(reserved_nanos) AS BIGINT), CAST(SUM(leased_nanos) AS BIGINT) FROM usage WHERE `)
	args := make([]any, 0, 2*len(pols))
	for i, p := range pols {
		ws, err := s.zones.WindowStart(p, now)
		if err != nil {
			return nil, fmt.Errorf("policy %s: window: %w", p.ID, err)
		}
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(policy_id = ? AND bucket_ns >= ?)")
		args = append(args, p.ID, ws.UnixNano())
	}
	b.WriteString(" GROUP BY policy_id")
	rows, err := q.QueryContext(ctx, s.q(b.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var w windowSums
		if err := rows.Scan(&id, &w.spent, &w.reserved, &w.leased); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		out[id] = w
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return out, nil
}

// leaseMove is one change to a lease row and its usage row.
type leaseMove struct {
	key leaseKey
	// grant is added to leases.grant_nanos and usage.leased_nanos.
	grant int64
	// spent and reserved are added to usage.
	spent, reserved int64
}

// leaseAddSQL adds to a lease's grant, creating the lease row if missing.
const leaseAddSQL = `INSERT INTO leases (holder_id, policy_id, bucket_ns, grant_nanos) VALUES (?, ?, ?, ?)
	ON CONFLICT (holder_id, policy_id, bucket_ns) DO UPDATE SET grant_nanos = leases.grant_nanos + excluded.grant_nanos`

// applyLeaseMoves writes moves for holder: the usage rows through
// applyUsage, moves of one bucket summed and sorted by policy ID (the
// order every transaction takes usage row locks in), then holder's lease
// rows ("" for none: the usage rows only).
func (s *Store) applyLeaseMoves(ctx context.Context, q querier, holder string, moves []leaseMove) error {
	sum := make(map[leaseKey]leaseMove, len(moves))
	for _, m := range moves {
		t := sum[m.key]
		t.key = m.key
		t.grant += m.grant
		t.spent += m.spent
		t.reserved += m.reserved
		sum[m.key] = t
	}
	keys := make([]leaseKey, 0, len(sum))
	for k, m := range sum {
		if m.grant != 0 || m.spent != 0 || m.reserved != 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].policyID != keys[j].policyID {
			return keys[i].policyID < keys[j].policyID
		}
		return keys[i].bucket < keys[j].bucket
	})
	usage := make([]bucketMove, len(keys))
	for i, k := range keys {
		m := sum[k]
		usage[i] = bucketMove{policyID: k.policyID, bucket: k.bucket, spent: m.spent, reserved: m.reserved, leased: m.grant}
	}
	if err := s.applyUsage(ctx, q, usage); err != nil {
		return err
	}
	if holder == "" {
		return nil
	}
	for _, k := range keys {
		if g := sum[k].grant; g != 0 {
			if _, err := q.ExecContext(ctx, s.q(leaseAddSQL), holder, k.policyID, k.bucket, g); err != nil {
				return fmt.Errorf("update lease: %w", err)
			}
		}
	}
	return nil
}

// lockPolicyIDs locks the given policies in ID order.
func (s *Store) lockPolicyIDs(ctx context.Context, tx *sql.Tx, ids []string) error {
	ids = sortedIDs(ids)
	if len(ids) == 0 {
		return nil
	}
	return s.dialect.LockPolicies(ctx, tx, ids)
}

// acquired is what an acquire found for one lease.
type acquired struct {
	key          leaseKey
	grant        int64
	sums         windowSums
	ours         int64 // this holder's grant on the key before the acquire
	othersLeased int64
	headroom     int64 // limit − spent − reserved − leased before the grant
}

// acquireTx leases headroom for needs[i] on keys[i], for a decision at
// at (the windows are those at at; now is the wall clock), in one
// transaction holding the policies' row locks: for each it reads the
// window's usage, grants leaseSize of the headroom, and, when the call
// does not fit while other processes hold leases on the policy, marks
// those leases wanted so their holders give back what they do not use.
func (s *Store) acquireTx(ctx context.Context, tx *sql.Tx, holder string, keys []leaseKey, pols []policy.Policy, needs []int64, tight []bool, now, at time.Time) ([]acquired, error) {
	q := s.ptx(tx)
	ids := make([]string, len(pols))
	for i, p := range pols {
		ids[i] = p.ID
	}
	if err := s.lockPolicyIDs(ctx, tx, ids); err != nil {
		return nil, err
	}
	if err := s.checkVersions(ctx, q, pols); err != nil {
		return nil, err
	}
	var holders int
	if err := q.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM lease_holders WHERE expires_ns > ?`), now.UnixNano()).Scan(&holders); err != nil {
		return nil, fmt.Errorf("count lease holders: %w", err)
	}
	sums, err := s.sumWindows(ctx, q, holder, pols, at)
	if err != nil {
		return nil, err
	}
	out := make([]acquired, len(keys))
	moves := make([]leaseMove, 0, len(keys))
	for i, k := range keys {
		var ours int64
		err := q.QueryRowContext(ctx, s.q(`SELECT grant_nanos FROM leases WHERE holder_id = ? AND policy_id = ? AND bucket_ns = ?`),
			holder, k.policyID, k.bucket).Scan(&ours)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("read lease: %w", err)
		}
		w := sums[k.policyID]
		headroom := int64(pols[i].Limit) - w.spent - w.reserved - w.leased
		need := needs[i]
		g := int64(0)
		if need > 0 {
			g = leaseSize(headroom, need, holders, tight[i])
		}
		out[i] = acquired{key: k, grant: g, sums: w, ours: ours, othersLeased: w.leased - ours, headroom: headroom}
		if g > 0 {
			moves = append(moves, leaseMove{key: k, grant: g})
		}
		if headroom < need && w.leased-ours > 0 {
			if _, err := q.ExecContext(ctx, s.q(`UPDATE leases SET wanted = ? WHERE policy_id = ? AND holder_id <> ? AND grant_nanos > 0`),
				true, k.policyID, holder); err != nil {
				return nil, fmt.Errorf("ask for leases back: %w", err)
			}
		}
	}
	if err := s.applyLeaseMoves(ctx, q, holder, moves); err != nil {
		return nil, err
	}
	return out, nil
}

// errConfigStale means a policy changed since this process cached it.
var errConfigStale = errors.New("a policy changed since it was read")

// checkVersions makes sure, under the policies' row locks, that each is
// still the active version the caller decided with: headroom is leased
// against the limit in force, never a cached one.
func (s *Store) checkVersions(ctx context.Context, q querier, pols []policy.Policy) error {
	for _, p := range pols {
		var version int
		var active bool
		err := q.QueryRowContext(ctx, s.q(`SELECT version, active FROM policies WHERE id = ?`), p.ID).Scan(&version, &active)
		if err != nil {
			return fmt.Errorf("read policy %s: %w", p.ID, err)
		}
		if version != p.Version || !active {
			return errConfigStale
		}
	}
	return nil
}

// folded is one finished reservation taken out of a lease.
type folded struct {
	requestID      string
	amount, charge int64
	key            leaseKey
}

// foldSQL takes a holder's finished reservations out of its leases and
// returns them with their buckets: in one statement where the dialect
// merges statements (PostgreSQL: the UPDATE's row locks make it wait for a
// finish in progress, and the buckets never change); on SQLite, whose
// write transactions are exclusive, as a read then an update.
// The ANY(ARRAY(…)) condition, redundant with the join, makes PostgreSQL
// fetch the buckets through their primary key: without it the planner
// guesses the UPDATE's row count and hash-joins a sequential scan of all
// reservation_buckets, a table that only grows.
const (
	foldMergedSQL = `WITH f AS (
		UPDATE reservations SET holder = NULL WHERE holder = ? AND status <> 'open'
		RETURNING request_id, amount_nanos, charge_nanos)
	SELECT f.request_id, f.amount_nanos, COALESCE(f.charge_nanos, 0), b.policy_id, b.bucket_ns
	FROM f JOIN reservation_buckets b ON b.request_id = f.request_id
	WHERE b.request_id = ANY(ARRAY(SELECT request_id FROM f))`
	foldReadSQL = `SELECT r.request_id, r.amount_nanos, COALESCE(r.charge_nanos, 0), b.policy_id, b.bucket_ns
	FROM reservations r JOIN reservation_buckets b ON b.request_id = r.request_id
	WHERE r.holder = ? AND r.status <> 'open'`
	foldClearSQL = `UPDATE reservations SET holder = NULL WHERE holder = ? AND status <> 'open'`
)

// foldTx folds holder's finished reservations: each one's charge, up to
// its reserved amount, moves from the lease to usage.spent_nanos of its
// buckets, so spent + leased stays what it was (an overrun's excess was
// spent when the reservation finished). It returns what it folded.
func (s *Store) foldTx(ctx context.Context, q querier, holder string) ([]folded, error) {
	var rows *sql.Rows
	var err error
	if s.dialect.MergeStatements() {
		rows, err = q.QueryContext(ctx, s.q(foldMergedSQL), holder)
	} else {
		rows, err = q.QueryContext(ctx, foldReadSQL, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("fold leases: %w", err)
	}
	var out []folded
	for rows.Next() {
		var f folded
		if err := rows.Scan(&f.requestID, &f.amount, &f.charge, &f.key.policyID, &f.key.bucket); err != nil {
			rows.Close()
			return nil, fmt.Errorf("fold leases: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("fold leases: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fold leases: %w", err)
	}
	if !s.dialect.MergeStatements() && len(out) > 0 {
		if _, err := q.ExecContext(ctx, foldClearSQL, holder); err != nil {
			return nil, fmt.Errorf("fold leases: %w", err)
		}
	}
	moves := make(map[leaseKey]*leaseMove)
	for _, f := range out {
		m := moves[f.key]
		if m == nil {
			m = &leaseMove{key: f.key}
			moves[f.key] = m
		}
		m.grant -= foldCovered(f.amount, f.charge)
		m.spent += foldCovered(f.amount, f.charge)
	}
	list := make([]leaseMove, 0, len(moves))
	for _, m := range moves {
		list = append(list, *m)
	}
	if err := s.applyLeaseMoves(ctx, q, holder, list); err != nil {
		return nil, err
	}
	return out, nil
}

const leasePoliciesSQL = `SELECT DISTINCT policy_id FROM leases WHERE holder_id = ?`

// leasePolicies returns the IDs of the policies holder leases.
func (s *Store) leasePolicies(ctx context.Context, q querier, holder string) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.q(leasePoliciesSQL), holder)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// reclaimSQL detaches a holder's open reservations from its leases,
// returning them with their buckets; as foldSQL, merged or in two steps.
const (
	detachMergedSQL = `WITH f AS (
		UPDATE reservations SET holder = NULL WHERE holder = ? AND status = 'open'
		RETURNING request_id, amount_nanos)
	SELECT f.request_id, f.amount_nanos, b.policy_id, b.bucket_ns
	FROM f JOIN reservation_buckets b ON b.request_id = f.request_id
	WHERE b.request_id = ANY(ARRAY(SELECT request_id FROM f))`
	detachReadSQL = `SELECT r.request_id, r.amount_nanos, b.policy_id, b.bucket_ns
	FROM reservations r JOIN reservation_buckets b ON b.request_id = r.request_id
	WHERE r.holder = ? AND r.status = 'open'`
	detachClearSQL = `UPDATE reservations SET holder = NULL WHERE holder = ? AND status = 'open'`
)

// ReclaimLeases reclaims the leases of every holder whose heartbeat is
// older than the lease TTL at now, or whose process, on this machine, no
// longer runs, and returns how many holders it reclaimed. For each, in one transaction under the policies' row locks:
// its open reservations leave its leases and count as reserved in usage
// (the expiry sweep settles them as unconfirmed when they expire), its
// finished ones are folded, and what is left of its grants returns to the
// budget. Open reservations are detached before finished ones are folded
// so that a finish racing the reclaim is counted exactly once, whichever
// commits first.
func (s *Store) ReclaimLeases(ctx context.Context, now time.Time) (int, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id, name, expires_ns FROM lease_holders`))
	if err != nil {
		return 0, s.wrap(fmt.Errorf("list lease holders: %w", err))
	}
	type candidate struct {
		id   string
		gone bool
	}
	var dead []candidate
	for rows.Next() {
		var id, name string
		var exp int64
		if err := rows.Scan(&id, &name, &exp); err != nil {
			rows.Close()
			return 0, s.wrap(fmt.Errorf("list lease holders: %w", err))
		}
		if exp < now.UnixNano() {
			dead = append(dead, candidate{id: id})
		} else if deadHere(name) {
			dead = append(dead, candidate{id: id, gone: true})
		}
	}
	rows.Close()
	n := 0
	for _, c := range dead {
		ok, err := s.reclaim(ctx, c.id, now, c.gone)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// reclaim reclaims holder's leases if its heartbeat lapsed by now, or,
// with gone, whatever its heartbeat (its process is known to be dead).
func (s *Store) reclaim(ctx context.Context, holder string, now time.Time, gone bool) (bool, error) {
	done := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		q := s.ptx(tx)
		var exp int64
		// Locks the holder row: a reservation insert of the holder's, which
		// takes a key-share lock on it, waits, then finds it gone.
		err := q.QueryRowContext(ctx, s.q(`SELECT expires_ns FROM lease_holders WHERE id = ?`+s.dialect.ForUpdate()), holder).Scan(&exp)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && exp >= now.UnixNano() && !gone) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read lease holder: %w", err)
		}
		ids, err := s.leasePolicies(ctx, q, holder)
		if err != nil {
			return err
		}
		if err := s.lockPolicyIDs(ctx, tx, ids); err != nil {
			return err
		}
		var rows *sql.Rows
		if s.dialect.MergeStatements() {
			rows, err = q.QueryContext(ctx, s.q(detachMergedSQL), holder)
		} else {
			rows, err = q.QueryContext(ctx, detachReadSQL, holder)
		}
		if err != nil {
			return fmt.Errorf("detach reservations: %w", err)
		}
		var moves []leaseMove
		for rows.Next() {
			var id string
			var m leaseMove
			if err := rows.Scan(&id, &m.reserved, &m.key.policyID, &m.key.bucket); err != nil {
				rows.Close()
				return fmt.Errorf("detach reservations: %w", err)
			}
			moves = append(moves, m)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("detach reservations: %w", err)
		}
		if !s.dialect.MergeStatements() && len(moves) > 0 {
			if _, err := q.ExecContext(ctx, detachClearSQL, holder); err != nil {
				return fmt.Errorf("detach reservations: %w", err)
			}
		}
		// The usage rows only: the leases go below, whole.
		if err := s.applyLeaseMoves(ctx, q, "", moves); err != nil {
			return err
		}
		if _, err := s.foldTx(ctx, q, holder); err != nil {
			return err
		}
		lrows, err := q.QueryContext(ctx, s.q(`SELECT policy_id, bucket_ns, grant_nanos FROM leases WHERE holder_id = ?`), holder)
		if err != nil {
			return fmt.Errorf("read leases: %w", err)
		}
		var back []leaseMove
		for lrows.Next() {
			var m leaseMove
			var g int64
			if err := lrows.Scan(&m.key.policyID, &m.key.bucket, &g); err != nil {
				lrows.Close()
				return fmt.Errorf("read leases: %w", err)
			}
			m.grant = -g
			back = append(back, m)
		}
		if err := lrows.Close(); err != nil {
			return fmt.Errorf("read leases: %w", err)
		}
		if err := s.applyLeaseMoves(ctx, q, "", back); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, s.q(`DELETE FROM leases WHERE holder_id = ?`), holder); err != nil {
			return fmt.Errorf("delete leases: %w", err)
		}
		if _, err := q.ExecContext(ctx, s.q(`DELETE FROM lease_holders WHERE id = ?`), holder); err != nil {
			return fmt.Errorf("delete lease holder: %w", err)
		}
		done = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reclaim leases of %s: %w", holder, err)
	}
	return done, nil
}
