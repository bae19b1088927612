// Package sqlite opens Caracal's embedded store: one SQLite file in WAL mode
// with durable (synchronous=FULL) commits, through the pure-Go
// modernc.org/sqlite driver.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"

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
}

// Open opens (creating if needed) the SQLite database at path.
func Open(ctx context.Context, path string, o Options) (*sqlstore.Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database folder: %w", err)
		}
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	dsn := func(txlock string) string {
		v := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
			v.Add("_pragma", p)
		}
		v.Set("_txlock", txlock)
		return "file:" + path + "?" + v.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("deferred"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	s, err := sqlstore.New(ctx, w, r, Dialect{}, sqlstore.Options{
		Location:        path,
		Migrations:      migrations.SQLite(),
		SkipSchemaCheck: o.SkipSchemaCheck,
		LeaseTTL:        o.LeaseTTL,
		ManualLeases:    o.ManualLeases,
	})
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	return s, nil
}

// createPrivate creates the database file, if it does not exist, readable
// and writable by its owner only, whatever the umask: it holds the ledger
// and the hashes of every API key. SQLite gives the -wal and -shm files it
// creates the mode of the database file. An existing file is left as it is.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("restrict the database file's mode: %w", err)
	}
	return f.Close()
}

// Dialect is SQLite's sqlstore.Dialect.
type Dialect struct{}

// Name implements sqlstore.Dialect.
func (Dialect) Name() string { return "sqlite" }

// Goose implements sqlstore.Dialect.
func (Dialect) Goose() goose.Dialect { return goose.DialectSQLite3 }

// NumberedPlaceholders implements sqlstore.Dialect.
func (Dialect) NumberedPlaceholders() bool { return false }

// LockPolicies does nothing: write transactions begin IMMEDIATE and so
// already exclude every other writer.
func (Dialect) LockPolicies(context.Context, *sql.Tx, []string) error { return nil }

// LockIntegrator does nothing, for the same reason.
func (Dialect) LockIntegrator(context.Context, *sql.Tx) error { return nil }

// LockHierarchy does nothing, for the same reason.
func (Dialect) LockHierarchy(context.Context, *sql.Tx) error { return nil }

// GroupCommit is true: there is one writer and every commit costs a WAL
// fsync, so concurrent enforcement writes share commits.
func (Dialect) GroupCommit() bool { return true }

// MergeStatements is false: a statement runs in process, so it costs no
// round trip, but parsing it dominates; the store prepares its statements
// once and runs them one row at a time.
func (Dialect) MergeStatements() bool { return false }

// MatchGlob matches with GLOB, which is case-sensitive; `?` and `[` are
// bracketed to be literal, so `*` is the only wildcard.
func (Dialect) MatchGlob(column, pattern string) (string, string) {
	var b strings.Builder
	for _, c := range pattern {
		switch c {
		case '?':
			b.WriteString("[?]")
		case '[':
			b.WriteString("[[]")
		default:
			b.WriteRune(c)
		}
	}
	return column + ` GLOB ?`, b.String()
}

// PackColumns joins the columns with char(0): SQLite text holds NUL.
func (Dialect) PackColumns(columns string) string {
	return strings.ReplaceAll(columns, ",", " || char(0) ||")
}

// ForUpdate implements sqlstore.Dialect.
func (Dialect) ForUpdate() string { return "" }

// IsUniqueViolation implements sqlstore.Dialect.
func (Dialect) IsUniqueViolation(err error) bool {
	var e *sqlite3.Error
	if errors.As(err, &e) {
		return e.Code() == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsUnavailable implements sqlstore.Dialect.
func (Dialect) IsUnavailable(err error) bool {
	var e *sqlite3.Error
	if errors.As(err, &e) {
		switch e.Code() & 0xff {
		case sqlite3lib.SQLITE_CANTOPEN, sqlite3lib.SQLITE_IOERR, sqlite3lib.SQLITE_BUSY, sqlite3lib.SQLITE_LOCKED, sqlite3lib.SQLITE_FULL, sqlite3lib.SQLITE_READONLY:
			return true
		}
	}
	return false
}
