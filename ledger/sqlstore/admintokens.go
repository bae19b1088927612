package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
)

// adminTokenCols are the columns scanAdminToken reads, in order.
const adminTokenCols = `id, name, prefix, read_only, created_ns, revoked_ns`

func scanAdminToken(r rowScanner) (ledger.AdminToken, error) {
	var (
		t       ledger.AdminToken
		created int64
		revoked sql.NullInt64
	)
	if err := r.Scan(&t.ID, &t.Name, &t.Prefix, &t.ReadOnly, &created, &revoked); err != nil {
		return ledger.AdminToken{}, err
	}
	t.CreatedAt, t.RevokedAt = fromNS(created), fromNullNS(revoked)
	return t, nil
}

// CreateAdminToken implements ledger.AdminTokens.
func (s *Store) CreateAdminToken(ctx context.Context, name string, hash []byte, prefix string, readOnly bool) (ledger.AdminToken, error) {
	if len(hash) != keyHashLen {
		return ledger.AdminToken{}, errorf(ledger.ErrInvalid, "token hash must be %d bytes (SHA-256), got %d", keyHashLen, len(hash))
	}
	if name == "" {
		return ledger.AdminToken{}, errorf(ledger.ErrInvalid, "token name is empty")
	}
	t := ledger.AdminToken{ID: uuid.Must(uuid.NewV7()).String(), Name: name, Prefix: prefix, ReadOnly: readOnly, CreatedAt: fromNS(toNS(now()))}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO admin_tokens (id, name, prefix, hash, read_only, created_ns, revoked_ns)
		VALUES (?, ?, ?, ?, ?, ?, NULL)`), t.ID, t.Name, t.Prefix, hash, t.ReadOnly, toNS(t.CreatedAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return ledger.AdminToken{}, errorf(ledger.ErrConflict, "admin token %q already exists", name)
		}
		return ledger.AdminToken{}, s.wrap(fmt.Errorf("insert admin token %q: %w", name, err))
	}
	return t, nil
}

// RevokeAdminToken implements ledger.AdminTokens.
func (s *Store) RevokeAdminToken(ctx context.Context, idOrName string) (ledger.AdminToken, error) {
	var t ledger.AdminToken
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanAdminToken(tx.QueryRowContext(ctx, s.q(`SELECT `+adminTokenCols+` FROM admin_tokens WHERE id = ? OR name = ?`), idOrName, idOrName))
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ledger.ErrNotFound, "admin token %q not found", idOrName)
		}
		if err != nil {
			return fmt.Errorf("read admin token %q: %w", idOrName, err)
		}
		if t.RevokedAt != nil {
			return errorf(ledger.ErrConflict, "admin token %q already revoked at %s", t.Name, t.RevokedAt.Format(time.RFC3339))
		}
		at := fromNS(toNS(now()))
		res, err := tx.ExecContext(ctx, s.q(`UPDATE admin_tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL`), toNS(at), t.ID)
		if err != nil {
			return fmt.Errorf("revoke admin token %q: %w", t.Name, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errorf(ledger.ErrConflict, "admin token %q already revoked", t.Name)
		}
		t.RevokedAt = &at
		return nil
	})
	if err != nil {
		return ledger.AdminToken{}, err
	}
	return t, nil
}

// ListAdminTokens implements ledger.AdminTokens.
func (s *Store) ListAdminTokens(ctx context.Context) ([]ledger.AdminToken, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+adminTokenCols+` FROM admin_tokens ORDER BY created_ns, id`))
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list admin tokens: %w", err))
	}
	defer rows.Close()
	out := []ledger.AdminToken{}
	for rows.Next() {
		t, err := scanAdminToken(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("list admin tokens: %w", err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("list admin tokens: %w", err))
	}
	return out, nil
}

// AdminTokenByHash implements ledger.AdminTokens. It reads the database on
// every call, with no cache, so a revocation takes effect on the very next
// request.
func (s *Store) AdminTokenByHash(ctx context.Context, hash []byte) (ledger.AdminToken, error) {
	t, err := scanAdminToken(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+adminTokenCols+` FROM admin_tokens WHERE hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.AdminToken{}, errorf(ledger.ErrNotFound, "no admin token with this hash")
	}
	if err != nil {
		return ledger.AdminToken{}, s.wrap(fmt.Errorf("read admin token: %w", err))
	}
	return t, nil
}
