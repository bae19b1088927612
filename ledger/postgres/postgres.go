// Package postgres opens Caracal's shared store on PostgreSQL through a
// pgx/v5 connection pool, for several proxy processes sharing budgets.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/migrations"
)

// Options configure Open.
type Options struct {
	// SkipSchemaCheck opens an outdated schema, for migrations.
	SkipSchemaCheck bool
	// LeaseTTL is how long this process's budget leases outlive its last
	// heartbeat (sqlstore.Options.LeaseTTL); zero means the default.
	LeaseTTL time.Duration
	// ManualLeases runs no background lease loop
	// (sqlstore.Options.ManualLeases).
	ManualLeases bool
	// MaxConns caps the pool; 0 means pgxpool's default.
	MaxConns int32
}

// integratorLockKey is the advisory lock that elects one Merkle integrator
// among processes sharing the database ("caracal" in ASCII).
const integratorLockKey = 0x636172616361

// hierarchyLockKey is the advisory lock that serialises changes of agents'
// parents ("caracah" in ASCII), so two crossing re-parentings cannot both
// pass the cycle check.
const hierarchyLockKey = 0x63617261636168

// DefaultConnectTimeout bounds connecting when the URL sets no
// connect_timeout, so an unreachable server fails fast instead of waiting
// for the operating system to give up.
const DefaultConnectTimeout = 10 * time.Second

// Open connects to the database at databaseURL (postgres://…). A URL that
// cannot be parsed fails with ledger.ErrInvalid, a server that cannot be
// reached with ledger.ErrUnavailable; both messages show the URL with its
// password hidden.
func Open(ctx context.Context, databaseURL string, o Options) (*sqlstore.Store, error) {
	shown := Redact(databaseURL)
	if err := checkScheme(databaseURL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, errkind.New(ledger.ErrInvalid, fmt.Sprintf("invalid database URL %s: %s", shown, parseDetail(err)), err)
	}
	if !hasConnectTimeout(databaseURL) {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", shown, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		pool.Close()
		if (Dialect{}).IsUnavailable(err) {
			return nil, fmt.Errorf("cannot reach the database at %s: %w: %w", shown, ledger.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("connect to %s: %w", shown, err)
	}
	s, err := sqlstore.New(ctx, db, nil, Dialect{}, sqlstore.Options{
		Location:        shown,
		Migrations:      migrations.Postgres(),
		SkipSchemaCheck: o.SkipSchemaCheck,
		LeaseTTL:        o.LeaseTTL,
		ManualLeases:    o.ManualLeases,
	})
	if err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	return s, nil
}

// checkScheme refuses URLs that are plainly not PostgreSQL URLs with a
// message saying what is wanted. Key/value connection strings
// ("host=… dbname=…") are left to pgx.
func checkScheme(databaseURL string) error {
	i := strings.Index(databaseURL, "://")
	if i < 0 {
		if strings.Contains(databaseURL, "=") {
			return nil
		}
		return errkind.Errorf(ledger.ErrInvalid, "invalid database URL %s: want postgres://user:password@host:port/database", Redact(databaseURL))
	}
	switch databaseURL[:i] {
	case "postgres", "postgresql":
		return nil
	}
	return errkind.Errorf(ledger.ErrInvalid, "invalid database URL %s: scheme %q is not postgres or postgresql", Redact(databaseURL), databaseURL[:i])
}

// parseDetail drops pgx's own "cannot parse `…`: " prefix, which repeats
// the URL the message already shows.
func parseDetail(err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && strings.HasPrefix(msg, "cannot parse `") {
		if i := strings.Index(msg, "`: "); i >= 0 {
			return msg[i+len("`: "):]
		}
	}
	return msg
}

func hasConnectTimeout(databaseURL string) bool {
	if u, err := url.Parse(databaseURL); err == nil && u.Scheme != "" {
		return u.Query().Has("connect_timeout")
	}
	return strings.Contains(databaseURL, "connect_timeout")
}

// passwordParam matches password parameters in a URL's query or a key/value
// connection string.
var passwordParam = regexp.MustCompile(`((?:^|[?&\s])(?:ssl)?password=)[^&\s]*`)

// userinfoPassword matches the password in user:password@.
var userinfoPassword = regexp.MustCompile(`(://[^:/@]*:)[^@/]*@`)

// Redact hides the passwords in a database URL, even one that does not parse.
func Redact(databaseURL string) string {
	out := userinfoPassword.ReplaceAllString(databaseURL, "${1}xxxxx@")
	return passwordParam.ReplaceAllString(out, "${1}xxxxx")
}

// Dialect is PostgreSQL's sqlstore.Dialect.
type Dialect struct{}

// Name implements sqlstore.Dialect.
func (Dialect) Name() string { return "postgres" }

// Goose implements sqlstore.Dialect.
func (Dialect) Goose() goose.Dialect { return goose.DialectPostgres }

// NumberedPlaceholders implements sqlstore.Dialect.
func (Dialect) NumberedPlaceholders() bool { return true }

// LockPolicies locks the policies' rows FOR UPDATE in the order given
// (callers sort by ID), in one statement: the locking step sits above the
// sort, so rows are locked in ID order and two transactions over
// overlapping chains can never deadlock.
func (Dialect) LockPolicies(ctx context.Context, tx *sql.Tx, ids []string) error {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM policies WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return fmt.Errorf("lock policies: %w", err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("lock policies: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock policies: %w", err)
	}
	if n != len(ids) {
		return fmt.Errorf("lock policies: %d of %d found", n, len(ids))
	}
	return nil
}

// LockIntegrator takes a transaction-scoped advisory lock.
func (Dialect) LockIntegrator(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(integratorLockKey))
	return err
}

// LockHierarchy takes a transaction-scoped advisory lock that serialises
// every change to the agent hierarchy (re-parenting, delegating, creating
// an agent under a parent), so that checks on a chain — cycles, depth —
// hold until the change commits.
func (Dialect) LockHierarchy(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(hierarchyLockKey))
	return err
}

// GroupCommit is false: the server has many writers and groups commits
// itself, so every enforcement write is its own transaction.
func (Dialect) GroupCommit() bool { return false }

// MergeStatements is true: every statement is a network round trip, and
// pgx caches prepared statements itself.
func (Dialect) MergeStatements() bool { return true }

// MatchGlob matches with LIKE, which is case-sensitive, with `\` as the
// escape character so that `%`, `_` and `\` in the pattern are literal.
func (Dialect) MatchGlob(column, pattern string) (string, string) {
	var b strings.Builder
	for _, c := range pattern {
		switch c {
		case '*':
			b.WriteByte('%')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return column + ` LIKE ? ESCAPE '\'`, b.String()
}

// PackColumns returns "": PostgreSQL text cannot hold NUL, so full
// verification reads leaf columns one by one.
func (Dialect) PackColumns(string) string { return "" }

// ForUpdate implements sqlstore.Dialect.
func (Dialect) ForUpdate() string { return " FOR UPDATE" }

// IsUniqueViolation implements sqlstore.Dialect.
func (Dialect) IsUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

// IsUnavailable implements sqlstore.Dialect: the server cannot be reached,
// went away, or is shutting down.
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
	// A connection cut mid-conversation surfaces as an unexpected end of
	// the stream or a reset, not as a net.Error.
	for _, target := range []error{io.ErrUnexpectedEOF, io.EOF, net.ErrClosed, syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.EPIPE, driver.ErrBadConn, sql.ErrConnDone, context.DeadlineExceeded} {
		if errors.Is(err, target) {
			return true
		}
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}
