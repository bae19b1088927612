package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connectT(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect %s: %v", u, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestDescribe(t *testing.T) {
	d := Describe(t)
	t.Log(d)
	re := regexp.MustCompile(`^pgtest: PostgreSQL \d+(\.\d+)?\S* (throwaway cluster at 127\.0\.0\.1:\d+ \(data in .+\)|server from CARACAL_TEST_DATABASE_URL at .+)$`)
	if !re.MatchString(d) {
		t.Fatalf("Describe = %q, want it to match %s", d, re)
	}
}

func TestURLGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := 0; i < 2; i++ {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := connectT(t, URL(t))
			var name string
			var tables int
			if err := c.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("database %s has %d tables, want none", name, tables)
			}
			if _, err := c.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v, want two different ones", names)
	}
	admin := connectT(t, AdminURL(t))
	for _, n := range names {
		var exists bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, n).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test ended", n)
		}
	}
}

func TestConnectDescribesExternalServer(t *testing.T) {
	ctx := context.Background()
	s, err := connect(ctx, AdminURL(t), nil, EnvURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.pool.Close()
	re := regexp.MustCompile(`^pgtest: PostgreSQL \S+ server from CARACAL_TEST_DATABASE_URL at postgres://`)
	if !re.MatchString(s.desc) {
		t.Fatalf("desc = %q, want it to match %s", s.desc, re)
	}
	if _, err := connect(ctx, "postgres://127.0.0.1:1/x?connect_timeout=2", nil, EnvURL); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
}

func TestFindBinariesMissing(t *testing.T) {
	_, err := findBinaries(t.TempDir(), []string{filepath.Join(t.TempDir(), "*")})
	if err == nil || err.Error() != HowTo {
		t.Fatalf("err = %v, want %q", err, HowTo)
	}
	if HowTo != "PostgreSQL tests need a server: set CARACAL_TEST_DATABASE_URL=postgres://… or put PostgreSQL's initdb and pg_ctl on PATH" {
		t.Fatalf("HowTo = %q", HowTo)
	}
}

func fakeBins(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	onPath := filepath.Join(root, "path")
	partial := filepath.Join(root, "partial")
	fakeBins(t, onPath, "initdb", "pg_ctl", "postgres")
	fakeBins(t, partial, "initdb") // no pg_ctl: not a candidate
	for _, v := range []string{"9", "15", "13"} {
		fakeBins(t, filepath.Join(root, "lib", v, "bin"), "initdb", "pg_ctl", "postgres")
	}
	glob := filepath.Join(root, "lib", "*", "bin")

	tests := []struct {
		name, path string
		want       string
	}{
		{"path first", partial + string(os.PathListSeparator) + onPath, onPath},
		{"highest version when not on path", partial, filepath.Join(root, "lib", "15", "bin")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := findBinaries(tc.path, []string{glob})
			if err != nil {
				t.Fatal(err)
			}
			if b.initdb != filepath.Join(tc.want, "initdb") || b.pgCtl != filepath.Join(tc.want, "pg_ctl") || b.postgres != filepath.Join(tc.want, "postgres") {
				t.Fatalf("found %+v, want the binaries in %s", b, tc.want)
			}
		})
	}

	t.Run("postgres beside the real pg_ctl", func(t *testing.T) {
		real := filepath.Join(root, "real")
		fakeBins(t, real, "pg_ctl", "postgres")
		links := filepath.Join(root, "links")
		fakeBins(t, links, "initdb")
		if err := os.Symlink(filepath.Join(real, "pg_ctl"), filepath.Join(links, "pg_ctl")); err != nil {
			t.Fatal(err)
		}
		b, err := findBinaries(links, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b.postgres != filepath.Join(real, "postgres") {
			t.Fatalf("postgres = %s, want %s", b.postgres, filepath.Join(real, "postgres"))
		}
	})
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"/usr/lib/postgresql/9/bin", "/usr/lib/postgresql/15/bin", true},
		{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/9/bin", false},
		{"/usr/pgsql-13/bin", "/usr/pgsql-16/bin", true},
		{"/opt/x/bin", "/usr/lib/postgresql/9/bin", true},
		{"/tmp/T123/001/lib/9/bin", "/tmp/T123/001/lib/15/bin", true},
		{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/15/bin", false},
	}
	for _, tc := range tests {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSweepStale(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name, owner string, age time.Duration) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(d, "owner.pid"), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A pid above any pid_max Linux allows belongs to no process.
	dead := mk(clusterPrefix+"dead", "2147483600", 0)
	live := mk(clusterPrefix+"live", strconv.Itoa(os.Getpid()), 0)
	young := mk(clusterPrefix+"young", "", time.Minute)
	orphan := mk(clusterPrefix+"orphan", "", 2*staleAge)
	other := mk("something-else", "2147483600", 0)

	sweepStale(tmp)

	for d, wantKept := range map[string]bool{dead: false, live: true, young: true, orphan: false, other: true} {
		_, err := os.Stat(d)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s kept = %v, want %v", filepath.Base(d), kept, wantKept)
		}
	}
}

func TestClusterStopStart(t *testing.T) {
	ctx := context.Background()
	c := NewCluster(t)
	u := c.URL(t)
	conn := connectT(t, u)
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		c.mu.Lock()
		pid := c.cmd.Process.Pid
		c.mu.Unlock()
		fi, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid == 0 {
			t.Fatal("the server runs as root")
		}
	}

	c.Stop(t)
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("query on a stopped server succeeded")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c2, err := pgx.Connect(cctx, u); err == nil {
		c2.Close(ctx)
		t.Fatal("connect to a stopped server succeeded")
	}

	c.Start(t)
	var x int
	if err := connectT(t, u).QueryRow(ctx, `SELECT x FROM kept`).Scan(&x); err != nil || x != 42 {
		t.Fatalf("after restart: x = %d, err = %v; want 42", x, err)
	}
}

func TestRelay(t *testing.T) {
	ctx := context.Background()
	r, u := NewRelay(t, URL(t))
	conn := connectT(t, u)
	if _, err := conn.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("through the relay: %v", err)
	}

	r.Down()
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("query on a cut connection succeeded")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c2, err := pgx.Connect(cctx, u); err == nil {
		c2.Close(ctx)
		t.Fatal("connect through a cut relay succeeded")
	}

	r.Up(t)
	if _, err := connectT(t, u).Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

// TestRelayLoseReplyTo: a COMMIT whose reply the relay drops fails on the
// client, yet the transaction landed.
func TestRelayLoseReplyTo(t *testing.T) {
	ctx := context.Background()
	db := URL(t)
	r, u := NewRelay(t, db)
	conn := connectT(t, u)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	lost := r.LoseReplyTo([]byte("commit\x00"))
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("the commit succeeded although its reply was dropped")
	}
	<-lost
	var n int
	if err := connectT(t, db).QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows = %d, %v; want the committed row", n, err)
	}
}
