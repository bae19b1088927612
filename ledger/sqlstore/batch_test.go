package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// batchStore opens a SQLite store with a scratch table the tests' writes
// insert their names into.
func batchStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s := storetest.OpenSQLite(t)
	if _, err := s.DB().Exec(`CREATE TABLE batch_test (name TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return s
}

// committed returns the names the scratch table holds, in order.
func committed(t *testing.T, s *sqlstore.Store) []string {
	t.Helper()
	rows, err := s.DB().Query(`SELECT name FROM batch_test ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func insert(ctx context.Context, tx *sql.Tx, name string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO batch_test (name) VALUES (?)`, name)
	return err
}

// writeResult is what one grouped writer saw and got.
type writeResult struct {
	tx  *sql.Tx
	err error
}

// runGrouped makes the writers share one group: a first writer holds the
// write transaction until every other has queued behind it, then each of
// the others runs its fn. It returns what each of the others saw and got,
// in the order given (they queue in any order), and the first writer's
// transaction. The first writer inserts "first".
func runGrouped(t *testing.T, s *sqlstore.Store, fns []func(context.Context, *sql.Tx) error) (*sql.Tx, []writeResult) {
	t.Helper()
	firstTx, out, firstErr := runGroupedAfter(t, s, named("first"), fns)
	if firstErr != nil {
		t.Fatalf("first writer: %v", firstErr)
	}
	return firstTx, out
}

// runGroupedAfter is runGrouped with the first writer running first
// (once the others have queued); it also returns the first writer's
// result.
func runGroupedAfter(t *testing.T, s *sqlstore.Store, first func(context.Context, *sql.Tx) error, fns []func(context.Context, *sql.Tx) error) (*sql.Tx, []writeResult, error) {
	t.Helper()
	ctx := context.Background()
	release := make(chan struct{})
	held := make(chan *sql.Tx, 1)
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.WriteTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			held <- tx
			<-release
			return first(ctx, tx)
		})
	}()
	firstTx := <-held
	out := make([]writeResult, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].err = s.WriteTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
				out[i].tx = tx
				return fn(ctx, tx)
			})
		}()
	}
	// The writers queue without touching the database, so waiting for
	// them is waiting on goroutines that are already runnable.
	deadline := time.Now().Add(10 * time.Second)
	for s.QueuedWrites() < len(fns) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writers queued", s.QueuedWrites(), len(fns))
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	close(release)
	firstErr := <-firstDone
	wg.Wait()
	return firstTx, out, firstErr
}

func named(name string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error { return insert(ctx, tx, name) }
}

func TestGroupCommitSharesOneTransaction(t *testing.T) {
	s := batchStore(t)
	var fns []func(context.Context, *sql.Tx) error
	var want []string
	for i := range 9 {
		name := fmt.Sprintf("w%d", i)
		fns = append(fns, named(name))
		want = append(want, name)
	}
	firstTx, out := runGrouped(t, s, fns)
	for i, r := range out {
		if r.err != nil {
			t.Fatalf("writer %d: %v", i, r.err)
		}
		// Writers that queue while a group runs join it before its
		// commit, so they share its fsync.
		if r.tx != firstTx {
			t.Errorf("writer %d ran in a transaction of its own; want it to join the running group's", i)
		}
	}
	if got := strings.Join(committed(t, s), ","); got != "first,"+strings.Join(want, ",") {
		t.Fatalf("committed %s", got)
	}
}

// TestGroupCommitLoneFailureTakesNoJoiners checks that writers queued
// behind a lone writer that fails do not join its transaction: it ran
// without a savepoint, so its partial work is rolled back with the whole
// transaction, and theirs must commit.
func TestGroupCommitLoneFailureTakesNoJoiners(t *testing.T) {
	s := batchStore(t)
	boom := errors.New("boom")
	firstTx, out, firstErr := runGroupedAfter(t, s, func(ctx context.Context, tx *sql.Tx) error {
		if err := insert(ctx, tx, "first"); err != nil {
			return err
		}
		return boom
	}, []func(context.Context, *sql.Tx) error{named("a"), named("b")})
	if !errors.Is(firstErr, boom) {
		t.Fatalf("failing lone writer got %v, want its own error", firstErr)
	}
	for i, r := range out {
		if r.err != nil {
			t.Errorf("writer %d got %v, want nil", i, r.err)
		}
		if r.tx == firstTx {
			t.Errorf("writer %d joined the failed lone writer's transaction", i)
		}
	}
	if got := strings.Join(committed(t, s), ","); got != "a,b" {
		t.Fatalf("committed %s, want a,b", got)
	}
}

func TestGroupCommitFailureRollsBackOnlyItsOwnWork(t *testing.T) {
	s := batchStore(t)
	boom := errors.New("boom")
	fns := []func(context.Context, *sql.Tx) error{
		named("a"),
		func(ctx context.Context, tx *sql.Tx) error {
			if err := insert(ctx, tx, "failed"); err != nil {
				return err
			}
			return boom
		},
		named("b"),
		// A statement error (the first writer's key again) rolls back the
		// same way.
		named("first"),
		named("c"),
	}
	_, out := runGrouped(t, s, fns)
	for i, r := range out {
		switch i {
		case 1:
			if !errors.Is(r.err, boom) {
				t.Errorf("failing writer got %v, want its own error", r.err)
			}
		case 3:
			if r.err == nil || !strings.Contains(r.err.Error(), "UNIQUE") {
				t.Errorf("duplicate writer got %v, want a unique-constraint error", r.err)
			}
		default:
			if r.err != nil {
				t.Errorf("writer %d got %v, want nil", i, r.err)
			}
		}
		if r.tx != out[0].tx {
			t.Fatalf("writer %d ran in a transaction of its own; the test needs one group", i)
		}
	}
	if got := strings.Join(committed(t, s), ","); got != "a,b,c,first" {
		t.Fatalf("committed %s, want a,b,c,first", got)
	}
}

func TestGroupCommitContainsAPanic(t *testing.T) {
	s := batchStore(t)
	fns := []func(context.Context, *sql.Tx) error{
		named("a"),
		func(ctx context.Context, tx *sql.Tx) error {
			if err := insert(ctx, tx, "panicked"); err != nil {
				return err
			}
			panic("bad writer")
		},
		named("b"),
	}
	_, out := runGrouped(t, s, fns)
	if out[0].err != nil || out[2].err != nil {
		t.Fatalf("neighbours of the panic got %v and %v, want nil", out[0].err, out[2].err)
	}
	if out[1].err == nil || !strings.Contains(out[1].err.Error(), "bad writer") {
		t.Fatalf("panicking writer got %v, want an error naming the panic", out[1].err)
	}
	if got := strings.Join(committed(t, s), ","); got != "a,b,first" {
		t.Fatalf("committed %s, want a,b,first", got)
	}

	// Alone in its group, a panic fails the call and frees the connection.
	ctx := context.Background()
	err := s.WriteTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := insert(ctx, tx, "solo"); err != nil {
			return err
		}
		panic("solo writer")
	})
	if err == nil || !strings.Contains(err.Error(), "solo writer") {
		t.Fatalf("solo panic got %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WriteTx(wctx, named("after")); err != nil {
		t.Fatalf("write after a panic: %v", err)
	}
	if got := strings.Join(committed(t, s), ","); got != "a,after,b,first" {
		t.Fatalf("committed %s, want a,after,b,first", got)
	}
}

// TestTxRollsBackOnPanic checks that a panic inside the transaction
// helper rolls its transaction back: SQLite has one write connection, and
// a transaction left open would block every later write.
func TestTxRollsBackOnPanic(t *testing.T) {
	s := batchStore(t)
	ctx := context.Background()
	func() {
		defer func() {
			if p := recover(); p != "tx panic" {
				t.Errorf("recovered %v, want the fn's panic passed on", p)
			}
		}()
		_ = s.Tx(ctx, func(tx *sql.Tx) error {
			if err := insert(ctx, tx, "panicked"); err != nil {
				return err
			}
			panic("tx panic")
		})
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Tx(wctx, func(tx *sql.Tx) error { return insert(wctx, tx, "after") }); err != nil {
		t.Fatalf("write after a panic: %v", err)
	}
	if got := strings.Join(committed(t, s), ","); got != "after" {
		t.Fatalf("committed %s, want after", got)
	}
}

// TestPrepareWaitsWithoutBlockingTheConnectionsHolder: prepare waits for
// the single write connection; a transaction that holds it and looks up
// the prepared statements (ptx) must not wait for prepare in turn, or both
// wait for ever.
func TestPrepareWaitsWithoutBlockingTheConnectionsHolder(t *testing.T) {
	s := storetest.OpenSQLite(t)
	ctx := context.Background()
	prepared := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Tx(ctx, func(tx *sql.Tx) error {
			go func() { s.Prepare(); close(prepared) }()
			// Give prepare time to start waiting for this transaction's
			// connection; the order, not the speed, is under test.
			time.Sleep(50 * time.Millisecond)
			s.UsePrepared(tx)
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a transaction holding the write connection waited on prepare, which waits on that connection")
	}
	select {
	case <-prepared:
	case <-time.After(30 * time.Second):
		t.Fatal("prepare never got the connection after the transaction ended")
	}
	if !s.Prepared() {
		t.Error("not every enforcement statement was prepared")
	}
}
