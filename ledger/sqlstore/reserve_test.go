package sqlstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

// TestGroupedCommitsIsolateFailures runs many concurrent reservations, so
// that SQLite groups them into shared transactions, where some collide on
// a request ID: each collision fails alone with ErrConflict, and none of
// its work (the usage it had already added) survives.
func TestGroupedCommitsIsolateFailures(t *testing.T) {
	s := storetest.OpenSQLite(t)
	ctx := context.Background()
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "a", Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("1000"), Window: policy.WindowTotal})
	if err != nil {
		t.Fatal(err)
	}
	const unique, dups = 40, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, conflicts := 0, 0
	for i := 0; i < unique+dups; i++ {
		id := uuid.NewString()
		if i%2 == 0 {
			id = "same-request"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: a.ID, Resource: "r", Amount: money.MustParse("1")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && d.Allow:
				ok++
			case errors.Is(err, ledger.ErrConflict):
				conflicts++
			default:
				t.Errorf("reserve %s: %+v, %v", id, d, err)
			}
		}()
	}
	wg.Wait()
	if ok != unique+1 || conflicts != dups-1 {
		t.Fatalf("%d reserved and %d conflicts, want %d and %d", ok, conflicts, unique+1, dups-1)
	}
	us, err := s.Usage(ctx, a.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Policy.ID != p.ID || us[0].Reserved != money.Amount(ok)*money.MustParse("1") {
		t.Fatalf("usage %+v, want %d reserved", us, ok)
	}
}

// TestEveryEventIsQueued checks that each committed event has its
// integration_queue row, for every kind of event.
func TestEveryEventIsQueued(t *testing.T) {
	s := storetest.OpenSQLite(t)
	ctx := context.Background()
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "a", Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("2"), Window: policy.WindowTotal}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reserve := func(amount string) string {
		id := uuid.NewString()
		if _, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: a.ID, Resource: "r", Amount: money.MustParse(amount), TTL: time.Minute, Now: now}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	if _, err := s.Settle(ctx, ledger.SettleRequest{RequestID: reserve("1"), Amount: money.MustParse("1")}); err != nil {
		t.Fatal(err)
	}
	reserve("5") // denied
	if _, err := s.Release(ctx, reserve("0.5"), "x"); err != nil {
		t.Fatal(err)
	}
	reserve("0.5")
	if n, err := s.ExpireReservations(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	if _, err := s.RecordDenial(ctx, ledger.ReserveRequest{RequestID: "strict", AgentID: a.ID, Resource: "r"}, policy.Decision{Code: policy.CodeUnpriced, Reason: "unpriced"}); err != nil {
		t.Fatal(err)
	}
	var events, queued, matched int
	db := s.DB()
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM integration_queue`).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events e JOIN integration_queue q ON q.event_pk = e.pk AND q.event_id = e.id`).Scan(&matched); err != nil {
		t.Fatal(err)
	}
	if events != 5 || queued != 5 || matched != 5 {
		t.Fatalf("%d events, %d queued, %d matching; want 5 of each", events, queued, matched)
	}
}
