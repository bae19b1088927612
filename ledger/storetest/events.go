package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

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
		all := collect(f, ledger.EventFilter{})
		if len(all) != 5 {
			t.Fatalf("%d events, want 5", len(all))
		}
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
			{"before the third event, newest first", ledger.EventFilter{BeforeID: all[2].ID, NewestFirst: true}, []string{"mcp:fs/write", "mcp:fs/read"}},
			{"before the last event, paged", ledger.EventFilter{BeforeID: all[4].ID, NewestFirst: true, Limit: 2}, []string{"llm:openai/gpt-4o", "llm:openai/gpt-4o"}},
			{"before the first event", ledger.EventFilter{BeforeID: all[0].ID}, nil},
			{"before an unknown event", ledger.EventFilter{BeforeID: uuid.NewString()}, nil},
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
