package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
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
// the amount on every active policy of the chain, in one transaction:
//
//  1. read the chain (the agent first) and the active policies of every
//     agent on it;
//  2. lock those policies in policy-ID order (PostgreSQL: SELECT … FOR
//     UPDATE; SQLite write transactions are already exclusive), so
//     concurrent callers and processes serialise per policy and never
//     deadlock;
//  3. sum each policy's usage buckets inside its window and call
//     policy.Decide;
//  4. allowed: add the amount to the reserved column of each policy's
//     current bucket (policy.Zones.BucketStart) and insert the reservation with
//     the buckets it holds; denied: insert a denied event of amount zero.
//
// A chain without any active policy is refused with code no_budget unless
// r.AllowUnbudgeted, when the call is unmetered but still reserved, settled
// and recorded. An unknown agent is
// ledger.ErrNotFound; a request ID already reserved is ledger.ErrConflict.
// A policy edited while a reservation waits for its lock applies from the
// next reservation on.
func (s *Store) Reserve(ctx context.Context, r ledger.ReserveRequest) (policy.Decision, error) {
	if err := validateReserve(&r); err != nil {
		return policy.Decision{}, err
	}
	var d policy.Decision
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		q := s.ptx(tx)
		chain, pols, err := s.loadEnforceChain(ctx, q, r.AgentID)
		if err != nil {
			return err
		}
		ids := make([]string, len(pols))
		for i, p := range pols {
			ids[i] = p.Policy.ID
		}
		sort.Strings(ids)
		if len(ids) > 0 {
			if err := s.dialect.LockPolicies(ctx, tx, ids); err != nil {
				return err
			}
		}
		if err := s.fillUsage(ctx, q, pols, r.Now); err != nil {
			return err
		}
		d = policy.Decide(&policy.Request{Chain: chain, Policies: pols, Resource: r.Resource, Price: r.Amount, Currency: r.Currency, AllowUnbudgeted: r.AllowUnbudgeted})
		cids := chainIDs(chain)
		if !d.Allow {
			return s.insertEvent(ctx, q, &ledger.Event{
				Time: r.Now, AgentID: chain[0].ID, AgentName: chain[0].Name, Chain: cids,
				Resource: r.Resource, Operation: r.Operation, Quantity: r.Quantity, Unit: r.Unit,
				Currency: r.Currency, RequestID: r.RequestID, Outcome: policy.OutcomeDenied,
				Code: d.Code, Reason: d.Reason, Upstream: r.Upstream, Unpriced: r.Unpriced,
			})
		}
		moves := make([]bucketMove, 0, len(pols))
		for _, pu := range pols {
			bs, err := s.zones.BucketStart(pu.Policy, r.Now)
			if err != nil {
				return fmt.Errorf("policy %s: bucket: %w", pu.Policy.ID, err)
			}
			moves = append(moves, bucketMove{policyID: pu.Policy.ID, bucket: bs.UnixNano(), reserved: int64(r.Amount)})
		}
		sort.Slice(moves, func(i, j int) bool { return moves[i].policyID < moves[j].policyID })
		resArgs := []any{r.RequestID, chain[0].ID, encodeChain(cids), r.Resource, r.Operation, r.Upstream, int64(r.Amount), r.Currency,
			r.Unpriced, r.Quantity, r.Unit, resOpen, r.Now.UnixNano(), r.Now.Add(r.TTL).UnixNano()}
		if err := s.insertReservation(ctx, q, r.RequestID, moves, resArgs); err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return fmt.Errorf("request %q is already reserved: %w", r.RequestID, ledger.ErrConflict)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return policy.Decision{}, fmt.Errorf("reserve %s: %w", r.RequestID, err)
	}
	return d, nil
}

// Statements that record a reservation.
const (
	reservationInsertSQL = `INSERT INTO reservations
		(request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, status, created_ns, expires_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	bucketInsertSQL = `INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) VALUES (?, ?, ?)`
)

// insertReservation adds the reserved amounts to the usage rows and
// inserts the reservation and the buckets it holds: statement by statement
// on SQLite, in one statement on PostgreSQL, whose data-modifying WITH
// clauses all run to completion.
func (s *Store) insertReservation(ctx context.Context, q querier, requestID string, moves []bucketMove, resArgs []any) error {
	if !s.dialect.MergeStatements() {
		if err := s.applyUsage(ctx, q, moves); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, reservationInsertSQL, resArgs...); err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		}
		for _, m := range moves {
			if _, err := q.ExecContext(ctx, bucketInsertSQL, requestID, m.policyID, m.bucket); err != nil {
				return fmt.Errorf("insert reservation bucket: %w", err)
			}
		}
		return nil
	}
	if len(moves) == 0 {
		if _, err := q.ExecContext(ctx, s.q(reservationInsertSQL), resArgs...); err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		}
		return nil
	}
	usage, args := usageValues(moves)
	var b strings.Builder
	b.WriteString(`WITH u AS (` + usage + `), r AS (` + reservationInsertSQL + `) INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) VALUES `)
	args = append(args, resArgs...)
	for i, m := range moves {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?)")
		args = append(args, requestID, m.policyID, m.bucket)
	}
	if _, err := q.ExecContext(ctx, s.q(b.String()), args...); err != nil {
		return fmt.Errorf("insert reservation: %w", err)
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
