package interpose_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/policy"
)

// TestAmbiguousReserveIsReleased reproduces a PostgreSQL outage in which a
// reservation's COMMIT lands but is reported as failed: the call is refused
// and never relayed, so once the database is back its reservation ends
// released (refunded, 0), even when the sweep runs after it expired. A
// reservation that never landed leaves nothing to release and no event.
func TestAmbiguousReserveIsReleased(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t)
	url := c.URL(t)
	direct, err := postgres.Open(ctx, url, postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := direct.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := direct.CreateAgent(ctx, ledger.NewAgent{Name: "pg-agent", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: m("10"), Window: policy.WindowTotal}); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("1")}); err != nil {
		t.Fatal(err)
	}
	relay, via := pgtest.NewRelay(t, url)
	// No background lease loop: its commits would race the one whose
	// reply the test loses.
	s, err := postgres.Open(ctx, via, postgres.Options{ManualLeases: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clk := &clock{t: time.Now()}
	logs := &bytes.Buffer{}
	eng := interpose.New(interpose.Options{Store: s, Now: clk.Now, PriceCacheTTL: -1,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil))})
	events := func(requestID string) []ledger.Event {
		t.Helper()
		var out []ledger.Event
		if err := direct.QueryEvents(ctx, ledger.EventFilter{}, func(ev ledger.Event) error {
			if ev.RequestID == requestID {
				out = append(out, ev)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// sweepUntilReleased sweeps until nothing waits for release; the pool
	// may first hand out connections that died with the relay.
	sweepUntilReleased := func() {
		t.Helper()
		for i := 0; i < 50 && eng.PendingReleases() > 0; i++ {
			eng.Sweep(ctx)
			if eng.PendingReleases() > 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	// A first call leases headroom, so the next one's only write is its
	// reservation, one statement in its own transaction.
	warm, d := eng.Begin(ctx, interpose.Call{AgentID: a.ID, Resource: "mcp:fs/read", RequestID: "warm-up"})
	if warm == nil {
		t.Fatalf("warm-up call refused: %+v", d)
	}
	if _, err := eng.Release(ctx, warm, "warm-up"); err != nil {
		t.Fatal(err)
	}

	// The reservation's statement commits; its reply is lost. Its
	// parameters carry the request ID, so the marker is that.
	lost := relay.LoseReplyTo([]byte("landed"))
	tk, d := eng.Begin(ctx, interpose.Call{AgentID: a.ID, Resource: "mcp:fs/read", RequestID: "landed"})
	if tk != nil || d.Code != policy.CodeUnavailable {
		t.Fatalf("Begin with its commit reply lost = %+v, %+v; want unavailable", tk, d)
	}
	<-lost
	if r, err := direct.GetReservation(ctx, "landed"); err != nil || r.Status != "open" {
		t.Fatalf("the reservation did not land: %+v, %v", r, err)
	}
	if n := eng.PendingReleases(); n != 1 {
		t.Fatalf("PendingReleases = %d, want 1", n)
	}

	// Still down: the release waits.
	relay.Down()
	eng.Sweep(ctx)
	if n := eng.PendingReleases(); n != 1 {
		t.Fatalf("PendingReleases while down = %d, want 1", n)
	}

	// Back 17 minutes later, after the reservation expired: released, not
	// charged unconfirmed.
	relay.Up(t)
	clk.Add(17 * time.Minute)
	sweepUntilReleased()
	if n := eng.PendingReleases(); n != 0 {
		t.Fatalf("PendingReleases after the outage = %d\n%s", n, logs.String())
	}
	if r, err := direct.GetReservation(ctx, "landed"); err != nil || r.Status != "released" {
		t.Fatalf("reservation after the outage = %+v, %v; want released", r, err)
	}
	evs := events("landed")
	if len(evs) != 1 || evs[0].Outcome != policy.OutcomeRefunded || evs[0].Amount != 0 {
		t.Fatalf("events %+v, want one refunded of 0", evs)
	}
	eng.Sweep(ctx)
	if got := events("landed"); len(got) != 1 {
		t.Fatalf("a second sweep recorded more: %+v", got)
	}
	us, err := direct.Usage(ctx, a.ID, clk.Now())
	if err != nil || len(us) != 1 || us[0].Spent != 0 || us[0].Reserved != 0 {
		t.Fatalf("usage after the release = %+v, %v; want nothing spent or reserved", us, err)
	}

	// A reservation whose statement was cut before it reached the
	// database: nothing to release, and no event.
	cut := relay.CutBefore([]byte("never"))
	if tk, d := eng.Begin(ctx, interpose.Call{AgentID: a.ID, Resource: "mcp:fs/read", RequestID: "never"}); tk != nil || d.Code != policy.CodeUnavailable {
		t.Fatalf("Begin with its statement cut = %+v, %+v", tk, d)
	}
	<-cut
	if n := eng.PendingReleases(); n != 1 {
		t.Fatalf("PendingReleases = %d, want 1", n)
	}
	eng.Sweep(ctx)
	if n := eng.PendingReleases(); n != 1 {
		t.Fatalf("an unknown request was forgotten before its reservation could have expired: %d pending", n)
	}
	clk.Add(11 * time.Minute)
	sweepUntilReleased()
	if n := eng.PendingReleases(); n != 0 {
		t.Fatalf("PendingReleases = %d, want the unknown request forgotten", n)
	}
	if evs := events("never"); len(evs) != 0 {
		t.Fatalf("events for a reservation that never landed: %+v", evs)
	}
	if _, err := direct.GetReservation(ctx, "never"); err == nil {
		t.Fatal("a reservation appeared for the call refused while down")
	}
}

// lossyStore reports every admitted reservation as failed after it was
// committed, as a lost COMMIT reply does; conflict makes Reserve fail with
// a definite conflict instead.
type lossyStore struct {
	ledger.Store
	conflict bool
}

func (s *lossyStore) Reserve(ctx context.Context, r ledger.ReserveRequest) (policy.Decision, error) {
	if s.conflict {
		return policy.Decision{}, fmt.Errorf("request %q is already reserved: %w", r.RequestID, ledger.ErrConflict)
	}
	d, err := s.Store.Reserve(ctx, r)
	if err != nil || !d.Allow {
		return d, err
	}
	return policy.Decision{}, fmt.Errorf("commit: conn closed: %w", ledger.ErrUnavailable)
}

// TestOrphanRelease covers the release of ambiguous reservations on
// SQLite: a definite error leaves nothing to release (a conflicting
// request ID belongs to another call), and Run's last act when it stops
// releases what is pending.
func TestOrphanRelease(t *testing.T) {
	e := newEnv(t, nil)
	e.budget("10")
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("1")})

	// Another call holds "taken"; a Begin reusing the ID must not free it.
	owner, _ := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read", RequestID: "taken"})
	if owner == nil {
		t.Fatal("Begin refused")
	}
	conflicting := interpose.New(interpose.Options{Store: &lossyStore{Store: e.store, conflict: true}, Now: e.clk.Now, PriceCacheTTL: -1})
	if tk, d := conflicting.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read", RequestID: "taken"}); tk != nil || d.Code != policy.CodeUnavailable {
		t.Fatalf("Begin on a conflict = %+v, %+v", tk, d)
	}
	if n := conflicting.PendingReleases(); n != 0 {
		t.Fatalf("a definite conflict was remembered for release: %d", n)
	}
	conflicting.Sweep(e.ctx)
	if r, err := e.store.GetReservation(e.ctx, "taken"); err != nil || r.Status != "open" {
		t.Fatalf("another call's reservation = %+v, %v; want it still open", r, err)
	}

	lossy := interpose.New(interpose.Options{Store: &lossyStore{Store: e.store}, Now: e.clk.Now, PriceCacheTTL: -1, SweepInterval: time.Hour})
	if tk, d := lossy.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read", RequestID: "lost"}); tk != nil || d.Code != policy.CodeUnavailable {
		t.Fatalf("Begin with a lost commit reply = %+v, %+v", tk, d)
	}
	if n := lossy.PendingReleases(); n != 1 {
		t.Fatalf("PendingReleases = %d, want 1", n)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := lossy.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := e.store.GetReservation(e.ctx, "lost"); err != nil || r.Status != "released" {
		t.Fatalf("reservation after Run = %+v, %v; want released", r, err)
	}
	if n := lossy.PendingReleases(); n != 0 {
		t.Fatalf("PendingReleases after the release = %d", n)
	}
}
