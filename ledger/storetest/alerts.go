package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

func testAlerts(t *testing.T, newStore Factory) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const hook, other = "https://hooks.example/a", "https://hooks.example/b"
	mk := func(id, webhook string, created time.Time) ledger.Alert {
		return ledger.Alert{ID: id, Key: "key-" + id, Webhook: webhook, Payload: []byte(`{"id":"` + id + `"}`), CreatedAt: created}
	}

	t.Run("EnqueueOncePerKey", func(t *testing.T) {
		s := newStore(t)
		ok, err := s.EnqueueAlert(ctx, mk("a1", hook, t0))
		if err != nil || !ok {
			t.Fatalf("first enqueue = %v, %v; want inserted", ok, err)
		}
		dup := mk("a1-other-id", hook, t0)
		dup.Key = "key-a1"
		if ok, err := s.EnqueueAlert(ctx, dup); err != nil || ok {
			t.Fatalf("enqueue of a known key = %v, %v; want not inserted, no error", ok, err)
		}
		if ok, err := s.EnqueueAlert(ctx, mk("a1", hook, t0)); err != nil || ok {
			t.Fatalf("enqueue again = %v, %v; want not inserted, no error", ok, err)
		}
		got, err := s.GetAlert(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Payload) != `{"id":"a1"}` || got.Key != "key-a1" || got.Webhook != hook || !got.CreatedAt.Equal(t0) ||
			!got.NextAttempt.Equal(t0) || got.Attempts != 0 || got.DeliveredAt != nil {
			t.Errorf("GetAlert = %+v", got)
		}
		if _, err := s.GetAlert(ctx, "a1-other-id"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("GetAlert of the refused duplicate: err = %v, want ErrNotFound", err)
		}
		if _, err := s.EnqueueAlert(ctx, ledger.Alert{ID: "x", Webhook: hook, Payload: []byte("{}")}); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("enqueue without a key: err = %v, want ErrInvalid", err)
		}
	})

	t.Run("ClaimLeaseRetryDeliver", func(t *testing.T) {
		s := newStore(t)
		for _, a := range []ledger.Alert{mk("b2", hook, t0.Add(time.Second)), mk("b1", hook, t0), mk("c1", other, t0)} {
			if _, err := s.EnqueueAlert(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ClaimAlerts(ctx, hook, "p1", t0.Add(2*time.Second), time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if ids := alertIDs(got); fmt.Sprint(ids) != "[b1 b2]" {
			t.Fatalf("claimed %v, want [b1 b2] (oldest first, this webhook only)", ids)
		}
		// Leased: another owner gets nothing until the lease expires.
		if got, err := s.ClaimAlerts(ctx, hook, "p2", t0.Add(30*time.Second), time.Minute, 10); err != nil || len(got) != 0 {
			t.Fatalf("claim during the lease = %v, %v; want none", alertIDs(got), err)
		}
		// A failure reported by a non-owner changes nothing.
		if err := s.AlertFailed(ctx, "b1", "p2", t0, "x"); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.GetAlert(ctx, "b1"); a.Attempts != 0 {
			t.Errorf("attempts after a non-owner's failure = %d, want 0", a.Attempts)
		}
		// The owner's failure releases the lease and schedules a retry.
		retry := t0.Add(10 * time.Minute)
		if err := s.AlertFailed(ctx, "b1", "p1", retry, "503 Service Unavailable"); err != nil {
			t.Fatal(err)
		}
		a, err := s.GetAlert(ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Attempts != 1 || !a.NextAttempt.Equal(retry) || a.LastError != "503 Service Unavailable" {
			t.Errorf("after a failure: %+v", a)
		}
		if err := s.AlertDelivered(ctx, "b2", t0.Add(3*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ClaimAlerts(ctx, hook, "p2", retry.Add(-time.Second), time.Minute, 10); len(got) != 0 {
			t.Errorf("claimed %v before the retry was due", alertIDs(got))
		}
		// Once b1 is due, p2 may take it over; b2 was delivered meanwhile.
		got, err = s.ClaimAlerts(ctx, hook, "p2", retry, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if ids := alertIDs(got); fmt.Sprint(ids) != "[b1]" {
			t.Fatalf("claimed %v after the retry was due, want [b1] (b2 was delivered)", ids)
		}
		if err := s.AlertDelivered(ctx, "b1", retry); err != nil {
			t.Fatal(err)
		}
		if err := s.AlertDelivered(ctx, "b1", retry.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		a, _ = s.GetAlert(ctx, "b1")
		if a.DeliveredAt == nil || !a.DeliveredAt.Equal(retry) {
			t.Errorf("DeliveredAt = %v, want %v (the first mark)", a.DeliveredAt, retry)
		}
		if got, _ := s.ClaimAlerts(ctx, hook, "p3", retry.Add(24*time.Hour), time.Minute, 10); len(got) != 0 {
			t.Errorf("claimed delivered alerts %v", alertIDs(got))
		}
		if got, _ := s.ClaimAlerts(ctx, other, "p3", t0, time.Minute, 10); fmt.Sprint(alertIDs(got)) != "[c1]" {
			t.Errorf("other webhook: claimed %v, want [c1]", alertIDs(got))
		}
	})

	t.Run("ConcurrentClaimsTakeEachRowOnce", func(t *testing.T) {
		s := newStore(t)
		const n = 20
		for i := range n {
			if _, err := s.EnqueueAlert(ctx, mk(fmt.Sprintf("r%02d", i), hook, t0)); err != nil {
				t.Fatal(err)
			}
		}
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			wg   sync.WaitGroup
			errs = make(chan error, 4*n)
		)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					got, err := s.ClaimAlerts(ctx, hook, fmt.Sprintf("w%d", w), t0, time.Hour, 3)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, a := range got {
						seen[a.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(seen) != n {
			t.Errorf("claimed %d distinct alerts, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("alert %s claimed %d times", id, c)
			}
		}
	})
}

func alertIDs(as []ledger.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}
