package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/interpose"
)

// Load of TestOverspendKillOneOfTwoProxies.
const (
	killWorkers = 6   // concurrent clients of each proxy's loop
	killLoopA   = 400 // most requests A's loop sends
	killLoopB   = 200 // most requests B's loop sends
	killHeldA   = 20  // requests held at the provider when A is killed
	killHeldB   = 10  // B's requests held across the kill
)

// loadLoop is the steady load of one proxy, and what its clients got.
type loadLoop struct {
	mu        sync.Mutex
	completed []string    // request IDs answered 200 in full
	failed    []accAnswer // answered otherwise, or not at all
	sent      atomic.Int64
	wg        sync.WaitGroup
}

// loop sends accBody to base from killWorkers clients until stop is closed
// or most requests were sent, each through the gate gateName, which counts
// them at the provider but holds none.
func (e *accEnv) loop(base, gateName string, most int64, stop <-chan struct{}) *loadLoop {
	g := e.prov.gate(gateName)
	g.release()
	l := &loadLoop{}
	for range killWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if l.sent.Add(1) > most {
					return
				}
				a := e.send(base, e.key, map[string]string{"E2e-Gate": gateName, "Fake-Delay": "10ms"})
				l.mu.Lock()
				if a.err == nil && a.status == http.StatusOK {
					l.completed = append(l.completed, a.requestID)
				} else {
					l.failed = append(l.failed, a)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *loadLoop) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.completed)
}

// TestOverspendKillOneOfTwoProxies: two proxies on one PostgreSQL database
// under load; one is killed with SIGKILL while requests it admitted are at
// the provider. No charge is lost: every request the killed proxy answered
// in full is charged, every request it relayed ends charged or
// unconfirmed once its reservation expires, and after the lease TTL the
// survivor admits exactly what the true remainder (limit − charged −
// unconfirmed) fits. The Merkle log then verifies in full.
//
// The proxy's reservations live at least interpose.DefaultReservationTTL
// (10 minutes, more than a test may wait) and no flag shortens them, so
// once the killed proxy's requests can no longer settle the test moves
// their expiry to the past in the database, as the passage of that time
// would; the survivor's own expiry sweep settles them.
func TestOverspendKillOneOfTwoProxies(t *testing.T) {
	w, c := accWorst(), accCharge()
	// Phase 1 is never refused: the budget holds the most it can spend —
	// every request charged, except those the kill cuts (A's held ones
	// and at most one per client of A's loop), unconfirmed at their worst
	// case — and burstAdmits worst cases beyond that, so phase 2 has at
	// least that many to admit and not all of its 500.
	phase1, err := money.Sum(amountTimes(t, c, killLoopA+killLoopB+killHeldB), amountTimes(t, w, killHeldA+killWorkers))
	if err != nil {
		t.Fatal(err)
	}
	limit := exactLimit(t, phase1)
	dbURL := pgtest.URL(t)
	e := newAccEnv(t, limit, "CARACAL_DATABASE_URL="+dbURL)
	a, b := e.proxy(), e.proxy()

	// Phase 1: both proxies under load; A has killHeldA requests at the
	// provider, B killHeldB, when A is killed.
	stopA, stopB := make(chan struct{}), make(chan struct{})
	loopA := e.loop(a.url, "a-loop", killLoopA, stopA)
	loopB := e.loop(b.url, "b-loop", killLoopB, stopB)
	heldA, heldB := e.prov.gate("a-held"), e.prov.gate("b-held")
	var held sync.WaitGroup
	var heldBAnswers []accAnswer
	var heldMu sync.Mutex
	for i := range killHeldA + killHeldB {
		held.Add(1)
		go func() {
			defer held.Done()
			if i < killHeldA {
				// A dies holding it: no answer to check.
				e.send(a.url, e.key, map[string]string{"E2e-Gate": "a-held"})
				return
			}
			ans := e.send(b.url, e.key, map[string]string{"E2e-Gate": "b-held"})
			heldMu.Lock()
			heldBAnswers = append(heldBAnswers, ans)
			heldMu.Unlock()
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for heldA.n.Load() < killHeldA || heldB.n.Load() < killHeldB || loopA.done() < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("before the kill: %d/%d held at the provider through A, %d/%d through B, %d of A's requests done\nA:\n%s\nB:\n%s",
				heldA.n.Load(), killHeldA, heldB.n.Load(), killHeldB, loopA.done(), procLog(a), procLog(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopA)
	a.kill()
	killed := time.Now()
	// A's held exchanges end with its connections; B's go on, settling
	// after A's death, and so does B's loop for a while.
	heldB.release()
	afterKill := loopB.done() + 20
	for loopB.done() < afterKill && loopB.sent.Load() <= killLoopB {
		if time.Now().After(deadline) {
			t.Fatalf("B's load stalled after the kill at %d answered\n%s", loopB.done(), procLog(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopB)
	loopA.wg.Wait()
	loopB.wg.Wait()
	held.Wait()

	// Every request B was sent was admitted, relayed and charged.
	bIDs := map[string]bool{}
	for _, id := range loopB.completed {
		bIDs[id] = true
	}
	for _, ans := range append(loopB.failed, heldBAnswers...) {
		if ans.err != nil || ans.status != http.StatusOK {
			t.Errorf("a request to the surviving proxy B failed: %d %v %s", ans.status, ans.err, ans.body)
			continue
		}
		bIDs[ans.requestID] = true
	}
	// A's requests fail only by the kill.
	for _, ans := range loopA.failed {
		if ans.err == nil {
			t.Errorf("a request to A was answered %d before the kill: %s", ans.status, ans.body)
		}
	}
	aDone := map[string]bool{}
	for _, id := range loopA.completed {
		aDone[id] = true
	}

	// The killed proxy's reservations still open can no longer settle:
	// bring their expiry forward and wait for B's sweep to settle them.
	expired := expireOpenReservations(t, dbURL, killed)
	if expired < killHeldA || expired > killHeldA+killWorkers {
		t.Fatalf("%d reservations open after the kill; A had %d requests held at the provider and at most %d more in flight", expired, killHeldA, killWorkers)
	}
	var evs []accEvent
	for {
		evs = e.ledger()
		n := 0
		for _, ev := range evs {
			if ev.Outcome == "unconfirmed" {
				n++
			}
		}
		if n >= expired {
			if n > expired {
				t.Fatalf("%d events unconfirmed; only the %d reservations the kill left open may be", n, expired)
			}
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("%d of %d expired reservations settled unconfirmed\n%s", n, expired, procLog(b))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// No charge lost: each request B answered and each A answered in full
	// is charged once; A's other events are its requests cut by the kill,
	// charged if their settlement was recorded, unconfirmed at their
	// worst case otherwise — at least one for every request A relayed.
	var spent money.Amount
	byID := map[string]bool{}
	aEvents := 0
	for _, ev := range evs {
		if byID[ev.RequestID] {
			t.Errorf("request %s has more than one event", ev.RequestID)
		}
		byID[ev.RequestID] = true
		switch {
		case ev.Outcome == "charged" && ev.Amount == c:
		case ev.Outcome == "unconfirmed" && ev.Amount == w && !bIDs[ev.RequestID] && !aDone[ev.RequestID]:
		default:
			t.Errorf("event %+v: want charged %s, or unconfirmed %s for a request cut by the kill", ev, c, w)
		}
		if !bIDs[ev.RequestID] {
			aEvents++
		}
		spent += ev.Amount
	}
	for id := range bIDs {
		if !byID[id] {
			t.Errorf("request %s, answered by B, is not in the ledger", id)
		}
	}
	for id := range aDone {
		if !byID[id] {
			t.Errorf("request %s, answered in full by A before it died, is not in the ledger", id)
		}
	}
	if relayed := int(e.prov.gate("a-loop").n.Load() + heldA.n.Load()); aEvents < relayed {
		t.Errorf("A relayed %d requests to the provider but the ledger holds %d of its events", relayed, aEvents)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Phase 2, once A's lease has lapsed: B alone admits exactly what the
	// true remainder fits.
	if wait := accLeaseTTL + interpose.DefaultSweepInterval + time.Second - time.Since(killed); wait > 0 {
		time.Sleep(wait)
	}
	remaining := limit - spent
	want := int(remaining / w)
	if want < burstAdmits || want >= burstSize {
		t.Fatalf("true remainder %s fits %d worst cases of %s; the test needs %d to %d", remaining, want, w, burstAdmits, burstSize-1)
	}
	t.Logf("A answered %d requests in full and relayed %d before it died; %d of its reservations expired unconfirmed; B answered %d; the survivor has room for %d",
		len(aDone), e.prov.gate("a-loop").n.Load()+heldA.n.Load(), expired, len(bIDs), want)
	admitted, refused := e.burst("survivor", e.key, []string{b.url}, burstSize)
	if len(admitted) != want || refused != burstSize-want {
		t.Fatalf("the survivor admitted %d and refused %d of %d; the true remainder %s (limit %s − charged and unconfirmed %s) fits exactly %d of %s\n%s",
			len(admitted), refused, burstSize, remaining, limit, spent, want, w, procLog(b))
	}
	e.checkBurstLedger("claude", len(evs), admitted, refused, "claude")
	e.waitBudget("claude", "claude", limit, spent+amountTimes(t, c, want))

	// Every event, the killed proxy's included, reaches the Merkle log
	// through the survivor, and the log verifies in full.
	total := int64(len(evs) + burstSize)
	for {
		var st struct {
			TreeSize int64 `json:"tree_size"`
			Pending  int64 `json:"pending_events"`
		}
		if err := json.Unmarshal([]byte(e.run("merkle", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.TreeSize == total && st.Pending == 0 {
			break
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatalf("Merkle tree of %d with %d pending; want all %d events integrated\n%s", st.TreeSize, st.Pending, total, procLog(b))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var v struct {
		OK   bool  `json:"ok"`
		Size int64 `json:"size"`
	}
	out := e.run("merkle", "verify", "--full", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || !v.OK || v.Size != total {
		t.Fatalf("merkle verify --full: %s (%v); want ok over %d events", strings.TrimSpace(out), err, total)
	}
	b.stop()
}

// expireOpenReservations moves the expiry of every reservation of
// accModel made before the kill and still open to the past, as if their
// time had run out, and returns how many it moved. It is the one place
// these tests know the schema (table reservations, columns status,
// resource, created_ns and expires_ns): a store that keeps open
// reservations elsewhere must change it, not the assertions.
func expireOpenReservations(t *testing.T, dbURL string, killed time.Time) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, `UPDATE reservations SET expires_ns = 0 WHERE status = 'open' AND resource = $1 AND created_ns <= $2`,
		"llm:openai/"+accModel, killed.UnixNano())
	if err != nil {
		t.Fatalf("expire the killed proxy's reservations: %v", err)
	}
	return int(tag.RowsAffected())
}
