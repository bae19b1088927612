package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func testPolicies(t *testing.T, newStore Factory) {
	ctx := context.Background()
	amt := money.MustParse

	t.Run("CreateWithDefaults", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "spender", "")
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: amt("12.50"), Window: policy.WindowDaily})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := uuid.Parse(p.ID); err != nil {
			t.Errorf("ID %q is not a UUID", p.ID)
		}
		want := policy.Policy{ID: p.ID, AgentID: a.ID, Version: 1, Limit: amt("12.50"), Currency: "USD",
			Window: policy.WindowDaily, WindowType: policy.WindowCalendar, Timezone: "UTC", Active: true, CreatedAt: p.CreatedAt}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("CreatePolicy\n got %+v\nwant %+v", p, want)
		}
		got, err := s.GetPolicy(ctx, p.ID)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("GetPolicy\n got %+v, %v\nwant %+v", got, err, p)
		}
		h, err := s.PolicyHistory(ctx, p.ID)
		if err != nil || !reflect.DeepEqual(h, []policy.Policy{p}) {
			t.Errorf("PolicyHistory = %+v, %v", h, err)
		}
	})

	t.Run("AllFields", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		parent := crudAgent(t, s, "parent", "")
		child := crudAgent(t, s, "child", parent.ID)
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{
			AgentID: "child", Limit: amt("0.000000001"), Currency: "EUR", Window: policy.WindowWeekly,
			WindowType: policy.WindowRolling, Timezone: "America/New_York",
			Allow: []string{"mcp:fs/*", "llm:openai/gpt-4o*"}, DelegatedFrom: "parent",
		})
		if err != nil {
			t.Fatal(err)
		}
		if p.AgentID != child.ID || p.DelegatedFrom != parent.ID || p.Limit != 1 || p.Currency != "EUR" ||
			p.WindowType != policy.WindowRolling || p.Timezone != "America/New_York" ||
			!reflect.DeepEqual(p.Allow, []string{"mcp:fs/*", "llm:openai/gpt-4o*"}) {
			t.Errorf("created %+v", p)
		}
		got, err := s.GetPolicy(ctx, p.ID)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("GetPolicy\n got %+v, %v\nwant %+v", got, err, p)
		}
		big, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: child.ID, Limit: amt("9000000000"), Window: policy.WindowTotal})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetPolicy(ctx, big.ID); got.Limit != amt("9000000000") {
			t.Errorf("limit 9000000000 reads back as %s", got.Limit)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		ok := ledger.NewPolicy{AgentID: a.ID, Limit: amt("10"), Window: policy.WindowDaily}
		with := func(f func(*ledger.NewPolicy)) ledger.NewPolicy { p := ok; f(&p); return p }
		tests := []struct {
			in   ledger.NewPolicy
			kind error
			msg  string
		}{
			{with(func(p *ledger.NewPolicy) { p.Limit = amt("-1") }), ledger.ErrInvalid, `limit: negative amount -1.00`},
			{with(func(p *ledger.NewPolicy) { p.Currency = "usd" }), ledger.ErrInvalid, `invalid currency "usd": want a three-letter code such as USD`},
			{with(func(p *ledger.NewPolicy) { p.Window = "fortnightly" }), ledger.ErrInvalid, `invalid window "fortnightly": want one of total, hourly, daily, weekly, monthly`},
			{with(func(p *ledger.NewPolicy) { p.Window = "" }), ledger.ErrInvalid, `invalid window "": want one of total, hourly, daily, weekly, monthly`},
			{with(func(p *ledger.NewPolicy) { p.WindowType = "sliding" }), ledger.ErrInvalid, `invalid window type "sliding": want calendar or rolling`},
			{with(func(p *ledger.NewPolicy) { p.Window, p.WindowType = policy.WindowTotal, policy.WindowRolling }), ledger.ErrInvalid,
				`invalid window type "rolling" for window "total": a total budget never resets, so it cannot roll; use calendar`},
			{with(func(p *ledger.NewPolicy) { p.Timezone = "Mars/Olympus" }), ledger.ErrInvalid, `invalid time zone "Mars/Olympus": unknown time zone Mars/Olympus`},
			{with(func(p *ledger.NewPolicy) { p.Allow = []string{"mcp:ok/*", "a b"} }), ledger.ErrInvalid, `allow pattern 2: "a b" contains a space or control character`},
			{with(func(p *ledger.NewPolicy) { p.AgentID = "" }), ledger.ErrInvalid, `agent is required`},
			{with(func(p *ledger.NewPolicy) { p.AgentID = "ghost" }), ledger.ErrNotFound, `agent "ghost" not found`},
			{with(func(p *ledger.NewPolicy) { p.DelegatedFrom = "ghost" }), ledger.ErrInvalid, `delegating agent "ghost" not found`},
		}
		for _, tc := range tests {
			_, err := s.CreatePolicy(ctx, tc.in)
			wantErr(t, err, tc.kind, tc.msg)
		}
		all, err := s.ListPolicies(ctx, "", true)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 0 {
			t.Errorf("refused policies were written: %+v", all)
		}
	})

	t.Run("UpdateWritesVersions", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		other := crudAgent(t, s, "other", "")
		v1, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: amt("10"), Currency: "EUR",
			Window: policy.WindowDaily, Timezone: "Europe/Paris", Allow: []string{"mcp:*"}})
		if err != nil {
			t.Fatal(err)
		}
		// Empty currency, window, window type and time zone keep the
		// current ones; limit and allowlist are replaced.
		v2, err := s.UpdatePolicy(ctx, v1.ID, ledger.NewPolicy{Limit: amt("20")})
		if err != nil {
			t.Fatal(err)
		}
		want := v1
		want.Version, want.Limit, want.Allow, want.CreatedAt = 2, amt("20"), nil, v2.CreatedAt
		if !reflect.DeepEqual(v2, want) {
			t.Errorf("v2\n got %+v\nwant %+v", v2, want)
		}
		v3, err := s.UpdatePolicy(ctx, v1.ID, ledger.NewPolicy{AgentID: "a", Limit: amt("5"), Window: policy.WindowMonthly,
			WindowType: policy.WindowRolling, Timezone: "UTC", Currency: "USD", Allow: []string{"llm:*"}})
		if err != nil {
			t.Fatal(err)
		}
		if v3.Version != 3 || v3.Window != policy.WindowMonthly || v3.WindowType != policy.WindowRolling ||
			v3.Currency != "USD" || v3.Timezone != "UTC" || !reflect.DeepEqual(v3.Allow, []string{"llm:*"}) {
			t.Errorf("v3 = %+v", v3)
		}
		if got, err := s.GetPolicy(ctx, v1.ID); err != nil || !reflect.DeepEqual(got, v3) {
			t.Errorf("GetPolicy after updates\n got %+v, %v\nwant %+v", got, err, v3)
		}
		h, err := s.PolicyHistory(ctx, v1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, []policy.Policy{v1, v2, v3}) {
			t.Errorf("history\n got %+v\nwant %+v", h, []policy.Policy{v1, v2, v3})
		}

		_, err = s.UpdatePolicy(ctx, v1.ID, ledger.NewPolicy{AgentID: other.ID, Limit: amt("1")})
		wantErr(t, err, ledger.ErrInvalid, fmt.Sprintf("policy %q belongs to agent %s and cannot move to agent %q", v1.ID, a.ID, other.ID))
		_, err = s.UpdatePolicy(ctx, v1.ID, ledger.NewPolicy{Limit: amt("-0.01")})
		wantErr(t, err, ledger.ErrInvalid, `limit: negative amount -0.01`)
		_, err = s.UpdatePolicy(ctx, v1.ID, ledger.NewPolicy{Limit: amt("1"), Window: "yearly"})
		wantErr(t, err, ledger.ErrInvalid, `invalid window "yearly": want one of total, hourly, daily, weekly, monthly`)
		if h, _ := s.PolicyHistory(ctx, v1.ID); len(h) != 3 {
			t.Errorf("refused updates wrote versions: %d versions", len(h))
		}
	})

	t.Run("Deactivate", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: amt("10"), Window: policy.WindowTotal})
		if err != nil {
			t.Fatal(err)
		}
		keep, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: amt("3"), Window: policy.WindowHourly})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.DeactivatePolicy(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Active || d.Version != 2 || d.Limit != p.Limit {
			t.Errorf("deactivated %+v", d)
		}
		if got, _ := s.GetPolicy(ctx, p.ID); got.Active {
			t.Error("GetPolicy still active after deactivation")
		}
		h, _ := s.PolicyHistory(ctx, p.ID)
		if len(h) != 2 || !h[0].Active || h[1].Active {
			t.Errorf("history after deactivation: %+v", h)
		}
		active, err := s.ListPolicies(ctx, a.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(active) != 1 || active[0].ID != keep.ID {
			t.Errorf("active policies %+v, want only %s", active, keep.ID)
		}
		all, err := s.ListPolicies(ctx, a.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 {
			t.Errorf("%d policies with inactive ones, want 2", len(all))
		}
		_, err = s.DeactivatePolicy(ctx, p.ID)
		wantErr(t, err, ledger.ErrConflict, fmt.Sprintf("policy %q is already inactive", p.ID))
		_, err = s.UpdatePolicy(ctx, p.ID, ledger.NewPolicy{Limit: amt("1")})
		wantErr(t, err, ledger.ErrConflict, fmt.Sprintf("policy %q is inactive", p.ID))
	})

	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		msg := `policy "nope" not found`
		_, err := s.GetPolicy(ctx, "nope")
		wantErr(t, err, ledger.ErrNotFound, msg)
		_, err = s.PolicyHistory(ctx, "nope")
		wantErr(t, err, ledger.ErrNotFound, msg)
		_, err = s.UpdatePolicy(ctx, "nope", ledger.NewPolicy{Limit: amt("1"), Window: policy.WindowDaily})
		wantErr(t, err, ledger.ErrNotFound, msg)
		_, err = s.DeactivatePolicy(ctx, "nope")
		wantErr(t, err, ledger.ErrNotFound, msg)
		_, err = s.ListPolicies(ctx, "ghost", false)
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		empty, err := s.ListPolicies(ctx, "", true)
		if err != nil || empty == nil || len(empty) != 0 {
			t.Errorf("ListPolicies on an empty store = %#v, %v; want an empty, non-nil slice", empty, err)
		}
		b := crudAgent(t, s, "bob", "")
		a := crudAgent(t, s, "alice", "")
		mk := func(agent string, w policy.Window) policy.Policy {
			p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: agent, Limit: amt("1"), Window: w})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		b1 := mk(b.ID, policy.WindowDaily)
		a1 := mk(a.ID, policy.WindowDaily)
		b2 := mk(b.ID, policy.WindowMonthly)
		a2 := mk(a.ID, policy.WindowTotal)
		// An update must not move a policy in the listing.
		a1v2, err := s.UpdatePolicy(ctx, a1.ID, ledger.NewPolicy{Limit: amt("2")})
		if err != nil {
			t.Fatal(err)
		}
		ids := func(ps []policy.Policy) []string {
			out := make([]string, len(ps))
			for i, p := range ps {
				out[i] = p.ID
			}
			return out
		}
		all, err := s.ListPolicies(ctx, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(all), []string{a1.ID, a2.ID, b1.ID, b2.ID}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListPolicies(all) = %v, want %v (by agent name, then age)", got, want)
		}
		if !reflect.DeepEqual(all[0], a1v2) {
			t.Errorf("listed %+v, want the current version %+v", all[0], a1v2)
		}
		byName, err := s.ListPolicies(ctx, "bob", false)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(byName), []string{b1.ID, b2.ID}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListPolicies(bob) = %v, want %v", got, want)
		}
	})

	t.Run("ConcurrentUpdates", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: amt("1"), Window: policy.WindowDaily})
		if err != nil {
			t.Fatal(err)
		}
		const n = 10
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.UpdatePolicy(ctx, p.ID, ledger.NewPolicy{Limit: money.Amount(int64(i+2) * money.Scale)})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		h, err := s.PolicyHistory(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != n+1 {
			t.Fatalf("%d versions after %d concurrent updates, want %d", len(h), n, n+1)
		}
		for i, v := range h {
			if v.Version != i+1 {
				t.Errorf("history[%d].Version = %d", i, v.Version)
			}
		}
		cur, _ := s.GetPolicy(ctx, p.ID)
		if !reflect.DeepEqual(cur, h[n]) {
			t.Errorf("current %+v is not the last version %+v", cur, h[n])
		}
	})
}
