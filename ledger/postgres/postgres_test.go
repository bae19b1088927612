package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/migrations"
)

// openMigrated migrates a fresh database and opens it the way the
// application does, with the schema check.
func openMigrated(t testing.TB, url string) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, url, postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	// The line says which server ran the suite, in the test output.
	t.Log(pgtest.Describe(t))
	storetest.Run(t, func(t *testing.T) ledger.Store {
		return openMigrated(t, pgtest.URL(t))
	})
}

func TestSchemaOutdated(t *testing.T) {
	ctx := context.Background()
	all := storetest.Migrations(t, migrations.Postgres())
	latest := all[len(all)-1].Version

	t.Run("Empty", func(t *testing.T) {
		_, err := postgres.Open(ctx, pgtest.URL(t), postgres.Options{})
		want := storetest.OutdatedMessage(0, latest)
		if !errors.Is(err, ledger.ErrSchemaOutdated) || err.Error() != want {
			t.Fatalf("Open on an empty database: %v, want %q", err, want)
		}
	})

	t.Run("MigratedDown", func(t *testing.T) {
		url := pgtest.URL(t)
		s := openMigrated(t, url)
		v, err := s.MigrateDown(ctx)
		if err != nil || v != latest {
			t.Fatalf("MigrateDown = %d, %v; want %d", v, err, latest)
		}
		s.Close()
		_, err = postgres.Open(ctx, url, postgres.Options{})
		want := storetest.OutdatedMessage(0, latest)
		if len(all) > 1 {
			want = storetest.OutdatedMessage(all[len(all)-2].Version, latest)
		}
		if !errors.Is(err, ledger.ErrSchemaOutdated) || err.Error() != want {
			t.Fatalf("Open after migrate down: %v, want %q", err, want)
		}
	})

	t.Run("Newer", func(t *testing.T) {
		url := pgtest.URL(t)
		s := openMigrated(t, url)
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := postgres.Open(ctx, url, postgres.Options{})
		want := fmt.Sprintf("schema version 99 is newer than this binary knows (%d): upgrade caracal", latest)
		if err == nil || err.Error() != want {
			t.Fatalf("Open on a newer schema: %v, want %q", err, want)
		}
	})
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.URL(t), postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.MigrationRoundTrip(t, s, migrations.Postgres())
}

func TestBadURL(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		url, want string
	}{
		{"mysql://root:hunter2@db/caracal", "invalid database URL mysql://root:xxxxx@db/caracal: scheme \"mysql\" is not postgres or postgresql"},
		{"just-a-name", "invalid database URL just-a-name: want postgres://user:password@host:port/database"},
		{"postgres://u:hunter2@db:notaport/x", `invalid database URL postgres://u:xxxxx@db:notaport/x: invalid port`},
		{"postgres://db/x?sslmode=sometimes&password=hunter2", `invalid database URL postgres://db/x?sslmode=sometimes&password=xxxxx: failed to configure TLS (sslmode is invalid)`},
	}
	for _, tc := range tests {
		_, err := postgres.Open(ctx, tc.url, postgres.Options{})
		if err == nil {
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("Open(%q): %v does not match ErrInvalid", tc.url, err)
		}
		if err.Error() != tc.want {
			t.Errorf("Open(%q)\n got %q\nwant %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) shows the password: %v", tc.url, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	url := "postgres://caracal:hunter2@127.0.0.1:1/caracal?connect_timeout=2"
	_, err := postgres.Open(ctx, url, postgres.Options{})
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("%v does not match ErrUnavailable", err)
	}
	prefix := "cannot reach the database at postgres://caracal:xxxxx@127.0.0.1:1/caracal?connect_timeout=2: store unavailable: "
	if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q, want it to start %q and say connection refused", err, prefix)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:secret@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db?password=secret&sslmode=disable", "postgres://h/db?password=xxxxx&sslmode=disable"},
		{"postgres://h/db?sslmode=require&sslpassword=secret", "postgres://h/db?sslmode=require&sslpassword=xxxxx"},
		{"postgres://u:sec ret@h:bad/db", "postgres://u:xxxxx@h:bad/db"},
		{"host=h user=u password=secret dbname=x", "host=h user=u password=xxxxx dbname=x"},
	}
	for _, tc := range tests {
		if got := postgres.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s := openMigrated(t, url)
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != "postgres" || st.Location != postgres.Redact(url) || st.SchemaVersion != st.LatestVersion || st.LatestVersion < 1 {
		t.Errorf("Status = %+v", st)
	}
	want := map[string]int64{}
	for _, tbl := range sqlstore.StatusTables {
		want[tbl] = 0
	}
	if !reflect.DeepEqual(st.Rows, want) {
		t.Errorf("Rows = %v, want %v", st.Rows, want)
	}
}

// TestUnavailableMidRun cuts the connection to a working store: calls fail
// with ErrUnavailable, and work again once the database is back.
func TestUnavailableMidRun(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	openMigrated(t, url).Close()
	relay, via := pgtest.NewRelay(t, url)
	s, err := postgres.Open(ctx, via, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "before"}); err != nil {
		t.Fatal(err)
	}

	relay.Down()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, call := range []struct {
		name string
		fn   func() error
	}{
		{"GetAgent", func() error { _, err := s.GetAgent(cctx, "before"); return err }},
		{"CreateAgent", func() error { _, err := s.CreateAgent(cctx, ledger.NewAgent{Name: "during"}); return err }},
		{"Ping", func() error { return s.Ping(cctx) }},
	} {
		err := call.fn()
		if !errors.Is(err, ledger.ErrUnavailable) {
			t.Errorf("%s with the database cut: %v, want ErrUnavailable", call.name, err)
		}
	}

	relay.Up(t)
	if _, err := s.GetAgent(ctx, "before"); err != nil {
		t.Fatalf("GetAgent once the database is back: %v", err)
	}
	if _, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "after"}); err != nil {
		t.Fatalf("CreateAgent once the database is back: %v", err)
	}
}

func TestDialectErrors(t *testing.T) {
	d := postgres.Dialect{}
	tests := []struct {
		name              string
		err               error
		unavailable, uniq bool
	}{
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true, false},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true, false},
		{"cut mid-read", fmt.Errorf("read agent: %w", io.ErrUnexpectedEOF), true, false},
		{"reset", fmt.Errorf("query: %w", syscall.ECONNRESET), true, false},
		{"unique", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), false, true},
		{"check", &pgconn.PgError{Code: "23514"}, false, false},
		{"plain", errors.New("boom"), false, false},
	}
	for _, tc := range tests {
		if got := d.IsUnavailable(tc.err); got != tc.unavailable {
			t.Errorf("%s: IsUnavailable = %v, want %v", tc.name, got, tc.unavailable)
		}
		if got := d.IsUniqueViolation(tc.err); got != tc.uniq {
			t.Errorf("%s: IsUniqueViolation = %v, want %v", tc.name, got, tc.uniq)
		}
	}
}
