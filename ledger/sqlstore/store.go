// Package sqlstore is the SQL implementation of ledger.Store shared by the
// SQLite and PostgreSQL backends. Queries are written once with `?`
// placeholders; a Dialect supplies what differs between the two databases.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Dialect is what differs between SQL backends. The store asks it for
// capabilities and SQL fragments; nothing outside a dialect's definition
// branches on which backend it is.
type Dialect interface {
	// Name is "sqlite" or "postgres", for display (status, `caracal db`)
	// only: behaviour follows the capabilities below, never the name.
	Name() string
	// Goose is the migration dialect.
	Goose() goose.Dialect
	// NumberedPlaceholders says whether queries must use $1, $2 … instead of ?.
	NumberedPlaceholders() bool
	// LockPolicies takes exclusive row locks on the given policies inside
	// tx, in the order given (callers sort by policy ID). SQLite, whose
	// write transactions are already exclusive, does nothing.
	LockPolicies(ctx context.Context, tx *sql.Tx, ids []string) error
	// LockIntegrator makes tx the only integrator until it ends.
	LockIntegrator(ctx context.Context, tx *sql.Tx) error
	// LockHierarchy serialises, for the rest of tx, every transaction that
	// reads a chain to change it, where two concurrent ones could otherwise
	// both pass the cycle check and together close a loop. SQLite, whose
	// write transactions are already exclusive, does nothing.
	LockHierarchy(ctx context.Context, tx *sql.Tx) error
	// GroupCommit reports whether concurrent write transactions of the
	// enforcement path should share one commit, each inside a savepoint
	// (see writeTx): true where there is a single writer and every commit
	// costs an fsync (SQLite in WAL mode).
	GroupCommit() bool
	// MergeStatements reports whether every statement costs a round trip
	// to a server, so that one write's several steps are merged into one
	// statement and the driver caches prepared statements itself
	// (PostgreSQL). When false, statements are cheap to run but costly to
	// parse, so the store prepares the enforcement statements once and runs
	// them one row at a time, with their `?` placeholders as written
	// (SQLite).
	MergeStatements() bool
	// MatchGlob returns a condition on column that is true where it matches
	// pattern, whose only wildcard is `*`, case-sensitively as
	// policy.MatchPattern does, and the condition's one argument.
	MatchGlob(column, pattern string) (cond string, arg string)
	// PackColumns joins comma-separated column expressions into one text
	// expression with a NUL character between values, or returns "" where
	// text cannot hold NUL. Full verification then reads a leaf as one
	// value, which is much cheaper where every column read costs a driver
	// round trip (SQLite).
	PackColumns(columns string) string
	// ForUpdate is the clause that locks the rows a SELECT reads for the
	// rest of the transaction (" FOR UPDATE"), or "" where write
	// transactions are already exclusive.
	ForUpdate() string
	// IsUniqueViolation reports whether err is a unique-constraint error.
	IsUniqueViolation(err error) bool
	// IsUnavailable reports whether err means the database cannot be reached.
	IsUnavailable(err error) bool
}

// Store is ledger.Store over database/sql.
type Store struct {
	// db takes writes. On SQLite it is a single connection whose
	// transactions begin IMMEDIATE, so writers queue in Go rather than
	// spinning on SQLITE_BUSY.
	db *sql.DB
	// rdb takes reads that may run beside writes (WAL readers on SQLite);
	// on PostgreSQL it is the same pool as db.
	rdb      *sql.DB
	dialect  Dialect
	location string
	fsys     fs.FS
	// rebound caches queries rewritten for numbered placeholders.
	rebound syncMap
	// enforce holds the enforcement path's SQLite commit grouping and
	// prepared statements (see writeTx in batch.go).
	enforce enforceState
	// zones caches loaded time zones so that bucketing a spend never
	// reads the zone database on the hot path.
	zones policy.Zones
	// packedLeafColumns is leafColumns joined by NUL characters into one
	// text value (Dialect.PackColumns), or "" where the dialect cannot.
	// SQLite (as compiled for Go) pays a mutex round trip per column read,
	// which makes the 22 separate columns the bulk of full verification's
	// cost; one column instead cuts a third of it.
	packedLeafColumns string
	// config caches agents' chains and policies for decisions (config.go).
	config configCache
	// lz is this process's lease holding (fastpath.go).
	lz leaser
	// leaseTTL is how long leases outlive the last heartbeat.
	leaseTTL time.Duration
	// manualLeases: no background loop (Options.ManualLeases).
	manualLeases bool
}

// The compiler checks what callers rely on: a Store is every ledger
// operation.
var _ ledger.Store = (*Store)(nil)

// Options configure Open.
type Options struct {
	// Location is shown by Status (a file path or a redacted URL).
	Location string
	// Migrations is the dialect's migration folder.
	Migrations fs.FS
	// SkipSchemaCheck opens an outdated or empty schema (for `caracal db`
	// and `caracal init`); otherwise Open refuses it with ErrSchemaOutdated.
	SkipSchemaCheck bool
	// LeaseTTL is how long this process's budget leases outlive its last
	// heartbeat before another process may reclaim them; zero means
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ManualLeases runs no background lease loop: the caller drives it
	// with SyncLeases and ReclaimLeases (simulations, which must decide
	// when every step happens).
	ManualLeases bool
}

// New wraps an open database. It checks the schema version unless told not to.
// rdb may be nil, meaning db.
func New(ctx context.Context, db, rdb *sql.DB, d Dialect, o Options) (*Store, error) {
	if rdb == nil {
		rdb = db
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	s := &Store{db: db, rdb: rdb, dialect: d, location: o.Location, fsys: o.Migrations, packedLeafColumns: d.PackColumns(leafColumns), leaseTTL: o.LeaseTTL, manualLeases: o.ManualLeases}
	if o.SkipSchemaCheck {
		return s, nil
	}
	cur, latest, err := s.Versions(ctx)
	if err != nil {
		return nil, err
	}
	if cur < latest {
		return nil, fmt.Errorf("schema version %d, this binary needs %d: %w", cur, latest, ledger.ErrSchemaOutdated)
	}
	if cur > latest {
		// A newer binary migrated this database; an older one could
		// misread or miswrite what it does not know.
		return nil, fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade caracal", cur, latest)
	}
	return s, nil
}

// DB exposes the write handle for tests and backend-specific code.
func (s *Store) DB() *sql.DB { return s.db }

// ReadDB exposes the read handle.
func (s *Store) ReadDB() *sql.DB { return s.rdb }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Close gives back this process's unused lease headroom and closes the
// database.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.closeLeases(ctx)
	cancel()
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return s.wrap(err)
	}
	return nil
}

func (s *Store) provider() (*goose.Provider, error) {
	p, err := goose.NewProvider(s.dialect.Goose(), s.db, s.fsys)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Versions returns the schema version applied and the latest this binary knows.
func (s *Store) Versions(ctx context.Context) (current, latest int64, err error) {
	p, err := s.provider()
	if err != nil {
		return 0, 0, err
	}
	current, latest, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, s.wrap(fmt.Errorf("read schema version: %w", err))
	}
	return current, latest, nil
}

// MigrateUp applies every pending migration and returns the versions applied.
func (s *Store) MigrateUp(ctx context.Context) ([]int64, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("migrate up: %w", err))
	}
	var v []int64
	for _, r := range res {
		v = append(v, r.Source.Version)
	}
	return v, nil
}

// MigrateDown rolls back the most recent migration and returns its version.
func (s *Store) MigrateDown(ctx context.Context) (int64, error) {
	p, err := s.provider()
	if err != nil {
		return 0, err
	}
	res, err := p.Down(ctx)
	if err != nil {
		return 0, s.wrap(fmt.Errorf("migrate down: %w", err))
	}
	return res.Source.Version, nil
}

// MigrationState is one migration's status.
type MigrationState struct {
	Version int64  `json:"version"`
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
}

// MigrationStatus lists every migration this binary knows.
func (s *Store) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("migration status: %w", err))
	}
	out := make([]MigrationState, 0, len(st))
	for _, m := range st {
		out = append(out, MigrationState{Version: m.Source.Version, Name: m.Source.Path, Applied: m.State == goose.StateApplied})
	}
	return out, nil
}

// q rewrites a `?` query for the dialect.
func (s *Store) q(query string) string {
	if !s.dialect.NumberedPlaceholders() {
		return query
	}
	if v, ok := s.rebound.Load(query); ok {
		return v
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out := b.String()
	s.rebound.Store(query, out)
	return out
}

// wrap marks connection failures with ledger.ErrUnavailable.
func (s *Store) wrap(err error) error {
	if err == nil || errors.Is(err, ledger.ErrUnavailable) {
		return err
	}
	if s.dialect.IsUnavailable(err) {
		return fmt.Errorf("%w: %w", ledger.ErrUnavailable, err)
	}
	return err
}

// tx runs fn in a transaction of its own, committing if it returns nil;
// it is the store's one transaction helper (writeTx groups calls on top of
// it where the dialect asks). The deferred rollback also covers a panic in
// fn, so no transaction is ever left open: on SQLite an open one would
// hold the only write connection for good.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(fmt.Errorf("begin: %w", err))
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return s.wrap(err)
	}
	committed = true // a failed commit has ended the transaction too
	if err := tx.Commit(); err != nil {
		return s.wrap(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common, so one query helper
// serves both a plain read and a read inside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// fromNS turns a unix-nanosecond column into a UTC time.
func fromNS(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// toNS turns a time into a unix-nanosecond column value.
func toNS(t time.Time) int64 { return t.UnixNano() }

// fromNullNS turns a nullable unix-nanosecond column into an optional time.
func fromNullNS(ns sql.NullInt64) *time.Time {
	if !ns.Valid {
		return nil
	}
	t := fromNS(ns.Int64)
	return &t
}

// toNullNS turns an optional time into a nullable column value.
func toNullNS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// placeholders returns "?, ?, …" with n marks, for IN lists.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// now is the store's clock for rows the caller gives no time for.
func now() time.Time { return time.Now().UTC() }

// errorf returns an error printing the formatted message and matching kind
// (ledger.ErrNotFound, ErrConflict, ErrInvalid …) with errors.Is.
func errorf(kind error, format string, args ...any) error {
	return errkind.Errorf(kind, format, args...)
}

// invalid marks a validation error from package policy as ledger.ErrInvalid,
// keeping its message as it is.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return errkind.New(ledger.ErrInvalid, err.Error(), err)
}
