package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// testReservations runs the Enforce subtests of a reservation's life:
// blocking, settling, releasing and expiring, across a delegation chain
// and under concurrency.
func testReservations(t *testing.T, newStore Factory) {
	t.Run("ReservationBlocksUntilSettledOrReleased", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "10")
		first := f.mustAllow(a.ID, "8", noon)
		f.mustDeny(a.ID, "8", noon, policy.CodeBudgetExceeded, p.ID)
		if u := f.usageOf(a.ID, p.ID, noon); u.Reserved != m("8") || u.Spent != 0 {
			t.Fatalf("usage %+v, want reserved 8", u)
		}
		f.release(first)
		second := f.mustAllow(a.ID, "8", noon)
		f.settle(second, "2", noon) // actual cost below the reservation
		f.mustAllow(a.ID, "8", noon)
		f.mustDeny(a.ID, "0.01", noon, policy.CodeBudgetExceeded, p.ID)
		if u := f.usageOf(a.ID, p.ID, noon); u.Spent != m("2") || u.Reserved != m("8") {
			t.Fatalf("usage spent %s reserved %s, want 2 and 8", u.Spent, u.Reserved)
		}
	})

	t.Run("SettleIsIdempotent", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "10")
		id := f.mustAllow(a.ID, "4", noon)
		first := f.settle(id, "3", noon)
		again := f.settle(id, "5", noon.Add(time.Minute))
		if again.ID != first.ID || again.Amount != m("3") || again.Outcome != policy.OutcomeCharged {
			t.Fatalf("second settle %+v, want the first event %+v", again, first)
		}
		if rel := f.release(id); rel.ID != first.ID {
			t.Fatalf("release after settle returned %+v, want the settle event", rel)
		}
		if u := f.usageOf(a.ID, p.ID, noon); u.Spent != m("3") || u.Reserved != 0 {
			t.Fatalf("usage spent %s reserved %s, want 3 and 0", u.Spent, u.Reserved)
		}
		r, err := f.s.GetReservation(f.ctx, id)
		if err != nil || r.Status != "settled" || r.Amount != m("4") || r.AgentID != a.ID {
			t.Fatalf("reservation %+v, %v", r, err)
		}
		n := 0
		if err := f.s.QueryEvents(f.ctx, ledger.EventFilter{AgentIDs: []string{a.ID}}, func(ev ledger.Event) error {
			if ev.RequestID == id {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d events for the request, want 1", n)
		}
		// Releasing twice is also idempotent.
		id2 := f.mustAllow(a.ID, "1", noon)
		r1, r2 := f.release(id2), f.release(id2)
		if r1.ID != r2.ID || r1.Outcome != policy.OutcomeRefunded || r1.Amount != 0 {
			t.Fatalf("releases %+v and %+v", r1, r2)
		}
	})

	t.Run("SettleRecordsOverrunCode", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "1")
		id := f.mustAllow(a.ID, "0.5", noon)
		ev, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id, Amount: m("8.000024"), Outcome: policy.OutcomeCharged,
			Code: policy.CodeUsageOverrun, Now: noon})
		if err != nil || ev.Code != policy.CodeUsageOverrun || ev.Amount != m("8.000024") {
			t.Fatalf("settle = %+v, %v", ev, err)
		}
		if got, err := f.s.GetEvent(f.ctx, ev.ID); err != nil || got.Code != policy.CodeUsageOverrun {
			t.Fatalf("stored event = %+v, %v; want code usage_overrun", got, err)
		}
		if u := f.usageOf(a.ID, p.ID, noon); u.Spent != m("8.000024") || u.Reserved != 0 {
			t.Fatalf("usage spent %s reserved %s, want 8.000024 and 0", u.Spent, u.Reserved)
		}
		f.mustDeny(a.ID, "0.01", noon, policy.CodeBudgetExceeded, p.ID)
	})

	t.Run("ConcurrentSettleTakesEffectOnce", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "100")
		id := f.mustAllow(a.ID, "10", noon)
		const n = 20
		ids := make([]string, n)
		amounts := make([]money.Amount, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ev ledger.Event
				var err error
				if i%4 == 3 {
					ev, err = f.s.Release(f.ctx, id, "racing release")
				} else {
					ev, err = f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id, Amount: money.Amount(i+1) * m("0.1"), Now: noon})
				}
				if err != nil {
					t.Errorf("finish %d: %v", i, err)
					return
				}
				ids[i], amounts[i] = ev.ID, ev.Amount
			}()
		}
		wg.Wait()
		for i := 1; i < n; i++ {
			if ids[i] != ids[0] || amounts[i] != amounts[0] {
				t.Fatalf("finish %d returned event %s of %s, finish 0 returned %s of %s", i, ids[i], amounts[i], ids[0], amounts[0])
			}
		}
		if u := f.usageOf(a.ID, p.ID, noon); u.Spent != amounts[0] || u.Reserved != 0 {
			t.Fatalf("usage spent %s reserved %s, want %s and 0", u.Spent, u.Reserved, amounts[0])
		}
	})

	t.Run("UnknownRequestsAndAgents", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		if _, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: "nope", Amount: m("1")}); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("settle unknown: %v, want ErrNotFound", err)
		}
		if _, err := f.s.Release(f.ctx, "nope", ""); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("release unknown: %v, want ErrNotFound", err)
		}
		if _, err := f.s.GetReservation(f.ctx, "nope"); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("get unknown: %v, want ErrNotFound", err)
		}
		if _, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: "r", AgentID: uuid.NewString(), Resource: "x", Amount: m("1")}); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("reserve for unknown agent: %v, want ErrNotFound", err)
		}
		if _, err := f.s.Usage(f.ctx, uuid.NewString(), noon); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("usage of unknown agent: %v, want ErrNotFound", err)
		}
		req := ledger.ReserveRequest{RequestID: "dup", AgentID: a.ID, Resource: "x", Amount: m("1"), AllowUnbudgeted: true}
		if _, err := f.s.Reserve(f.ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Reserve(f.ctx, req); !errors.Is(err, ledger.ErrConflict) {
			t.Fatalf("reserve a request id twice: %v, want ErrConflict", err)
		}
		if _, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: "neg", AgentID: a.ID, Resource: "x", Amount: -1}); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("reserve a negative amount: %v, want ErrInvalid", err)
		}
	})

	t.Run("ExpiredReservationIsAnUnconfirmedCharge", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "10")
		id := uuid.NewString()
		d, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: id, AgentID: a.ID, Resource: "mcp:test/slow", Amount: m("6"), TTL: time.Minute, Now: noon})
		if err != nil || !d.Allow {
			t.Fatalf("reserve: %+v, %v", d, err)
		}
		if n, err := f.s.ExpireReservations(f.ctx, noon.Add(59*time.Second)); err != nil || n != 0 {
			t.Fatalf("sweep before expiry: %d, %v", n, err)
		}
		if n, err := f.s.ExpireReservations(f.ctx, noon.Add(time.Minute)); err != nil || n != 1 {
			t.Fatalf("sweep at expiry: %d, %v, want 1", n, err)
		}
		if n, err := f.s.ExpireReservations(f.ctx, noon.Add(time.Hour)); err != nil || n != 0 {
			t.Fatalf("second sweep: %d, %v, want 0", n, err)
		}
		r, err := f.s.GetReservation(f.ctx, id)
		if err != nil || r.Status != "expired" {
			t.Fatalf("reservation %+v, %v", r, err)
		}
		if u := f.usageOf(a.ID, p.ID, noon.Add(time.Hour)); u.Spent != m("6") || u.Reserved != 0 {
			t.Fatalf("usage spent %s reserved %s, want 6 and 0", u.Spent, u.Reserved)
		}
		f.mustDeny(a.ID, "4.01", noon.Add(time.Hour), policy.CodeBudgetExceeded, p.ID)
		ev := f.settle(id, "1", noon.Add(2*time.Hour)) // a late result changes nothing
		if ev.Outcome != policy.OutcomeUnconfirmed || ev.Amount != m("6") || ev.Resource != "mcp:test/slow" {
			t.Fatalf("event %+v, want an unconfirmed charge of 6", ev)
		}
		// Settling explicitly as unconfirmed works the same way.
		id2 := f.mustAllow(a.ID, "1", noon)
		ev2, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id2, Amount: m("1"), Outcome: policy.OutcomeUnconfirmed, Reason: "client gone", Now: noon})
		if err != nil || ev2.Outcome != policy.OutcomeUnconfirmed || ev2.Reason != "client gone" {
			t.Fatalf("unconfirmed settle %+v, %v", ev2, err)
		}
	})

	t.Run("Delegation", func(t *testing.T) {
		f := newFx(t, newStore)
		parent := f.agent("parent", "")
		pp := f.daily(parent.ID, "10")
		childA := f.agent("child-a", parent.ID)
		pa := f.daily(childA.ID, "8")
		childB := f.agent("child-b", parent.ID)
		f.spend(childA.ID, "8", noon)
		f.mustDeny(childA.ID, "0.01", noon, policy.CodeBudgetExceeded, pa.ID)
		if u := f.usageOf(parent.ID, pp.ID, noon); u.Spent != m("8") {
			t.Fatalf("parent spent %s, want 8", u.Spent)
		}
		_, d := f.reserve(parent.ID, "0", noon)
		if got := remainingOf(t, d, pp.ID); got != m("2") {
			t.Fatalf("parent remaining %s, want 2", got)
		}
		f.mustDeny(childB.ID, "2.01", noon, policy.CodeBudgetExceeded, pp.ID)
		f.spend(childB.ID, "2", noon)
		d = f.mustDeny(childB.ID, "0.01", noon, policy.CodeBudgetExceeded, pp.ID)
		if !strings.Contains(d.Reason, "parent") {
			t.Fatalf("reason %q does not name the parent", d.Reason)
		}
	})

	t.Run("GrandchildCountsOnAllThree", func(t *testing.T) {
		f := newFx(t, newStore)
		root := f.agent("root", "")
		pr := f.daily(root.ID, "100")
		mid := f.agent("mid", root.ID)
		pm := f.daily(mid.ID, "50")
		leaf := f.agent("leaf", mid.ID)
		pl := f.daily(leaf.ID, "20")
		id := f.mustAllow(leaf.ID, "5", noon)
		for _, c := range []struct{ agent, pol string }{{leaf.ID, pl.ID}, {mid.ID, pm.ID}, {root.ID, pr.ID}} {
			if u := f.usageOf(leaf.ID, c.pol, noon); u.Reserved != m("5") {
				t.Fatalf("policy %s reserved %s, want 5", c.pol, u.Reserved)
			}
		}
		ev := f.settle(id, "5", noon)
		if len(ev.Chain) != 3 || ev.Chain[0] != leaf.ID || ev.Chain[1] != mid.ID || ev.Chain[2] != root.ID {
			t.Fatalf("event chain %v", ev.Chain)
		}
		for _, c := range []struct{ agent, pol string }{{leaf.ID, pl.ID}, {mid.ID, pm.ID}, {root.ID, pr.ID}} {
			if u := f.usageOf(c.agent, c.pol, noon); u.Spent != m("5") || u.Reserved != 0 {
				t.Fatalf("policy %s spent %s reserved %s, want 5 and 0", c.pol, u.Spent, u.Reserved)
			}
		}
		// The root's budget binds the grandchild too.
		f.spend(mid.ID, "45", noon)
		f.mustDeny(leaf.ID, "0.01", noon, policy.CodeBudgetExceeded, pm.ID)
	})

	t.Run("SuspendedAndAllowlistDenialsAreRecorded", func(t *testing.T) {
		f := newFx(t, newStore)
		parent := f.agent("parent", "")
		a := f.agent("a", parent.ID)
		p := f.policy(a.ID, "10", policy.WindowDaily, policy.WindowCalendar, "UTC", "mcp:fs/*")
		_, d := f.reserve(a.ID, "1", noon) // resource mcp:test/tool
		if d.Allow || d.Code != policy.CodeNotAllowed || d.PolicyID != p.ID {
			t.Fatalf("decision %+v, want not_allowed", d)
		}
		if _, err := f.s.SetAgentStatus(f.ctx, parent.ID, policy.StatusSuspended); err != nil {
			t.Fatal(err)
		}
		_, d = f.reserve(a.ID, "1", noon)
		if d.Allow || d.Code != policy.CodeAgentSuspended {
			t.Fatalf("decision %+v, want agent_suspended", d)
		}
		var codes []policy.Code
		if err := f.s.QueryEvents(f.ctx, ledger.EventFilter{Outcome: policy.OutcomeDenied}, func(ev ledger.Event) error {
			if ev.Amount != 0 || ev.AgentID != a.ID || ev.Seq != -1 || ev.Reason == "" {
				t.Errorf("denied event %+v", ev)
			}
			codes = append(codes, ev.Code)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(codes) != 2 || codes[0] != policy.CodeNotAllowed || codes[1] != policy.CodeAgentSuspended {
			t.Fatalf("denied events %v", codes)
		}
	})

	t.Run("Concurrent500", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("busy", "")
		p := f.daily(a.ID, "100")
		const callers = 500
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := uuid.NewString()
				d, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: id, AgentID: a.ID, Resource: "mcp:test/tool", Amount: m("1.00"), Now: noon})
				if err != nil {
					errs <- fmt.Errorf("reserve: %w", err)
					return
				}
				if !d.Allow {
					if d.Code != policy.CodeBudgetExceeded {
						errs <- fmt.Errorf("denied with %s: %s", d.Code, d.Reason)
					}
					return
				}
				allowed.Add(1)
				if _, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id, Amount: m("1.00"), Now: noon}); err != nil {
					errs <- fmt.Errorf("settle: %w", err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := allowed.Load(); n != 100 {
			t.Fatalf("%d calls allowed, want exactly 100", n)
		}
		sum, charged, denied := money.Amount(0), 0, 0
		if err := f.s.QueryEvents(f.ctx, ledger.EventFilter{AgentIDs: []string{a.ID}}, func(ev ledger.Event) error {
			switch ev.Outcome {
			case policy.OutcomeCharged:
				charged++
				sum += ev.Amount
			case policy.OutcomeDenied:
				denied++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if sum != m("100.00") || charged != 100 || denied != 400 {
			t.Fatalf("ledger: %d charged summing %s, %d denied; want 100 summing 100.00 and 400", charged, sum, denied)
		}
		if u := f.usageOf(a.ID, p.ID, noon); u.Spent != m("100") || u.Reserved != 0 {
			t.Fatalf("usage spent %s reserved %s", u.Spent, u.Reserved)
		}
	})
}
