package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

const alertCols = `id, dedupe_key, webhook, payload, created_ns, attempts, next_attempt_ns, delivered_ns, last_error`

func scanAlert(r rowScanner) (ledger.Alert, error) {
	var (
		a                       ledger.Alert
		payload                 string
		created, next, attempts int64
		delivered               sql.NullInt64
	)
	if err := r.Scan(&a.ID, &a.Key, &a.Webhook, &payload, &created, &attempts, &next, &delivered, &a.LastError); err != nil {
		return ledger.Alert{}, err
	}
	a.Payload, a.CreatedAt, a.Attempts, a.NextAttempt = []byte(payload), fromNS(created), int(attempts), fromNS(next)
	a.DeliveredAt = fromNullNS(delivered)
	return a, nil
}

// EnqueueAlert implements ledger.Alerts. ON CONFLICT DO NOTHING makes the
// insert its own dedupe: two processes enqueueing the same key race
// harmlessly, and neither sees an error.
func (s *Store) EnqueueAlert(ctx context.Context, a ledger.Alert) (bool, error) {
	switch {
	case a.ID == "" || a.Key == "" || a.Webhook == "":
		return false, errorf(ledger.ErrInvalid, "alert: id, key and webhook are required")
	case len(a.Payload) == 0:
		return false, errorf(ledger.ErrInvalid, "alert %s: empty payload", a.ID)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now()
	}
	if a.NextAttempt.IsZero() {
		a.NextAttempt = a.CreatedAt
	}
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO alert_outbox (id, dedupe_key, webhook, payload, created_ns, next_attempt_ns)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), a.ID, a.Key, a.Webhook, string(a.Payload), toNS(a.CreatedAt), toNS(a.NextAttempt))
	if err != nil {
		return false, s.wrap(fmt.Errorf("enqueue alert %s: %w", a.ID, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.wrap(fmt.Errorf("enqueue alert %s: %w", a.ID, err))
	}
	return n == 1, nil
}

// ClaimAlerts implements ledger.Alerts. The candidates are read first and
// each is then taken by an UPDATE that repeats the lease condition: on
// PostgreSQL a concurrent claimer's UPDATE waits for ours and then finds
// the condition false, so exactly one of them gets the row; SQLite's write
// transactions are exclusive anyway.
func (s *Store) ClaimAlerts(ctx context.Context, webhook, owner string, at time.Time, lease time.Duration, max int) ([]ledger.Alert, error) {
	if owner == "" || lease <= 0 || max <= 0 {
		return nil, errorf(ledger.ErrInvalid, "claim alerts: owner, a positive lease and a positive max are required")
	}
	var out []ledger.Alert
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+alertCols+` FROM alert_outbox
WHERE webhook = ? AND delivered_ns IS NULL AND next_attempt_ns <= ? AND lease_until_ns <= ?
ORDER BY created_ns, id LIMIT ?`), webhook, toNS(at), toNS(at), max)
		if err != nil {
			return fmt.Errorf("claim alerts: %w", err)
		}
		var cands []ledger.Alert
		for rows.Next() {
			a, err := scanAlert(rows)
			if err != nil {
				_ = rows.Close()
				return fmt.Errorf("claim alerts: %w", err)
			}
			cands = append(cands, a)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("claim alerts: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim alerts: %w", err)
		}
		for _, a := range cands {
			res, err := tx.ExecContext(ctx, s.q(`UPDATE alert_outbox SET lease_owner = ?, lease_until_ns = ?
WHERE id = ? AND delivered_ns IS NULL AND lease_until_ns <= ?`), owner, toNS(at.Add(lease)), a.ID, toNS(at))
			if err != nil {
				return fmt.Errorf("claim alert %s: %w", a.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("claim alert %s: %w", a.ID, err)
			} else if n == 1 {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AlertDelivered implements ledger.Alerts.
func (s *Store) AlertDelivered(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE alert_outbox SET delivered_ns = ?, lease_owner = '', lease_until_ns = 0, last_error = ''
WHERE id = ? AND delivered_ns IS NULL`), toNS(at), id)
	if err != nil {
		return s.wrap(fmt.Errorf("mark alert %s delivered: %w", id, err))
	}
	return nil
}

// AlertFailed implements ledger.Alerts.
func (s *Store) AlertFailed(ctx context.Context, id, owner string, next time.Time, reason string) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_ns = ?, last_error = ?, lease_owner = '', lease_until_ns = 0
WHERE id = ? AND lease_owner = ? AND delivered_ns IS NULL`), toNS(next), reason, id, owner)
	if err != nil {
		return s.wrap(fmt.Errorf("record failed delivery of alert %s: %w", id, err))
	}
	return nil
}

// GetAlert implements ledger.Alerts.
func (s *Store) GetAlert(ctx context.Context, id string) (ledger.Alert, error) {
	a, err := scanAlert(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alert_outbox WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Alert{}, errorf(ledger.ErrNotFound, "no alert %q", id)
	}
	if err != nil {
		return ledger.Alert{}, s.wrap(fmt.Errorf("read alert %q: %w", id, err))
	}
	return a, nil
}
