package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// DefaultReservationTTL is the expiry of a reservation whose request gives
// no TTL.
const DefaultReservationTTL = 10 * time.Minute

// Reservation statuses as stored.
const (
	resOpen     = "open"
	resSettled  = "settled"
	resReleased = "released"
	resExpired  = "expired"
)

func validateReserve(r *ledger.ReserveRequest) error {
	switch {
	case r.RequestID == "":
		return fmt.Errorf("reserve: empty request id: %w", ledger.ErrInvalid)
	case r.AgentID == "":
		return fmt.Errorf("reserve: empty agent id: %w", ledger.ErrInvalid)
	case r.Resource == "":
		return fmt.Errorf("reserve: empty resource: %w", ledger.ErrInvalid)
	case r.Amount < 0:
		return fmt.Errorf("reserve: negative amount %s: %w", r.Amount, ledger.ErrInvalid)
	}
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	if r.TTL <= 0 {
		r.TTL = DefaultReservationTTL
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	return nil
}

// Reserve decides over the agent's whole chain and, if allowed, reserves
// the amount on every active policy of the chain:
//
//  1. read the chain (the agent first) and the active policies of every
//     agent on it, from this process's cache (see config.go for how
//     fresh it is);
//  2. decide with policy.Decide against this process's leases on each
//     policy's current bucket (see book.go and docs/ledger-format.md,
//     "Leases"): allowed, the amount is taken from every lease in memory;
//  3. when a lease is missing or short, lease more headroom in one short
//     transaction under the policies' row locks (lease.go), which reads
//     the true usage of every window, and decide again; when the call
//     does not fit while other processes lease headroom on the policy, ask
//     it back and wait for it, up to wantWait;
//  4. write the reservation (holding its leases) or the denied event of
//     amount zero, and return only once that write is durable; a write
//     that fails gives the amount back to the leases.
//
// A chain without any active policy is refused with code no_budget unless
// r.AllowUnbudgeted, when the call is unmetered but still reserved, settled
// and recorded. An unknown agent is ledger.ErrNotFound; a request ID
// already reserved is ledger.ErrConflict.
func (s *Store) Reserve(ctx context.Context, r ledger.ReserveRequest) (policy.Decision, error) {
	if err := validateReserve(&r); err != nil {
		return policy.Decision{}, err
	}
	ce, err := s.chainFor(ctx, r.AgentID)
	if err != nil {
		return policy.Decision{}, fmt.Errorf("reserve %s: %w", r.RequestID, err)
	}
	d, err := s.reserveLeased(ctx, &r, ce)
	if err != nil {
		return policy.Decision{}, fmt.Errorf("reserve %s: %w", r.RequestID, err)
	}
	return d, nil
}

// Statements that record a reservation. A reservation held under leases
// is written only while its holder still exists: a holder reclaimed by
// another process (its heartbeat lapsed) writes nothing more under leases
// that were given back. On PostgreSQL the check takes a key-share lock on
// the holder row, which the reclaim's row lock waits for.
const (
	reservationInsertSQL = `INSERT INTO reservations
		(request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, status, created_ns, expires_ns, holder)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
		WHERE ? IS NULL OR EXISTS (SELECT 1 FROM lease_holders WHERE id = ?)
		ON CONFLICT (request_id) DO NOTHING`
	// pgReservationInsertSQL is both in one statement; it returns a row
	// per bucket, or one row for a reservation without buckets, if the
	// reservation was written.
	pgReservationInsertSQL = `WITH h AS (SELECT id FROM lease_holders WHERE id = CAST(? AS TEXT) FOR KEY SHARE),
	r AS (INSERT INTO reservations
		(request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, status, created_ns, expires_ns, holder)
		SELECT ?, ?, ?, ?, ?, ?, CAST(? AS BIGINT), ?, CAST(? AS BOOLEAN), ?, ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT)
		WHERE CAST(? AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM h)
		ON CONFLICT (request_id) DO NOTHING RETURNING request_id)`
)

// bucketInsertSQL inserts n reservation_buckets rows in one statement.
func bucketInsertSQL(n int) string {
	if n <= len(bucketInserts) {
		return bucketInserts[n-1]
	}
	return bucketInsertText(n)
}

func bucketInsertText(n int) string {
	return `INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) VALUES (?, ?, ?)` + strings.Repeat(`, (?, ?, ?)`, n-1)
}

// bucketInserts are bucketInsertSQL's statements for chains of up to 8
// budgeted agents, prepared on SQLite.
var bucketInserts = func() []string {
	out := make([]string, 8)
	for i := range out {
		out[i] = bucketInsertText(i + 1)
	}
	return out
}()

// nothingWritten marks the failure of an append (see appendTx) that
// wrote nothing, so the rest of its group may still commit.
type nothingWritten struct{ error }

func (e nothingWritten) Unwrap() error { return e.error }

// writeReservation writes r as an open reservation held under keys'
// leases of holder ("" for none), durably.
func (s *Store) writeReservation(ctx context.Context, r *ledger.ReserveRequest, ce chainEntry, keys []leaseKey, holder string) error {
	var hold any
	if holder != "" {
		hold = holder
	}
	args := []any{r.RequestID, ce.chain[0].ID, encodeChain(chainIDs(ce.chain)), r.Resource, r.Operation, r.Upstream, int64(r.Amount), r.Currency,
		r.Unpriced, r.Quantity, r.Unit, resOpen, r.Now.UnixNano(), r.Now.Add(r.TTL).UnixNano(), hold, hold, hold}
	err := s.appendTx(ctx, func(ctx context.Context, q querier) error {
		ok, err := s.insertReservation(ctx, q, args, r.RequestID, keys)
		if err != nil || ok {
			return err
		}
		var one int
		err = q.QueryRowContext(ctx, s.q(`SELECT 1 FROM reservations WHERE request_id = ?`), r.RequestID).Scan(&one)
		switch {
		case err == nil:
			return nothingWritten{fmt.Errorf("request %q is already reserved: %w", r.RequestID, ledger.ErrConflict)}
		case errors.Is(err, sql.ErrNoRows):
			return nothingWritten{errHolderGone}
		default:
			return fmt.Errorf("read reservation: %w", err)
		}
	})
	if err != nil {
		return fmt.Errorf("write reservation: %w", err)
	}
	return nil
}

// insertReservation inserts the reservation and its buckets and reports
// whether it did (false: the request ID exists, or the holder is gone).
func (s *Store) insertReservation(ctx context.Context, q querier, args []any, requestID string, keys []leaseKey) (bool, error) {
	if !s.dialect.MergeStatements() {
		res, err := q.ExecContext(ctx, reservationInsertSQL, args...)
		if err != nil {
			return false, fmt.Errorf("insert reservation: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return false, err
		}
		if len(keys) == 0 {
			return true, nil
		}
		bargs := make([]any, 0, 3*len(keys))
		for _, k := range keys {
			bargs = append(bargs, requestID, k.policyID, k.bucket)
		}
		if _, err := q.ExecContext(ctx, bucketInsertSQL(len(keys)), bargs...); err != nil {
			return false, fmt.Errorf("insert reservation buckets: %w", err)
		}
		return true, nil
	}
	var b strings.Builder
	b.WriteString(pgReservationInsertSQL)
	all := append([]any{args[len(args)-1]}, args[:len(args)-1]...)
	if len(keys) == 0 {
		b.WriteString(` SELECT request_id FROM r`)
	} else {
		b.WriteString(` INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) SELECT r.request_id, v.p, v.b FROM r CROSS JOIN (VALUES `)
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(CAST(? AS TEXT), CAST(? AS BIGINT))")
			all = append(all, k.policyID, k.bucket)
		}
		b.WriteString(`) AS v(p, b) RETURNING request_id`)
	}
	rows, err := q.QueryContext(ctx, s.q(b.String()), all...)
	if err != nil {
		return false, fmt.Errorf("insert reservation: %w", err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Close(); err != nil {
		return false, fmt.Errorf("insert reservation: %w", err)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("insert reservation: %w", err)
	}
	return n > 0, nil
}

// writeDenial records a denied event of amount zero for r, durably.
func (s *Store) writeDenial(ctx context.Context, r *ledger.ReserveRequest, ce chainEntry, d policy.Decision) error {
	ev := ledger.Event{
		Time: r.Now, AgentID: ce.chain[0].ID, AgentName: ce.chain[0].Name, Chain: chainIDs(ce.chain),
		Resource: r.Resource, Operation: r.Operation, Quantity: r.Quantity, Unit: r.Unit,
		Currency: r.Currency, RequestID: r.RequestID, Outcome: policy.OutcomeDenied,
		Code: d.Code, Reason: d.Reason, Upstream: r.Upstream, Unpriced: r.Unpriced,
	}
	err := s.appendTx(ctx, func(ctx context.Context, q querier) error {
		return s.insertEvent(ctx, q, &ev)
	})
	if err != nil {
		return fmt.Errorf("record denial: %w", err)
	}
	return nil
}

// RecordDenial records a denial decided outside the store (for example an
// unpriced resource under strict pricing) as a denied event of amount zero,
// so the audit trail shows every decision. It reserves nothing.
func (s *Store) RecordDenial(ctx context.Context, r ledger.ReserveRequest, d policy.Decision) (ledger.Event, error) {
	if r.RequestID == "" || r.AgentID == "" {
		return ledger.Event{}, fmt.Errorf("record denial: empty request or agent id: %w", ledger.ErrInvalid)
	}
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	var ev ledger.Event
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		q := s.ptx(tx)
		chain, _, err := s.loadEnforceChain(ctx, q, r.AgentID)
		if err != nil {
			return err
		}
		ev = ledger.Event{
			Time: r.Now, AgentID: chain[0].ID, AgentName: chain[0].Name, Chain: chainIDs(chain),
			Resource: r.Resource, Operation: r.Operation, Quantity: r.Quantity, Unit: r.Unit,
			Currency: r.Currency, RequestID: r.RequestID, Outcome: policy.OutcomeDenied,
			Code: d.Code, Reason: d.Reason, Upstream: r.Upstream, Unpriced: r.Unpriced,
		}
		return s.insertEvent(ctx, q, &ev)
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("record denial %s: %w", r.RequestID, err)
	}
	return ev, nil
}

// GetReservation reads a reservation by request ID.
func (s *Store) GetReservation(ctx context.Context, requestID string) (ledger.Reservation, error) {
	var (
		r                 ledger.Reservation
		chain             string
		amount, cns, exns int64
	)
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, status, created_ns, expires_ns
		FROM reservations WHERE request_id = ?`), requestID).
		Scan(&r.RequestID, &r.AgentID, &chain, &r.Resource, &r.Operation, &r.Upstream, &amount, &r.Currency, &r.Status, &cns, &exns)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Reservation{}, fmt.Errorf("reservation %q: %w", requestID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Reservation{}, s.wrap(fmt.Errorf("read reservation %s: %w", requestID, err))
	}
	if r.Chain, err = decodeChain(chain); err != nil {
		return ledger.Reservation{}, err
	}
	r.Amount = money.Amount(amount)
	r.CreatedAt = time.Unix(0, cns).UTC()
	r.ExpiresAt = time.Unix(0, exns).UTC()
	return r, nil
}
