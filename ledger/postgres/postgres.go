// Package postgres opens Caracal's shared store on PostgreSQL through a
// pgx/v5 connection pool, for several proxy processes sharing budgets.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/migrations"
)

// Options configure Open.
type Options struct {
	// SkipSchemaCheck opens an outdated schema, for migrations.
	SkipSchemaCheck bool
	// MaxConns caps the pool; 0 means pgxpool's default.
	MaxConns int32
}

// integratorLockKey is the advisory lock that elects one Merkle integrator
// among processes sharing the database ("caracal" in ASCII).
const integratorLockKey = 0x636172616361

// Open connects to the database at url (postgres://…).
func Open(ctx context.Context, databaseURL string, o Options) (*sqlstore.Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("invalid database URL %s: %w", Redact(databaseURL), err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(databaseURL), err)
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", Redact(databaseURL), err)
	}
	s, err := sqlstore.New(ctx, db, nil, Dialect{}, sqlstore.Options{
		Location:        Redact(databaseURL),
		Migrations:      migrations.Postgres(),
		SkipSchemaCheck: o.SkipSchemaCheck,
	})
	if err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Redact hides the password in a database URL.
func Redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil || u.User == nil {
		return databaseURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Dialect is PostgreSQL's sqlstore.Dialect.
type Dialect struct{}

// Name implements sqlstore.Dialect.
func (Dialect) Name() string { return "postgres" }

// Goose implements sqlstore.Dialect.
func (Dialect) Goose() goose.Dialect { return goose.DialectPostgres }

// NumberedPlaceholders implements sqlstore.Dialect.
func (Dialect) NumberedPlaceholders() bool { return true }

// LockPolicies locks the policies' rows FOR UPDATE in the order given, so
// two transactions over overlapping chains can never deadlock.
func (Dialect) LockPolicies(ctx context.Context, tx *sql.Tx, ids []string) error {
	for _, id := range ids {
		var got string
		if err := tx.QueryRowContext(ctx, `SELECT id FROM policies WHERE id = $1 FOR UPDATE`, id).Scan(&got); err != nil {
			return fmt.Errorf("lock policy %s: %w", id, err)
		}
	}
	return nil
}

// LockIntegrator takes a transaction-scoped advisory lock.
func (Dialect) LockIntegrator(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(integratorLockKey))
	return err
}

// IsUniqueViolation implements sqlstore.Dialect.
func (Dialect) IsUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

// IsUnavailable implements sqlstore.Dialect.
func (Dialect) IsUnavailable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-03: admin shutdown, crash, cannot connect now.
		return len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:3] == "57P")
	}
	return errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err)
}
