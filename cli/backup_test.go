package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// goroutineTB lets storetest helpers run in a load goroutine: a failure is
// recorded and ends that goroutine instead of calling t.Fatal off the test
// goroutine.
type goroutineTB struct {
	testing.TB
	mu  sync.Mutex
	err error
}

func (g *goroutineTB) Helper() {}

func (g *goroutineTB) Fatal(args ...any) {
	g.mu.Lock()
	g.err = fmt.Errorf("%s", fmt.Sprint(args...))
	g.mu.Unlock()
	runtime.Goexit()
}

func (g *goroutineTB) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// TestDBBackupUnderLoadAndRestore backs the SQLite database up while events
// are committed and integrated, then restores the copy: the restored ledger
// passes the full verification. A tampered backup is refused and leaves the
// current database as it was.
func TestDBBackupUnderLoadAndRestore(t *testing.T) {
	ctx := context.Background()
	e := newCLIEnv(t, "sqlite")
	e.ok("init")

	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Flags = GlobalFlags{Home: e.home}
	s, err := f.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.OpenMerkleDB(t, s)
	signer, err := ledger.LoadSigner(ctx, s, e.home)
	if err != nil {
		t.Fatal(err)
	}
	in := ledger.NewIntegrator(s, signer, ledger.IntegratorConfig{Logger: slog.New(slog.DiscardHandler)})
	db.InsertEvents(t, 0, 50)
	if _, err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Load: one goroutine commits events, another integrates them, until
	// the backup is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	tb := &goroutineTB{TB: t}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for next := 50; ; next += 10 {
			select {
			case <-stop:
				return
			default:
			}
			db.InsertEvents(tb, next, 10)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := in.Flush(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}()
	backup := filepath.Join(t.TempDir(), "backup.db")
	var res backupResult
	e.json(&res, "db", "backup", backup)
	close(stop)
	wg.Wait()
	if err := tb.failed(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if res.File != backup || res.TreeSize < 50 || res.Bytes == 0 {
		t.Fatalf("backup result %+v", res)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", st, err)
	}
	e.fails(2, "FILE: "+backup+" already exists: choose a new file name", "db", "backup", backup)

	// A tampered copy of the backup is refused; the database is untouched.
	tampered := filepath.Join(t.TempDir(), "tampered.db")
	copyFile(t, backup, tampered)
	ts, err := sqlite.Open(ctx, tampered, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tdb := storetest.OpenMerkleDB(t, ts)
	tdb.DisableAppendOnly(t)
	tdb.Exec(t, `UPDATE events SET amount_nanos = amount_nanos + 1 WHERE id = ?`, tdb.EventIDAt(t, 3))
	ts.Close()
	f.Close() // stop using the live database before restoring over it
	var before ledger.MerkleStatus
	e.json(&before, "merkle", "status")
	_, errOut, code := e.run("db", "restore", tampered, "--yes")
	if code != 1 || !strings.Contains(errOut, "restore refused") || !strings.Contains(errOut, "the Merkle log does not verify") {
		t.Fatalf("restore of a tampered backup: exit %d, %s", code, errOut)
	}
	var after ledger.MerkleStatus
	e.json(&after, "merkle", "status")
	if after.TreeSize != before.TreeSize || after.Pending != before.Pending {
		t.Fatalf("a refused restore changed the database: %+v → %+v", before, after)
	}
	if left, _ := filepath.Glob(filepath.Join(e.home, ".caracal.db.restore-*")); len(left) != 0 {
		t.Errorf("a refused restore left files behind: %v", left)
	}

	e.fails(2, "--yes: required: restore replaces the database "+filepath.Join(e.home, "caracal.db"), "db", "restore", backup)
	var restored backupResult
	e.json(&restored, "db", "restore", backup, "--yes")
	if restored.TreeSize != res.TreeSize || restored.Previous == "" {
		t.Fatalf("restore result %+v, backup %+v", restored, res)
	}
	if _, err := os.Stat(restored.Previous); err != nil {
		t.Errorf("the replaced database was not kept: %v", err)
	}
	if out := e.ok("merkle", "verify", "--full"); !strings.Contains(out, fmt.Sprint(res.TreeSize)) {
		t.Errorf("verify --full after restore:\n%s", out)
	}
	// Events queued but not yet integrated when the backup ran are still
	// queued in the copy; integrating them keeps the log verifiable.
	e.ok("merkle", "integrate")
	e.ok("merkle", "verify", "--full")
	var st ledger.MerkleStatus
	e.json(&st, "merkle", "status")
	if st.Pending != 0 || st.TreeSize < res.TreeSize {
		t.Errorf("status after restore and integrate: %+v", st)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// On PostgreSQL, backup and restore explain pg_dump / pg_restore and exit 2.
func TestDBBackupPostgresRefuses(t *testing.T) {
	e := newCLIEnv(t, "postgres")
	for _, args := range [][]string{{"db", "backup", "x.db"}, {"db", "restore", "x.db", "--yes"}} {
		_, errOut, code := e.run(args...)
		if code != 2 || !strings.Contains(errOut, "pg_dump --format=custom") || !strings.Contains(errOut, "pg_restore") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
}
