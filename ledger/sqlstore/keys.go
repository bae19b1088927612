package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

// AddSigningKey implements ledger.Merkle.
func (s *Store) AddSigningKey(ctx context.Context, k ledger.SigningKey) error {
	if k.ID == "" || k.PublicKey == "" {
		return fmt.Errorf("add signing key: empty id or public key: %w", ledger.ErrInvalid)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO signing_keys (id, name, public_key, created_ns, retired_ns) VALUES (?, ?, ?, ?, ?)`),
		k.ID, k.Name, k.PublicKey, toNS(k.CreatedAt), toNullNS(k.RetiredAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return errorf(ledger.ErrConflict, "signing key %s is already registered", k.ID)
		}
		return s.wrap(fmt.Errorf("add signing key: %w", err))
	}
	return nil
}

// RetireSigningKey implements ledger.Merkle. The key stays in the table so
// the checkpoints it signed still verify.
func (s *Store) RetireSigningKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE signing_keys SET retired_ns = ? WHERE id = ? AND retired_ns IS NULL`), toNS(at), id)
	if err != nil {
		return s.wrap(fmt.Errorf("retire signing key: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var x int
		if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT 1 FROM signing_keys WHERE id = ?`), id).Scan(&x); errors.Is(err, sql.ErrNoRows) {
			return errorf(ledger.ErrNotFound, "signing key %s not found", id)
		}
		return errorf(ledger.ErrConflict, "signing key %s is already retired", id)
	}
	return nil
}

// SigningKeys implements ledger.Merkle, oldest first.
func (s *Store) SigningKeys(ctx context.Context) ([]ledger.SigningKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, name, public_key, created_ns, retired_ns FROM signing_keys ORDER BY created_ns, id`)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
	}
	defer rows.Close()
	var out []ledger.SigningKey
	for rows.Next() {
		var k ledger.SigningKey
		var created int64
		var retired sql.NullInt64
		if err := rows.Scan(&k.ID, &k.Name, &k.PublicKey, &created, &retired); err != nil {
			return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
		}
		k.CreatedAt, k.RetiredAt = fromNS(created), fromNullNS(retired)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
	}
	return out, nil
}
