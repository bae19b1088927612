package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/migrations"
)

// openMigrated creates a database at path, migrates it, and reopens it the
// way the application does, with the schema check.
func openMigrated(t testing.TB, path string) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		return openMigrated(t, filepath.Join(t.TempDir(), "caracal.db"))
	})
}

// TestPragmas checks that the DSN's _pragma and _txlock parameters really
// reach modernc's driver: WAL, durable commits, enforced foreign keys, and
// write transactions that take the write lock when they begin.
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caracal.db")
	s := openMigrated(t, path)
	for _, h := range []struct {
		name string
		db   *sql.DB
	}{{"write", s.DB()}, {"read", s.ReadDB()}} {
		for _, p := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"foreign_keys", "1"},
			{"busy_timeout", "10000"},
		} {
			var got string
			if err := h.db.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("%s handle: PRAGMA %s = %s, want %s", h.name, p.pragma, got, p.want)
			}
		}
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO api_keys (id, agent_id, prefix, hash, created_ns) VALUES ('k', 'no-agent', 'p', x'00', 0)`); err == nil {
		t.Error("a key for a missing agent was inserted: foreign keys are not enforced")
	}

	// A transaction on the write handle holds the write lock from BEGIN,
	// before it has written anything: another connection cannot begin a
	// write of its own.
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.ExecContext(ctx, `BEGIN IMMEDIATE`)
	if err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("BEGIN IMMEDIATE beside an open write transaction: %v, want database is locked", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, `BEGIN IMMEDIATE; ROLLBACK`); err != nil {
		t.Fatalf("BEGIN IMMEDIATE once the write transaction ended: %v", err)
	}
}

func TestSchemaOutdated(t *testing.T) {
	ctx := context.Background()
	all := storetest.Migrations(t, migrations.SQLite())
	latest := all[len(all)-1].Version

	t.Run("Empty", func(t *testing.T) {
		_, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "new.db"), sqlite.Options{})
		want := storetest.OutdatedMessage(0, latest)
		if !errors.Is(err, ledger.ErrSchemaOutdated) || err.Error() != want {
			t.Fatalf("Open on an empty database: %v, want %q", err, want)
		}
	})

	t.Run("MigratedDown", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "caracal.db")
		s := openMigrated(t, path)
		v, err := s.MigrateDown(ctx)
		if err != nil || v != latest {
			t.Fatalf("MigrateDown = %d, %v; want %d", v, err, latest)
		}
		s.Close()
		_, err = sqlite.Open(ctx, path, sqlite.Options{})
		want := storetest.OutdatedMessage(0, latest)
		if len(all) > 1 {
			want = storetest.OutdatedMessage(all[len(all)-2].Version, latest)
		}
		if !errors.Is(err, ledger.ErrSchemaOutdated) || err.Error() != want {
			t.Fatalf("Open after migrate down: %v, want %q", err, want)
		}
	})

	t.Run("Newer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "caracal.db")
		s := openMigrated(t, path)
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := sqlite.Open(ctx, path, sqlite.Options{})
		want := fmt.Sprintf("schema version 99 is newer than this binary knows (%d): upgrade caracal", latest)
		if err == nil || err.Error() != want {
			t.Fatalf("Open on a newer schema: %v, want %q", err, want)
		}
	})
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "caracal.db"), sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.MigrationRoundTrip(t, s, migrations.SQLite())
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(ctx, filepath.Join(file, "caracal.db"), sqlite.Options{})
	want := "create database folder: mkdir " + file + ": not a directory"
	if err == nil || err.Error() != want {
		t.Fatalf("Open under a file: %v, want %q", err, want)
	}

	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(ctx, filepath.Join(dir, "db"), sqlite.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "open "+filepath.Join(dir, "db")+": ") {
		t.Fatalf("Open on a folder: %v, want an error naming the path", err)
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caracal.db")
	s := openMigrated(t, path)
	if _, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != "sqlite" || st.Location != path || st.SchemaVersion != st.LatestVersion || st.LatestVersion < 1 {
		t.Errorf("Status = %+v", st)
	}
	want := map[string]int64{}
	for _, tbl := range sqlstore.StatusTables {
		want[tbl] = 0
	}
	want["agents"] = 1
	if !reflect.DeepEqual(st.Rows, want) {
		t.Errorf("Rows = %v, want %v", st.Rows, want)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
