package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Statements that append an event.
const (
	eventInsertSQL = `INSERT INTO events
		(id, time_ns, agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency,
		 request_id, outcome, code, reason, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
		 upstream, unpriced)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	queueInsertSQL = `INSERT INTO integration_queue (event_pk, event_id, queued_ns) VALUES (?, ?, ?)`
)

// insertEvent appends ev to the ledger and queues it for Merkle
// integration, inside the transaction q: every event insert goes through
// here, so an event is committed if and only if it is queued. It fills in
// ev.ID (a new UUID) when empty and sets ev.Seq to -1 (not yet integrated).
func (s *Store) insertEvent(ctx context.Context, q querier, ev *ledger.Event) error {
	if ev.ID == "" {
		ev.ID = newEventID()
	}
	if ev.Currency == "" {
		ev.Currency = money.DefaultCurrency
	}
	ev.Time = ev.Time.UTC()
	ev.Seq = -1
	args := []any{ev.ID, ev.Time.UnixNano(), ev.AgentID, ev.AgentName, encodeChain(ev.Chain), ev.Resource, ev.Operation,
		ev.Quantity, ev.Unit, int64(ev.Amount), ev.Currency, ev.RequestID, string(ev.Outcome), string(ev.Code), ev.Reason,
		ev.Tokens.Input, ev.Tokens.Output, ev.Tokens.CachedRead, ev.Tokens.CacheWrite, ev.Tokens.Reasoning,
		ev.Upstream, ev.Unpriced}
	queued := time.Now().UnixNano()
	if s.dialect.MergeStatements() {
		// One round trip: the queue entry rides in the event's statement.
		query := `WITH e AS (` + eventInsertSQL + ` RETURNING pk, id) INSERT INTO integration_queue (event_pk, event_id, queued_ns) SELECT pk, id, CAST(? AS BIGINT) FROM e`
		if _, err := q.ExecContext(ctx, s.q(query), append(args, queued)...); err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		return nil
	}
	// The new row's pk is its rowid, which the driver reports without the
	// cost of a RETURNING row.
	res, err := q.ExecContext(ctx, eventInsertSQL, args...)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	pk, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if _, err := q.ExecContext(ctx, queueInsertSQL, pk, ev.ID, queued); err != nil {
		return fmt.Errorf("queue event for integration: %w", err)
	}
	return nil
}

// newEventID returns a new event ID: a version 7 UUID, which begins with
// its creation time, so that the unique indexes on event IDs (events,
// integration_queue, leaves) grow at their right edge instead of at a
// random page, which keeps the pages each commit writes few.
func newEventID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// EventColumns is the select list that ScanEvent reads, over the events
// table aliased e and a LEFT JOIN of leaves aliased l (for the sequence
// number): `SELECT ` + EventColumns + ` FROM events e LEFT JOIN leaves l ON
// l.event_id = e.id`.
const EventColumns = `COALESCE(l.seq, -1), e.id, e.time_ns, e.agent_id, e.agent_name, e.chain, e.resource, e.operation,
	e.quantity, e.unit, e.amount_nanos, e.currency, e.request_id, e.outcome, e.code, e.reason,
	e.input_tokens, e.output_tokens, e.cached_tokens, e.cache_write_tokens, e.reasoning_tokens, e.upstream, e.unpriced`

// eventFrom is the FROM clause that goes with EventColumns.
const eventFrom = ` FROM events e LEFT JOIN leaves l ON l.event_id = e.id`

// ScanEvent reads one row selected with EventColumns.
func ScanEvent(sc interface{ Scan(...any) error }) (ledger.Event, error) {
	var (
		ev            ledger.Event
		tns, amount   int64
		chain         string
		outcome, code string
	)
	if err := sc.Scan(&ev.Seq, &ev.ID, &tns, &ev.AgentID, &ev.AgentName, &chain, &ev.Resource, &ev.Operation,
		&ev.Quantity, &ev.Unit, &amount, &ev.Currency, &ev.RequestID, &outcome, &code, &ev.Reason,
		&ev.Tokens.Input, &ev.Tokens.Output, &ev.Tokens.CachedRead, &ev.Tokens.CacheWrite, &ev.Tokens.Reasoning,
		&ev.Upstream, &ev.Unpriced); err != nil {
		return ledger.Event{}, err
	}
	var err error
	if ev.Chain, err = decodeChain(chain); err != nil {
		return ledger.Event{}, err
	}
	ev.Time = time.Unix(0, tns).UTC()
	ev.Amount = money.Amount(amount)
	ev.Outcome = policy.Outcome(outcome)
	ev.Code = policy.Code(code)
	return ev, nil
}

func (s *Store) getEvent(ctx context.Context, q querier, id string) (ledger.Event, error) {
	ev, err := ScanEvent(q.QueryRowContext(ctx, s.q(`SELECT `+EventColumns+eventFrom+` WHERE e.id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, fmt.Errorf("event %q: %w", id, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Event{}, s.wrap(fmt.Errorf("read event %s: %w", id, err))
	}
	return ev, nil
}

// GetEvent reads one event by ID; Seq is -1 until it is integrated.
func (s *Store) GetEvent(ctx context.Context, id string) (ledger.Event, error) {
	return s.getEvent(ctx, s.rdb, id)
}

// where builds the WHERE clause of an event filter.
func (s *Store) where(f ledger.EventFilter) (string, []any) {
	var conds []string
	var args []any
	if len(f.AgentIDs) > 0 {
		conds = append(conds, "e.agent_id IN (?"+strings.Repeat(", ?", len(f.AgentIDs)-1)+")")
		for _, id := range f.AgentIDs {
			args = append(args, id)
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, "e.time_ns >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "e.time_ns < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.Resource != "" {
		c, a := s.dialect.MatchGlob("e.resource", f.Resource)
		conds = append(conds, c)
		args = append(args, a)
	}
	if f.Outcome != "" {
		conds = append(conds, "e.outcome = ?")
		args = append(args, string(f.Outcome))
	}
	if f.Integrated {
		conds = append(conds, "l.seq >= ?")
		args = append(args, f.FromSeq)
	}
	if f.BeforeID != "" {
		conds = append(conds, "e.pk < (SELECT b.pk FROM events b WHERE b.id = ?)")
		args = append(args, f.BeforeID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// QueryEvents calls fn for each matching event in ledger order (the order
// events were appended: e.pk; seq order with f.Integrated), or the reverse
// with f.NewestFirst, streaming rows from the read handle so memory stays
// constant however large the ledger. An error from fn stops the query and
// is returned as is.
func (s *Store) QueryEvents(ctx context.Context, f ledger.EventFilter, fn func(ledger.Event) error) error {
	w, args := s.where(f)
	order := ` ORDER BY e.pk`
	if f.Integrated {
		order = ` ORDER BY l.seq`
	}
	if f.NewestFirst {
		order += ` DESC`
	}
	query := `SELECT ` + EventColumns + eventFrom + w + order
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return s.wrap(fmt.Errorf("query events: %w", err))
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := ScanEvent(rows)
		if err != nil {
			return s.wrap(fmt.Errorf("query events: %w", err))
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(fmt.Errorf("query events: %w", err))
	}
	return nil
}

// CountEvents counts the events matching f; f.Limit does not apply.
func (s *Store) CountEvents(ctx context.Context, f ledger.EventFilter) (int64, error) {
	w, args := s.where(f)
	var n int64
	if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT COUNT(*)`+eventFrom+w), args...).Scan(&n); err != nil {
		return 0, s.wrap(fmt.Errorf("count events: %w", err))
	}
	return n, nil
}

// nanosPerDay is the width of a UTC day in Unix nanoseconds.
const nanosPerDay = int64(24 * time.Hour)

// Summary groups the matching events by resource, agent (keyed by agent
// name) or UTC day (keyed YYYY-MM-DD) and currency, in the database. Events
// counts every event in the group, Charged sums the amounts of charged and
// unconfirmed events, Denied counts denials, Unpriced counts events on
// resources no price rule priced. Rows are sorted by key, then
// currency. f.Limit does not apply.
func (s *Store) Summary(ctx context.Context, f ledger.EventFilter, by ledger.SummaryBy) ([]ledger.SummaryRow, error) {
	var key string
	switch by {
	case ledger.ByResource:
		key = "e.resource"
	case ledger.ByAgent:
		key = "e.agent_name"
	case ledger.ByDay:
		// Integer division floors for the non-negative times a ledger holds.
		key = fmt.Sprintf("(e.time_ns / %d)", nanosPerDay)
	default:
		return nil, fmt.Errorf("summary by %q: want resource, agent or day: %w", by, ledger.ErrInvalid)
	}
	f.Limit = 0
	w, args := s.where(f)
	query := `SELECT ` + key + `, e.currency, COUNT(*),
		CAST(COALESCE(SUM(CASE WHEN e.outcome IN ('charged', 'unconfirmed') THEN e.amount_nanos ELSE 0 END), 0) AS BIGINT),
		CAST(COALESCE(SUM(CASE WHEN e.outcome = 'denied' THEN 1 ELSE 0 END), 0) AS BIGINT),
		CAST(COALESCE(SUM(CASE WHEN e.unpriced THEN 1 ELSE 0 END), 0) AS BIGINT)
		FROM events e` + w + ` GROUP BY ` + key + `, e.currency ORDER BY ` + key + `, e.currency`
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("summarise events: %w", err))
	}
	defer rows.Close()
	out := []ledger.SummaryRow{}
	for rows.Next() {
		var r ledger.SummaryRow
		var charged int64
		var k any
		if err := rows.Scan(&k, &r.Currency, &r.Events, &charged, &r.Denied, &r.Unpriced); err != nil {
			return nil, s.wrap(fmt.Errorf("summarise events: %w", err))
		}
		switch v := k.(type) {
		case int64:
			r.Key = time.Unix(0, v*nanosPerDay).UTC().Format(time.DateOnly)
		case []byte:
			r.Key = string(v)
		case string:
			r.Key = v
		default:
			r.Key = fmt.Sprint(v)
		}
		r.Charged = money.Amount(charged)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("summarise events: %w", err))
	}
	return out, nil
}
