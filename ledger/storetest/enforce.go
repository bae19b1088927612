package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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

// m parses a decimal amount for the tests.
func m(s string) money.Amount { return money.MustParse(s) }

// fx holds one test's store and the helpers that seed it.
type fx struct {
	t   *testing.T
	s   ledger.Store
	ctx context.Context
}

func newFx(t *testing.T, newStore Factory) *fx {
	t.Helper()
	return &fx{t: t, s: newStore(t), ctx: context.Background()}
}

func (f *fx) agent(name, parentID string) policy.Agent {
	f.t.Helper()
	a, err := f.s.CreateAgent(f.ctx, ledger.NewAgent{Name: name, Owner: "tests", ParentID: parentID})
	if err != nil {
		f.t.Fatalf("create agent %s: %v", name, err)
	}
	return a
}

func (f *fx) policy(agentID, limit string, w policy.Window, wt policy.WindowType, tz string, allow ...string) policy.Policy {
	f.t.Helper()
	p, err := f.s.CreatePolicy(f.ctx, ledger.NewPolicy{
		AgentID: agentID, Limit: m(limit), Currency: "USD", Window: w, WindowType: wt, Timezone: tz, Allow: allow,
	})
	if err != nil {
		f.t.Fatalf("create policy: %v", err)
	}
	return p
}

func (f *fx) daily(agentID, limit string) policy.Policy {
	return f.policy(agentID, limit, policy.WindowDaily, policy.WindowCalendar, "UTC")
}

// reserve asks for amount at `at` and returns the request ID and decision.
func (f *fx) reserve(agentID, amount string, at time.Time) (string, policy.Decision) {
	f.t.Helper()
	id := uuid.NewString()
	d, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{
		RequestID: id, AgentID: agentID, Resource: "mcp:test/tool", Operation: "tools/call",
		Amount: m(amount), Currency: "USD", TTL: time.Hour, Now: at, AllowUnbudgeted: true,
	})
	if err != nil {
		f.t.Fatalf("reserve %s: %v", amount, err)
	}
	return id, d
}

func (f *fx) settle(id, amount string, at time.Time) ledger.Event {
	f.t.Helper()
	ev, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id, Amount: m(amount), Outcome: policy.OutcomeCharged, Now: at})
	if err != nil {
		f.t.Fatalf("settle %s: %v", id, err)
	}
	return ev
}

// spend reserves and settles amount at `at`; it must be allowed.
func (f *fx) spend(agentID, amount string, at time.Time) {
	f.t.Helper()
	id, d := f.reserve(agentID, amount, at)
	if !d.Allow {
		f.t.Fatalf("spend %s at %s: denied: %s %s", amount, at, d.Code, d.Reason)
	}
	f.settle(id, amount, at)
}

// mustAllow and mustDeny check a decision.
func (f *fx) mustAllow(agentID, amount string, at time.Time) string {
	f.t.Helper()
	id, d := f.reserve(agentID, amount, at)
	if !d.Allow || d.Code != policy.CodeAllowed {
		f.t.Fatalf("reserve %s at %s: got %v %s (%s), want allowed", amount, at, d.Allow, d.Code, d.Reason)
	}
	return id
}

func (f *fx) mustDeny(agentID, amount string, at time.Time, code policy.Code, policyID string) policy.Decision {
	f.t.Helper()
	_, d := f.reserve(agentID, amount, at)
	if d.Allow || d.Code != code {
		f.t.Fatalf("reserve %s at %s: got %v %s (%s), want denied %s", amount, at, d.Allow, d.Code, d.Reason, code)
	}
	if policyID != "" && d.PolicyID != policyID {
		f.t.Fatalf("reserve %s: denied by policy %s (%s), want %s", amount, d.PolicyID, d.Reason, policyID)
	}
	return d
}

func (f *fx) release(id string) ledger.Event {
	f.t.Helper()
	ev, err := f.s.Release(f.ctx, id, "test")
	if err != nil {
		f.t.Fatalf("release %s: %v", id, err)
	}
	return ev
}

// usageOf returns the usage of policy p at `at`.
func (f *fx) usageOf(agentID, policyID string, at time.Time) policy.PolicyUsage {
	f.t.Helper()
	us, err := f.s.Usage(f.ctx, agentID, at)
	if err != nil {
		f.t.Fatalf("usage: %v", err)
	}
	for _, u := range us {
		if u.Policy.ID == policyID {
			return u
		}
	}
	f.t.Fatalf("usage of %s: policy %s missing from %+v", agentID, policyID, us)
	return policy.PolicyUsage{}
}

func remainingOf(t *testing.T, d policy.Decision, policyID string) money.Amount {
	t.Helper()
	for _, r := range d.Remaining {
		if r.PolicyID == policyID {
			return r.Remaining
		}
	}
	t.Fatalf("decision has no remaining for policy %s: %+v", policyID, d.Remaining)
	return 0
}

// noon is a fixed instant the tests measure from.
var noon = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func testEnforce(t *testing.T, newStore Factory) {
	t.Run("NoPolicyIsRefusedAndRecorded", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("free", "")
		d, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: "nb", AgentID: a.ID, Resource: "mcp:test/tool", Amount: m("1"), Now: noon})
		if err != nil || d.Allow || d.Code != policy.CodeNoBudget {
			t.Fatalf("Reserve = %+v, %v; want a no_budget denial", d, err)
		}
		evs := collect(f, ledger.EventFilter{})
		if len(evs) != 1 || evs[0].Outcome != policy.OutcomeDenied || evs[0].Code != policy.CodeNoBudget || evs[0].RequestID != "nb" {
			t.Fatalf("events %+v; want one no_budget denial", evs)
		}
	})

	t.Run("NoPolicyIsUnmeteredButRecordedWhenAllowed", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("free", "")
		id := f.mustAllow(a.ID, "1000", noon)
		ev := f.settle(id, "1000", noon)
		if ev.Outcome != policy.OutcomeCharged || ev.Amount != m("1000") || ev.AgentID != a.ID || ev.AgentName != "free" {
			t.Fatalf("event %+v", ev)
		}
		us, err := f.s.Usage(f.ctx, a.ID, noon)
		if err != nil || len(us) != 0 {
			t.Fatalf("Usage = %v, %v; want no policies", us, err)
		}
	})

	t.Run("BudgetWhileReservationOpen", func(t *testing.T) {
		// The budget a reader sees is limit − spent − reserved while a call
		// is in flight, and the next Reserve agrees with it exactly.
		f := newFx(t, newStore)
		parent := f.agent("parent", "")
		kid := f.agent("kid", parent.ID)
		pp := f.daily(parent.ID, "10")
		kp := f.policy(kid.ID, "4", policy.WindowHourly, policy.WindowRolling, "")
		f.spend(kid.ID, "1.25", noon.Add(-time.Minute))
		open := f.mustAllow(kid.ID, "2", noon)
		us, err := f.s.Usage(f.ctx, kid.ID, noon)
		if err != nil || len(us) != 2 {
			t.Fatalf("Usage = %+v, %v; want the kid's and the parent's policies", us, err)
		}
		for _, tc := range []struct {
			pu                               policy.PolicyUsage
			id, remaining, percent, resetsAt string
		}{
			{us[0], kp.ID, "0.75", "81.25", ""},
			{us[1], pp.ID, "6.75", "32.50", "2026-06-16T00:00:00Z"},
		} {
			b, err := tc.pu.Budget(noon)
			if err != nil {
				t.Fatal(err)
			}
			if b.PolicyID != tc.id || b.Spent != m("1.25") || b.Reserved != m("2") || b.Remaining != m(tc.remaining) ||
				string(b.PercentUsed) != tc.percent {
				t.Errorf("budget %+v; want policy %s spent 1.25 reserved 2 remaining %s percent %s", b, tc.id, tc.remaining, tc.percent)
			}
			if got := ""; b.ResetsAt != nil {
				if got = b.ResetsAt.Format(time.RFC3339); got != tc.resetsAt {
					t.Errorf("policy %s resets at %s, want %s", tc.id, got, tc.resetsAt)
				}
			} else if tc.resetsAt != "" {
				t.Errorf("policy %s has no reset time, want %s", tc.id, tc.resetsAt)
			}
			_, d := f.reserve(kid.ID, "0", noon)
			if got := remainingOf(t, d, tc.id); got != b.Remaining {
				t.Errorf("policy %s: Reserve reports %s remaining, budget status %s", tc.id, got, b.Remaining)
			}
		}
		f.release(open)
		if b, _ := f.usageOf(kid.ID, kp.ID, noon).Budget(noon); b.Reserved != 0 || b.Remaining != m("2.75") {
			t.Errorf("after release: %+v", b)
		}
	})

	t.Run("Limits", func(t *testing.T) {
		tests := []struct {
			name, spent, ask string
			allow            bool
			remaining        string // after an allowed reservation
		}{
			{"30 spent, check leaves 70", "30", "0", true, "70"},
			{"30 spent, 70 fits exactly", "30", "70", true, "0"},
			{"30 spent, 70.000000001 does not", "30", "70.000000001", false, ""},
			{"exactly 100 spent denies", "100", "0.01", false, ""},
			{"90 spent, 10 allowed", "90", "10", true, "0"},
			{"90 spent, 10.01 denied", "90", "10.01", false, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				f := newFx(t, newStore)
				a := f.agent("a", "")
				p := f.daily(a.ID, "100")
				f.spend(a.ID, tc.spent, noon.Add(-time.Hour))
				if tc.allow {
					id := f.mustAllow(a.ID, tc.ask, noon)
					_, d := f.reserve(a.ID, "0", noon)
					if got := remainingOf(t, d, p.ID); got != m(tc.remaining) {
						t.Fatalf("remaining %s, want %s", got, tc.remaining)
					}
					f.release(id)
				} else {
					d := f.mustDeny(a.ID, tc.ask, noon, policy.CodeBudgetExceeded, p.ID)
					if !strings.Contains(d.Reason, p.ID) || !strings.Contains(d.Reason, "100") {
						t.Fatalf("reason %q does not name the policy and the limit", d.Reason)
					}
				}
				u := f.usageOf(a.ID, p.ID, noon)
				if u.Spent != m(tc.spent) || u.Reserved != 0 {
					t.Fatalf("usage spent %s reserved %s, want %s and 0", u.Spent, u.Reserved, tc.spent)
				}
			})
		}
	})

	t.Run("DailyCalendarBoundaryUTC", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.daily(a.ID, "10")
		today := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
		f.spend(a.ID, "9", today.Add(-time.Second)) // 23:59:59 yesterday
		f.mustDeny(a.ID, "2", today.Add(-time.Second), policy.CodeBudgetExceeded, p.ID)
		if u := f.usageOf(a.ID, p.ID, today); u.Spent != 0 {
			t.Fatalf("at 00:00:00 yesterday's spend still counts: %s", u.Spent)
		}
		f.spend(a.ID, "3", today) // 00:00:00 today counts
		if u := f.usageOf(a.ID, p.ID, today.Add(23*time.Hour)); u.Spent != m("3") {
			t.Fatalf("later today spent %s, want 3", u.Spent)
		}
		f.mustDeny(a.ID, "7.01", today.Add(12*time.Hour), policy.CodeBudgetExceeded, p.ID)
		f.mustAllow(a.ID, "7", today.Add(12*time.Hour))
	})

	t.Run("DailyCalendarNewYorkAcrossDST", func(t *testing.T) {
		ny, err := time.LoadLocation("America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			day   time.Time // local midnight that ends the day under test
			hours int       // the length of the day under test
		}{
			// 2026-03-08 has 23 hours (clocks spring forward at 02:00).
			{"23-hour day", time.Date(2026, 3, 9, 0, 0, 0, 0, ny), 23},
			// 2026-11-01 has 25 hours (clocks fall back at 02:00).
			{"25-hour day", time.Date(2026, 11, 2, 0, 0, 0, 0, ny), 25},
			// The ordinary days before, ending at the midnight that starts
			// the day of the change.
			{"day before spring forward", time.Date(2026, 3, 8, 0, 0, 0, 0, ny), 24},
			{"day before fall back", time.Date(2026, 11, 1, 0, 0, 0, 0, ny), 24},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				f := newFx(t, newStore)
				a := f.agent("a", "")
				p := f.policy(a.ID, "10", policy.WindowDaily, policy.WindowCalendar, "America/New_York")
				prevLast := tc.day.Add(-time.Second) // 23:59:59 local the day before
				prevFirst := time.Date(prevLast.Year(), prevLast.Month(), prevLast.Day(), 0, 0, 0, 0, ny)
				if got := tc.day.Sub(prevFirst); got != time.Duration(tc.hours)*time.Hour {
					t.Fatalf("the day under test lasts %s, want %d hours", got, tc.hours)
				}
				f.spend(a.ID, "4", prevFirst) // 00:00:00 local, counts all that day
				f.spend(a.ID, "5", prevLast)
				if u := f.usageOf(a.ID, p.ID, prevLast); u.Spent != m("9") {
					t.Fatalf("at %s spent %s, want 9 (the whole local day)", prevLast, u.Spent)
				}
				if u := f.usageOf(a.ID, p.ID, tc.day); u.Spent != 0 {
					t.Fatalf("at local midnight %s spent %s, want 0", tc.day, u.Spent)
				}
				f.spend(a.ID, "10", tc.day)
				f.mustDeny(a.ID, "0.01", tc.day.Add(22*time.Hour), policy.CodeBudgetExceeded, p.ID)
			})
		}
	})

	t.Run("Rolling24h", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		p := f.policy(a.ID, "10", policy.WindowDaily, policy.WindowRolling, "UTC")
		at := noon.Add(30 * time.Second) // bucket 12:00
		f.spend(a.ID, "6", at)
		f.spend(a.ID, "3", noon.Add(6*time.Hour)) // bucket 18:00
		tests := []struct {
			now   time.Time
			spent string
		}{
			{noon.Add(24*time.Hour - time.Second), "9"},    // 11:59:59 next day: both count
			{noon.Add(24 * time.Hour), "3"},                // 12:00 next day: the 12:00 minute has left
			{noon.Add(30*time.Hour - time.Second), "3"},    // 17:59:59 next day
			{noon.Add(30 * time.Hour), "0"},                // 18:00 next day
			{noon.Add(23*time.Hour + 59*time.Minute), "9"}, // the last minute that still counts
		}
		for _, tc := range tests {
			if u := f.usageOf(a.ID, p.ID, tc.now); u.Spent != m(tc.spent) {
				t.Errorf("at %s spent %s, want %s", tc.now, u.Spent, tc.spent)
			}
		}
		f.mustDeny(a.ID, "1.01", noon.Add(23*time.Hour), policy.CodeBudgetExceeded, p.ID)
		f.mustAllow(a.ID, "7", noon.Add(24*time.Hour))
	})

	t.Run("DailyAndMonthlyNamesTheDaily", func(t *testing.T) {
		f := newFx(t, newStore)
		a := f.agent("a", "")
		monthly := f.policy(a.ID, "100", policy.WindowMonthly, policy.WindowCalendar, "UTC")
		daily := f.daily(a.ID, "20")
		f.spend(a.ID, "15", noon.Add(-time.Hour))
		// Lowering the daily limit keeps today's usage.
		if _, err := f.s.UpdatePolicy(f.ctx, daily.ID, ledger.NewPolicy{AgentID: a.ID, Limit: m("10"), Currency: "USD",
			Window: policy.WindowDaily, WindowType: policy.WindowCalendar, Timezone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		d := f.mustDeny(a.ID, "1", noon, policy.CodeBudgetExceeded, daily.ID)
		if !strings.Contains(d.Reason, "daily") || !strings.Contains(d.Reason, "15") || !strings.Contains(d.Reason, "10") {
			t.Fatalf("reason %q does not name the daily policy and its numbers", d.Reason)
		}
		if got := remainingOf(t, d, monthly.ID); got != m("85") {
			t.Fatalf("monthly remaining %s, want 85", got)
		}
	})

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

// BenchStore is what BenchReserveSettle needs of a store.
type BenchStore interface {
	ledger.Agents
	ledger.Policies
	ledger.Enforcer
}

// BenchReserveSettle measures Reserve+Settle round trips with concurrency
// callers spread over chains independent delegation chains. Each chain is
// an agent under a parent, each with a daily policy large enough never to
// deny, so every round trip locks and updates two policies, as a delegated
// agent's call does. With chains = 1 every caller contends for the same
// policies, the worst case; with chains = concurrency no two callers share
// a policy. It reports round trips per second as "ops/s".
func BenchReserveSettle(b *testing.B, s BenchStore, concurrency, chains int) {
	ctx := context.Background()
	agents := make([]string, chains)
	for i := range agents {
		parent, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-parent-" + uuid.NewString()[:8], Owner: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bench-" + uuid.NewString()[:8], Owner: "bench", ParentID: parent.ID})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range []string{parent.ID, a.ID} {
			if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: id, Limit: m("1000000000"), Currency: "USD", Window: policy.WindowDaily}); err != nil {
				b.Fatal(err)
			}
		}
		agents[i] = a.ID
	}
	var next atomic.Int64
	var failed atomic.Value
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agentID := agents[w%chains]
			for next.Add(1) <= int64(b.N) {
				id := uuid.NewString()
				d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: agentID, Resource: "mcp:bench/tool", Operation: "tools/call", Amount: m("0.001")})
				if err == nil && !d.Allow {
					err = fmt.Errorf("denied: %s", d.Reason)
				}
				if err == nil {
					_, err = s.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: m("0.001")})
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// seedLedger writes a small ledger: agents a and b (b a child of a), with
// charges, a denial, a refund and an unconfirmed charge across two UTC
// days and three resources. It returns the request IDs in ledger order.
func seedLedger(f *fx) (a, b policy.Agent, day1, day2 time.Time) {
	f.t.Helper()
	a = f.agent("alpha", "")
	b = f.agent("beta", a.ID)
	f.daily(b.ID, "5")
	day1 = time.Date(2026, 6, 14, 23, 59, 59, 0, time.UTC)
	day2 = time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	res := func(agentID, resource, amount string, at time.Time) string {
		f.t.Helper()
		id := uuid.NewString()
		d, err := f.s.Reserve(f.ctx, ledger.ReserveRequest{RequestID: id, AgentID: agentID, Resource: resource, Operation: "tools/call",
			Upstream: "up", Amount: m(amount), Currency: "USD", Quantity: "1", Unit: "call", Now: at, AllowUnbudgeted: true,
			Unpriced: resource == "mcp:fs/write"})
		if err != nil {
			f.t.Fatal(err)
		}
		if !d.Allow {
			return ""
		}
		return id
	}
	// 1: alpha charged 1.50 on mcp:fs/read at day1 (tokens recorded).
	id := res(a.ID, "mcp:fs/read", "1.50", day1)
	if _, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: id, Amount: m("1.50"), Tokens: policy.Tokens{Input: 10, Output: 20, CachedRead: 3, CacheWrite: 4, Reasoning: 5}, Now: day1}); err != nil {
		f.t.Fatal(err)
	}
	// 2: beta charged 2 on mcp:fs/write at day2, unpriced.
	f.settle(res(b.ID, "mcp:fs/write", "2", day2), "2", day2)
	// 3: beta denied 4 on llm:openai/gpt-4o at day2 (2 + 4 > 5).
	if res(b.ID, "llm:openai/gpt-4o", "4", day2) != "" {
		f.t.Fatal("want a denial")
	}
	// 4: alpha refunded on llm:openai/gpt-4o at day2.
	f.release(res(a.ID, "llm:openai/gpt-4o", "3", day2))
	// 5: beta unconfirmed 0.25 on mcp:fs/read at day2.
	if _, err := f.s.Settle(f.ctx, ledger.SettleRequest{RequestID: res(b.ID, "mcp:fs/read", "0.25", day2), Amount: m("0.25"), Outcome: policy.OutcomeUnconfirmed, Now: day2}); err != nil {
		f.t.Fatal(err)
	}
	return a, b, day1, day2
}

func collect(f *fx, flt ledger.EventFilter) []ledger.Event {
	f.t.Helper()
	var out []ledger.Event
	if err := f.s.QueryEvents(f.ctx, flt, func(ev ledger.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		f.t.Fatalf("query %+v: %v", flt, err)
	}
	return out
}

func testEvents(t *testing.T, newStore Factory) {
	f := newFx(t, newStore)
	a, b, day1, day2 := seedLedger(f)

	t.Run("Fields", func(t *testing.T) {
		all := collect(f, ledger.EventFilter{})
		if len(all) != 5 {
			t.Fatalf("%d events, want 5", len(all))
		}
		first := all[0]
		want := ledger.Event{
			Seq: -1, ID: first.ID, Time: day1, AgentID: a.ID, AgentName: "alpha", Chain: []string{a.ID},
			Resource: "mcp:fs/read", Operation: "tools/call", Quantity: "1", Unit: "call", Amount: m("1.50"),
			Currency: "USD", RequestID: first.RequestID, Outcome: policy.OutcomeCharged,
			Tokens: policy.Tokens{Input: 10, Output: 20, CachedRead: 3, CacheWrite: 4, Reasoning: 5}, Upstream: "up",
		}
		if !reflect.DeepEqual(first, want) {
			t.Fatalf("event\n got %+v\nwant %+v", first, want)
		}
		got, err := f.s.GetEvent(f.ctx, first.ID)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("GetEvent = %+v, %v", got, err)
		}
		if _, err := f.s.GetEvent(f.ctx, uuid.NewString()); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("GetEvent(unknown) = %v, want ErrNotFound", err)
		}
		denied := all[2]
		if denied.Outcome != policy.OutcomeDenied || denied.Code != policy.CodeBudgetExceeded || denied.Amount != 0 ||
			denied.Reason == "" || !reflect.DeepEqual(denied.Chain, []string{b.ID, a.ID}) {
			t.Fatalf("denied event %+v", denied)
		}
		if all[3].Outcome != policy.OutcomeRefunded || all[3].Amount != 0 || all[4].Outcome != policy.OutcomeUnconfirmed {
			t.Fatalf("events 4 and 5: %+v %+v", all[3], all[4])
		}
	})

	t.Run("Filters", func(t *testing.T) {
		tests := []struct {
			name string
			flt  ledger.EventFilter
			want []string // resources in order
		}{
			{"all", ledger.EventFilter{}, []string{"mcp:fs/read", "mcp:fs/write", "llm:openai/gpt-4o", "llm:openai/gpt-4o", "mcp:fs/read"}},
			{"agent", ledger.EventFilter{AgentIDs: []string{a.ID}}, []string{"mcp:fs/read", "llm:openai/gpt-4o"}},
			{"agents", ledger.EventFilter{AgentIDs: []string{a.ID, b.ID}}, []string{"mcp:fs/read", "mcp:fs/write", "llm:openai/gpt-4o", "llm:openai/gpt-4o", "mcp:fs/read"}},
			{"since is inclusive", ledger.EventFilter{Since: day2}, []string{"mcp:fs/write", "llm:openai/gpt-4o", "llm:openai/gpt-4o", "mcp:fs/read"}},
			{"until is exclusive", ledger.EventFilter{Until: day2}, []string{"mcp:fs/read"}},
			{"glob", ledger.EventFilter{Resource: "mcp:*"}, []string{"mcp:fs/read", "mcp:fs/write", "mcp:fs/read"}},
			{"glob across slash", ledger.EventFilter{Resource: "*read"}, []string{"mcp:fs/read", "mcp:fs/read"}},
			{"exact resource", ledger.EventFilter{Resource: "mcp:fs/write"}, []string{"mcp:fs/write"}},
			{"glob is case-sensitive", ledger.EventFilter{Resource: "MCP:*"}, nil},
			{"SQL wildcards are literal", ledger.EventFilter{Resource: "mcp:fs/_ead"}, nil},
			{"percent is literal", ledger.EventFilter{Resource: "%"}, nil},
			{"question mark is literal", ledger.EventFilter{Resource: "mcp:fs/?ead"}, nil},
			{"outcome", ledger.EventFilter{Outcome: policy.OutcomeDenied}, []string{"llm:openai/gpt-4o"}},
			{"combined", ledger.EventFilter{AgentIDs: []string{b.ID}, Resource: "mcp:fs/*", Since: day2, Outcome: policy.OutcomeUnconfirmed}, []string{"mcp:fs/read"}},
			{"limit", ledger.EventFilter{Limit: 2}, []string{"mcp:fs/read", "mcp:fs/write"}},
			{"newest first", ledger.EventFilter{NewestFirst: true}, []string{"mcp:fs/read", "llm:openai/gpt-4o", "llm:openai/gpt-4o", "mcp:fs/write", "mcp:fs/read"}},
			{"newest first keeps the newest under a limit", ledger.EventFilter{NewestFirst: true, Limit: 2, Resource: "mcp:*"}, []string{"mcp:fs/read", "mcp:fs/write"}},
			{"nothing integrated yet", ledger.EventFilter{Integrated: true}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				for _, ev := range collect(f, tc.flt) {
					got = append(got, ev.Resource)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("CallbackErrorStops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := f.s.QueryEvents(f.ctx, ledger.EventFilter{}, func(ledger.Event) error {
			n++
			return stop
		})
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("QueryEvents = %v after %d events, want stop after 1", err, n)
		}
	})

	t.Run("Summary", func(t *testing.T) {
		tests := []struct {
			by   ledger.SummaryBy
			flt  ledger.EventFilter
			want []ledger.SummaryRow
		}{
			{ledger.ByResource, ledger.EventFilter{}, []ledger.SummaryRow{
				{Key: "llm:openai/gpt-4o", Events: 2, Charged: 0, Denied: 1, Currency: "USD"},
				{Key: "mcp:fs/read", Events: 2, Charged: m("1.75"), Currency: "USD"},
				{Key: "mcp:fs/write", Events: 1, Charged: m("2"), Currency: "USD", Unpriced: 1},
			}},
			{ledger.ByAgent, ledger.EventFilter{}, []ledger.SummaryRow{
				{Key: "alpha", Events: 2, Charged: m("1.50"), Currency: "USD"},
				{Key: "beta", Events: 3, Charged: m("2.25"), Denied: 1, Currency: "USD", Unpriced: 1},
			}},
			// Release takes the wall-clock time, so the refund is left out by Until.
			{ledger.ByDay, ledger.EventFilter{Until: day2.Add(24 * time.Hour)}, []ledger.SummaryRow{
				{Key: "2026-06-14", Events: 1, Charged: m("1.50"), Currency: "USD"},
				{Key: "2026-06-15", Events: 3, Charged: m("2.25"), Denied: 1, Currency: "USD", Unpriced: 1},
			}},
			{ledger.ByDay, ledger.EventFilter{AgentIDs: []string{b.ID}, Resource: "mcp:*"}, []ledger.SummaryRow{
				{Key: "2026-06-15", Events: 2, Charged: m("2.25"), Currency: "USD", Unpriced: 1},
			}},
			{ledger.ByAgent, ledger.EventFilter{Since: day2.Add(time.Hour), Until: day2.Add(24 * time.Hour)}, []ledger.SummaryRow{}},
		}
		for _, tc := range tests {
			got, err := f.s.Summary(f.ctx, tc.flt, tc.by)
			if err != nil {
				t.Fatalf("summary by %s: %v", tc.by, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("summary by %s %+v\n got %+v\nwant %+v", tc.by, tc.flt, got, tc.want)
			}
		}
		if _, err := f.s.Summary(f.ctx, ledger.EventFilter{}, "owner"); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("summary by owner: %v, want ErrInvalid", err)
		}
	})

	t.Run("Count", func(t *testing.T) {
		for _, tc := range []struct {
			flt  ledger.EventFilter
			want int64
		}{
			{ledger.EventFilter{}, 5},
			{ledger.EventFilter{Limit: 2}, 5},
			{ledger.EventFilter{AgentIDs: []string{b.ID}, Resource: "mcp:*"}, 2},
			{ledger.EventFilter{Outcome: policy.OutcomeDenied}, 1},
			{ledger.EventFilter{Since: day2.Add(time.Hour), Until: day2.Add(24 * time.Hour)}, 0},
		} {
			if got, err := f.s.CountEvents(f.ctx, tc.flt); err != nil || got != tc.want {
				t.Errorf("CountEvents(%+v) = %d, %v; want %d", tc.flt, got, err, tc.want)
			}
		}
	})

	// Last: integration gives every event a seq, which the other subtests
	// expect to be -1.
	t.Run("FollowBySeq", func(t *testing.T) {
		sign := NewSigner(t, f.s, "follow.test")
		if _, _, err := f.s.Integrate(f.ctx, 3, sign); err != nil {
			t.Fatal(err)
		}
		seqs := func(flt ledger.EventFilter) []int64 {
			var out []int64
			for _, ev := range collect(f, flt) {
				out = append(out, ev.Seq)
			}
			return out
		}
		if got := seqs(ledger.EventFilter{Integrated: true}); !reflect.DeepEqual(got, []int64{0, 1, 2}) {
			t.Fatalf("integrated events: seqs %v, want [0 1 2]", got)
		}
		if got := seqs(ledger.EventFilter{Integrated: true, FromSeq: 3}); got != nil {
			t.Fatalf("after the last seq: %v, want none", got)
		}
		if _, _, err := f.s.Integrate(f.ctx, 10, sign); err != nil {
			t.Fatal(err)
		}
		if got := seqs(ledger.EventFilter{Integrated: true, FromSeq: 3}); !reflect.DeepEqual(got, []int64{3, 4}) {
			t.Fatalf("newly integrated: seqs %v, want [3 4]", got)
		}
		if got := seqs(ledger.EventFilter{Integrated: true, FromSeq: 1, Outcome: policy.OutcomeDenied}); !reflect.DeepEqual(got, []int64{2}) {
			t.Fatalf("filtered follow: seqs %v, want [2]", got)
		}
		if got := seqs(ledger.EventFilter{Integrated: true, NewestFirst: true, Limit: 2}); !reflect.DeepEqual(got, []int64{4, 3}) {
			t.Fatalf("newest integrated: seqs %v, want [4 3]", got)
		}
	})
}
