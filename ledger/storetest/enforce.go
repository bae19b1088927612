package storetest

import (
	"context"
	"strings"
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

	testReservations(t, newStore)
}
