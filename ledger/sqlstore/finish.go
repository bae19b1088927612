package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// finish is one way a reservation ends.
type finish struct {
	requestID string
	status    string // settled, released or expired
	outcome   policy.Outcome
	// amount is the charge; nil charges the reserved amount.
	amount   *money.Amount
	tokens   policy.Tokens
	quantity string
	unit     string
	code     policy.Code
	reason   string
	now      time.Time
	// onlyIfExpired makes the finish a no-op unless the reservation is still
	// open and expired at now (the sweep must not race a late settlement).
	onlyIfExpired bool
	// linger lets the write wait briefly for company (SettleRequest.Background).
	linger bool
}

// errNotOpen is returned by finishTx when the reservation is already
// finished; the caller then returns the first event.
var errNotOpen = errors.New("reservation is not open")

// Statements that finish a reservation on SQLite. The conditional UPDATE
// makes the finish happen exactly once: a second finisher finds no open row.
// The agent's name comes from agentName (config.go), not a subselect per
// finish.
const (
	finishSQL = `UPDATE reservations SET status = ?, event_id = ?, charge_nanos = CASE WHEN ? THEN 0 ELSE COALESCE(?, amount_nanos) END
		WHERE request_id = ? AND status = 'open'
		RETURNING agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, holder`
	finishExpiredSQL = `UPDATE reservations SET status = ?, event_id = ?, charge_nanos = CASE WHEN ? THEN 0 ELSE COALESCE(?, amount_nanos) END
		WHERE request_id = ? AND status = 'open' AND expires_ns <= ?
		RETURNING agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, holder`
	bucketsSelectSQL = `SELECT policy_id, bucket_ns FROM reservation_buckets WHERE request_id = ? ORDER BY policy_id`
	agentNameSQL     = `SELECT name FROM agents WHERE id = ?`
)

// event returns the event that f records for a reservation whose stored
// fields ev already holds, with its charge: f.amount, or the reserved
// amount when nil, or zero for a release.
func (f finish) event(ev ledger.Event, evID string, reserved money.Amount) ledger.Event {
	charge := reserved
	if f.amount != nil {
		charge = *f.amount
	}
	if f.status == resReleased {
		charge = 0
	}
	ev.ID = evID
	ev.Seq = -1
	ev.Time = f.now.UTC()
	ev.Amount = charge
	ev.RequestID = f.requestID
	ev.Outcome = f.outcome
	ev.Code = f.code
	ev.Reason = f.reason
	ev.Tokens = f.tokens
	if f.quantity != "" {
		ev.Quantity = f.quantity
	}
	if f.unit != "" {
		ev.Unit = f.unit
	}
	return ev
}

// finishTx ends an open reservation inside the transaction q (SQLite): it marks the
// reservation finished with its charge and, unless the reservation is
// held under a lease (whose holder folds the charge into usage later),
// moves the reserved amount out of exactly the buckets it was reserved in,
// spending the charge there; then it records the event. It returns
// errNotOpen, having written nothing, if the reservation is not open (or,
// for the sweep, not yet expired).
func (s *Store) finishTx(ctx context.Context, q querier, f finish) (ledger.Event, error) {
	evID := newEventID()
	var charge sql.NullInt64
	if f.amount != nil {
		charge = sql.NullInt64{Int64: int64(*f.amount), Valid: true}
	}
	query, args := finishSQL, []any{f.status, evID, f.status == resReleased, charge, f.requestID}
	if f.onlyIfExpired {
		query, args = finishExpiredSQL, append(args, f.now.UnixNano())
	}
	var (
		ev       ledger.Event
		chain    string
		reserved int64
		holder   sql.NullString
	)
	err := q.QueryRowContext(ctx, s.q(query), args...).Scan(&ev.AgentID, &chain, &ev.Resource, &ev.Operation,
		&ev.Upstream, &reserved, &ev.Currency, &ev.Unpriced, &ev.Quantity, &ev.Unit, &holder)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, nothingWritten{errNotOpen}
	}
	if err != nil {
		return ledger.Event{}, fmt.Errorf("finish reservation: %w", err)
	}
	if ev.AgentName, err = s.agentName(ctx, q, ev.AgentID); err != nil {
		return ledger.Event{}, err
	}
	if ev.Chain, err = decodeChain(chain); err != nil {
		return ledger.Event{}, err
	}
	ev = f.event(ev, evID, money.Amount(reserved))
	if holder.Valid && int64(ev.Amount) <= reserved {
		if err := s.insertEvent(ctx, q, &ev); err != nil {
			return ledger.Event{}, err
		}
		return ev, nil
	}
	rows, err := q.QueryContext(ctx, s.q(bucketsSelectSQL), f.requestID)
	if err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	var moves []bucketMove
	for rows.Next() {
		m := bucketMove{spent: int64(ev.Amount), reserved: -reserved}
		if holder.Valid {
			// An overrun under a lease: the excess over the reservation was
			// never the lease's, so it is spent at once; the lease's fold
			// adds the rest.
			m = bucketMove{spent: int64(ev.Amount) - reserved}
		}
		if err := rows.Scan(&m.policyID, &m.bucket); err != nil {
			rows.Close()
			return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
		}
		moves = append(moves, m)
	}
	if err := rows.Close(); err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	if err := rows.Err(); err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	if err := s.applyUsage(ctx, q, moves); err != nil {
		return ledger.Event{}, err
	}
	if err := s.insertEvent(ctx, q, &ev); err != nil {
		return ledger.Event{}, err
	}
	return ev, nil
}

// pgFinishSQL finishes a reservation on PostgreSQL in one statement, so in
// one round trip and its own implicit transaction: the UPDATE marks the
// reservation finished (it locks the row; a concurrent finisher waits,
// then finds it no longer open and gets no row), the usage rows of its
// buckets move from reserved to spent (inserted in policy-ID order, so row
// locks are taken in the same order as everywhere else), and the event and
// its integration_queue entry are inserted. Every data-modifying WITH
// clause runs to completion whether or not the outer SELECT reads it.
// A reservation held under a lease (holder set) leaves usage alone but
// for an overrun's excess, which is spent at once: its holder folds the
// rest of the charge in later, and the UPDATE returns the row as it
// is after any reclaim that detached it, so exactly one of the two counts
// it. Placeholders: status, event id, release flag, charge (NULL for the
// reserved amount), request id, expiry bound (NULL for no bound), time,
// quantity, unit, outcome, code, reason, five token counts, queued time.
const pgFinishSQL = `WITH r AS (
	UPDATE reservations SET status = ?, event_id = ?,
	charge_nanos = CASE WHEN CAST(? AS BOOLEAN) THEN 0 ELSE COALESCE(CAST(? AS BIGINT), amount_nanos) END
	WHERE request_id = ? AND status = 'open' AND (CAST(? AS BIGINT) IS NULL OR expires_ns <= CAST(? AS BIGINT))
	RETURNING event_id, request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, holder, charge_nanos
), c AS (
	SELECT r.charge_nanos AS charge, r.amount_nanos AS reserved FROM r
), u AS (
	INSERT INTO usage (policy_id, bucket_ns, spent_nanos, reserved_nanos)
	SELECT b.policy_id, b.bucket_ns,
		CASE WHEN r.holder IS NULL THEN c.charge ELSE c.charge - c.reserved END,
		CASE WHEN r.holder IS NULL THEN -c.reserved ELSE 0 END
	FROM reservation_buckets b JOIN r ON b.request_id = r.request_id CROSS JOIN c
	WHERE r.holder IS NULL OR c.charge > c.reserved
	ORDER BY b.policy_id
	ON CONFLICT (policy_id, bucket_ns) DO UPDATE SET
	spent_nanos = usage.spent_nanos + excluded.spent_nanos,
	reserved_nanos = usage.reserved_nanos + excluded.reserved_nanos
), e AS (
	INSERT INTO events
	(id, time_ns, agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency,
	 request_id, outcome, code, reason, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
	 upstream, unpriced)
	SELECT r.event_id, CAST(? AS BIGINT), r.agent_id, (SELECT name FROM agents a WHERE a.id = r.agent_id), r.chain, r.resource, r.operation,
	 COALESCE(NULLIF(CAST(? AS TEXT), ''), r.quantity), COALESCE(NULLIF(CAST(? AS TEXT), ''), r.unit), c.charge, r.currency,
	 r.request_id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT),
	 CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), r.upstream, r.unpriced
	FROM r CROSS JOIN c
	RETURNING pk, id, agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency, upstream, unpriced
), q AS (
	INSERT INTO integration_queue (event_pk, event_id, queued_ns) SELECT pk, id, CAST(? AS BIGINT) FROM e
)
SELECT agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency, upstream, unpriced FROM e`

// finishPG is finishTx for PostgreSQL, in one statement (pgFinishSQL).
func (s *Store) finishPG(ctx context.Context, f finish) (ledger.Event, error) {
	evID := newEventID()
	var bound, charge sql.NullInt64
	if f.onlyIfExpired {
		bound = sql.NullInt64{Int64: f.now.UnixNano(), Valid: true}
	}
	if f.amount != nil {
		charge = sql.NullInt64{Int64: int64(*f.amount), Valid: true}
	}
	// The event returned is built from the row the database wrote, so it
	// is exactly what GetEvent reads back.
	ev := f.event(ledger.Event{}, evID, 0)
	var (
		chain  string
		amount int64
	)
	err := s.db.QueryRowContext(ctx, s.q(pgFinishSQL),
		f.status, evID, f.status == resReleased, charge, f.requestID, bound, bound,
		ev.Time.UnixNano(), f.quantity, f.unit, string(f.outcome), string(f.code), f.reason,
		f.tokens.Input, f.tokens.Output, f.tokens.CachedRead, f.tokens.CacheWrite, f.tokens.Reasoning,
		time.Now().UnixNano()).
		Scan(&ev.AgentID, &ev.AgentName, &chain, &ev.Resource, &ev.Operation, &ev.Quantity, &ev.Unit, &amount, &ev.Currency, &ev.Upstream, &ev.Unpriced)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, errNotOpen
	}
	if err != nil {
		return ledger.Event{}, s.wrap(fmt.Errorf("finish reservation: %w", err))
	}
	if ev.Chain, err = decodeChain(chain); err != nil {
		return ledger.Event{}, err
	}
	ev.Amount = money.Amount(amount)
	return ev, nil
}

// finishOnce ends a reservation in its own transaction, or returns
// errNotOpen.
func (s *Store) finishOnce(ctx context.Context, f finish) (ledger.Event, error) {
	if s.dialect.MergeStatements() {
		return s.finishPG(ctx, f)
	}
	var ev ledger.Event
	fn := func(ctx context.Context, q querier) error {
		var err error
		ev, err = s.finishTx(ctx, q, f)
		return err
	}
	if f.linger {
		return ev, s.lingerTx(ctx, fn)
	}
	return ev, s.appendTx(ctx, fn)
}

// finish runs finishTx in its own transaction. If the reservation was
// already finished it returns the event of the first finish; an unknown
// request ID is ledger.ErrNotFound.
func (s *Store) finish(ctx context.Context, f finish) (ledger.Event, error) {
	ev, err := s.finishOnce(ctx, f)
	if err == nil {
		s.finished(f.requestID, ev.Amount)
	}
	if errors.Is(err, errNotOpen) {
		return s.firstEvent(ctx, f.requestID)
	}
	if err != nil {
		return ledger.Event{}, err
	}
	return ev, nil
}

// firstEvent returns the event that finished a reservation.
func (s *Store) firstEvent(ctx context.Context, requestID string) (ledger.Event, error) {
	var status string
	var evID sql.NullString
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT status, event_id FROM reservations WHERE request_id = ?`), requestID).Scan(&status, &evID)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, fmt.Errorf("reservation %q: %w", requestID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Event{}, s.wrap(fmt.Errorf("read reservation %s: %w", requestID, err))
	}
	if !evID.Valid {
		// A finished reservation always names its event; this one is not finished.
		return ledger.Event{}, fmt.Errorf("reservation %q is still %s: %w", requestID, status, errNotOpen)
	}
	return s.getEvent(ctx, s.rdb, evID.String)
}

// Settle replaces the reservation with the actual amount: the reserved
// amount leaves every bucket it was reserved in and r.Amount is spent in
// those same buckets (even if settlement happens after the window turned),
// the reservation is marked settled and a charged or unconfirmed event is
// recorded, in one transaction. Settling again, or settling a released or
// expired reservation, returns the first event unchanged.
func (s *Store) Settle(ctx context.Context, r ledger.SettleRequest) (ledger.Event, error) {
	if r.RequestID == "" {
		return ledger.Event{}, fmt.Errorf("settle: empty request id: %w", ledger.ErrInvalid)
	}
	if r.Amount < 0 {
		return ledger.Event{}, fmt.Errorf("settle %s: negative amount %s: %w", r.RequestID, r.Amount, ledger.ErrInvalid)
	}
	switch r.Outcome {
	case "":
		r.Outcome = policy.OutcomeCharged
	case policy.OutcomeCharged, policy.OutcomeUnconfirmed:
	default:
		return ledger.Event{}, fmt.Errorf("settle %s: outcome %q: want charged or unconfirmed: %w", r.RequestID, r.Outcome, ledger.ErrInvalid)
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	amt := r.Amount
	ev, err := s.finish(ctx, finish{
		requestID: r.RequestID, status: resSettled, outcome: r.Outcome, amount: &amt, code: r.Code,
		tokens: r.Tokens, quantity: r.Quantity, unit: r.Unit, reason: r.Reason, now: r.Now, linger: r.Background,
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("settle %s: %w", r.RequestID, err)
	}
	return ev, nil
}

// Release frees a reservation whose call never ran: the reserved amount
// leaves its buckets and a refunded event of amount zero is recorded.
// Releasing again, or releasing a settled reservation, returns the first
// event.
func (s *Store) Release(ctx context.Context, requestID, reason string) (ledger.Event, error) {
	if requestID == "" {
		return ledger.Event{}, fmt.Errorf("release: empty request id: %w", ledger.ErrInvalid)
	}
	ev, err := s.finish(ctx, finish{
		requestID: requestID, status: resReleased, outcome: policy.OutcomeRefunded,
		reason: reason, now: time.Now(),
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("release %s: %w", requestID, err)
	}
	return ev, nil
}

// expireBatch bounds how many expired reservations one sweep query lists.
const expireBatch = 500

// expiredListSQL lists open reservations expired at a time, oldest first.
// The literal status lets the partial index reservations_open answer it.
const expiredListSQL = `SELECT request_id FROM reservations WHERE status = 'open' AND expires_ns <= ? ORDER BY expires_ns LIMIT ?`

// ExpireReservations settles every open reservation with expires_ns ≤ now
// as an unconfirmed charge of the full reserved amount (an outcome that is
// unknown is never silently refunded), each in its own transaction, and
// returns how many it settled. A reservation settled concurrently by its
// caller is left to that settlement.
func (s *Store) ExpireReservations(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for {
		rows, err := s.rdb.QueryContext(ctx, s.q(expiredListSQL), now.UnixNano(), expireBatch)
		if err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		if err := rows.Err(); err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		done := 0
		for _, id := range ids {
			ev, err := s.finishOnce(ctx, finish{
				requestID: id, status: resExpired, outcome: policy.OutcomeUnconfirmed,
				reason: "reservation expired with its outcome unknown", now: now, onlyIfExpired: true,
			})
			if errors.Is(err, errNotOpen) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("expire %s: %w", id, err)
			}
			s.finished(id, ev.Amount)
			n++
			done++
		}
		if len(ids) < expireBatch || done == 0 {
			return n, nil
		}
	}
}

// finished tells this process's book that it finished requestID with
// charge.
func (s *Store) finished(requestID string, charge money.Amount) {
	s.lz.mu.Lock()
	s.lz.finish(requestID, int64(charge))
	s.lz.mu.Unlock()
}
