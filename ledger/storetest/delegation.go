package storetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

func testDelegations(t *testing.T, newStore Factory) {
	ctx := context.Background()
	amt := money.MustParse
	budget := func(limit string) ledger.NewPolicy {
		return ledger.NewPolicy{Limit: amt(limit), Window: policy.WindowDaily}
	}
	// unchanged fails t unless the agent still has the given parent and
	// no delegated policies: a refused delegation wrote nothing.
	unchanged := func(t *testing.T, s ledger.Store, name, parentID string) {
		t.Helper()
		a, err := s.GetAgent(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if a.ParentID != parentID {
			t.Errorf("agent %s has parent %q after a refused delegation, want %q", name, a.ParentID, parentID)
		}
		pols, err := s.ListPolicies(ctx, a.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pols {
			if p.DelegatedFrom != "" {
				t.Errorf("agent %s has delegated policy %+v after a refused delegation", name, p)
			}
		}
	}

	t.Run("Create", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		parent := crudAgent(t, s, "parent", "")
		child := crudAgent(t, s, "child", "")
		if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: parent.ID, Limit: amt("10"), Window: policy.WindowDaily}); err != nil {
			t.Fatal(err)
		}
		// AgentID and DelegatedFrom in the policy are the store's to set.
		in := budget("8")
		in.AgentID, in.DelegatedFrom = "ignored", "ignored"
		p, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "parent", Child: "child", Policy: in, MaxDepth: 5})
		if err != nil {
			t.Fatal(err)
		}
		want := policy.Policy{ID: p.ID, AgentID: child.ID, DelegatedFrom: parent.ID, Version: 1, Limit: amt("8"), Currency: "USD",
			Window: policy.WindowDaily, WindowType: policy.WindowCalendar, Timezone: "UTC", Active: true, CreatedAt: p.CreatedAt}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("CreateDelegation\n got %+v\nwant %+v", p, want)
		}
		if got, err := s.GetPolicy(ctx, p.ID); err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("GetPolicy = %+v, %v; want %+v", got, err, p)
		}
		if a, err := s.GetAgent(ctx, child.ID); err != nil || a.ParentID != parent.ID {
			t.Errorf("child after delegation: %+v, %v; want parent %s", a, err, parent.ID)
		}
		// A second delegation from the same parent keeps the link.
		if _, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: parent.ID, Child: child.ID, Policy: ledger.NewPolicy{Limit: amt("50"), Window: policy.WindowWeekly}}); err != nil {
			t.Errorf("second delegation to the same child: %v", err)
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		top := crudAgent(t, s, "top", "")
		mid := crudAgent(t, s, "mid", top.ID)
		crudAgent(t, s, "leaf", mid.ID)
		crudAgent(t, s, "free", "")
		other := crudAgent(t, s, "other", "")
		crudAgent(t, s, "adopted", other.ID)
		if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: "top", Limit: amt("10"), Window: policy.WindowDaily}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name          string
			d             ledger.NewDelegation
			kinds         []error
			msg           string
			child, parent string // the child and its parent before, unchanged after
		}{
			{"self", ledger.NewDelegation{Parent: "free", Child: "free", Policy: budget("1")},
				[]error{ledger.ErrDelegateToSelf, ledger.ErrInvalid}, "an agent cannot delegate to itself", "free", ""},
			{"other parent", ledger.NewDelegation{Parent: "top", Child: "adopted", Policy: budget("1")},
				[]error{ledger.ErrConflict}, `agent "adopted" already has parent "other"; delegate from that parent`, "adopted", other.ID},
			{"cycle", ledger.NewDelegation{Parent: "leaf", Child: "top", Policy: budget("1")},
				[]error{ledger.ErrConflict}, `agent "top" is an ancestor of "leaf": delegating would make a cycle`, "top", ""},
			{"over parent limit", ledger.NewDelegation{Parent: "top", Child: "free", Policy: budget("20")},
				[]error{ledger.ErrOverParentLimit, ledger.ErrInvalid}, `20.00 USD exceeds parent "top"'s daily limit of 10.00 USD`, "free", ""},
			{"unknown parent", ledger.NewDelegation{Parent: "ghost", Child: "free", Policy: budget("1")},
				[]error{ledger.ErrNotFound}, `agent "ghost" not found`, "free", ""},
			{"unknown child", ledger.NewDelegation{Parent: "top", Child: "ghost", Policy: budget("1")},
				[]error{ledger.ErrNotFound}, `agent "ghost" not found`, "free", ""},
			{"missing child", ledger.NewDelegation{Parent: "top", Policy: budget("1")},
				[]error{ledger.ErrInvalid}, `child agent is required`, "free", ""},
			{"bad policy", ledger.NewDelegation{Parent: "top", Child: "free", Policy: ledger.NewPolicy{Limit: amt("1"), Window: "fortnightly"}},
				[]error{ledger.ErrInvalid}, `invalid window "fortnightly": want one of total, hourly, daily, weekly, monthly`, "free", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.CreateDelegation(ctx, tc.d)
				for _, k := range tc.kinds {
					wantErr(t, err, k, tc.msg)
				}
				unchanged(t, s, tc.child, tc.parent)
			})
		}
	})

	t.Run("MaxDepth", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		b := crudAgent(t, s, "b", a.ID)
		crudAgent(t, s, "c", "")
		d := crudAgent(t, s, "d", "")
		crudAgent(t, s, "e", d.ID)
		// b → c makes a → b → c: three agents.
		_, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "b", Child: "c", Policy: budget("1"), MaxDepth: 2})
		var deep *ledger.ChainDepthError
		if !errors.As(err, &deep) || !errors.Is(err, ledger.ErrConflict) {
			t.Fatalf("delegation past the depth limit: %v, want a ChainDepthError", err)
		}
		if *deep != (ledger.ChainDepthError{Agents: 3, Path: "a → b → c…", Max: 2}) {
			t.Errorf("ChainDepthError %+v", *deep)
		}
		unchanged(t, s, "c", "")
		// The child's own descendants count: a → d → e is three agents.
		if _, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "a", Child: "d", Policy: budget("1"), MaxDepth: 2}); !errors.As(err, &deep) || deep.Agents != 3 {
			t.Errorf("delegation to a child with descendants: %v, want a 3-agent ChainDepthError", err)
		}
		unchanged(t, s, "d", "")
		if _, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "b", Child: "c", Policy: budget("1"), MaxDepth: 3}); err != nil {
			t.Errorf("delegation within the depth limit: %v", err)
		}
		// CreateAgent applies the same limit to a new child.
		_, err = s.CreateAgent(ctx, ledger.NewAgent{Name: "f", Owner: "o", ParentID: b.ID, MaxDepth: 2})
		if !errors.As(err, &deep) || *deep != (ledger.ChainDepthError{Agents: 3, Path: "a → b → f", Max: 2}) {
			t.Errorf("CreateAgent past the depth limit: %v", err)
		}
		if _, err := s.GetAgent(ctx, "f"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("refused agent was written: %v", err)
		}
	})

	// The delegation's writes are one transaction: a failure after the
	// parent link is written must take the link back with it.
	t.Run("FailureWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		crudAgent(t, s, "parent", "")
		crudAgent(t, s, "child", "")
		db := OpenMerkleDB(t, s)
		stmts := []string{`CREATE TRIGGER fail_policy_version BEFORE INSERT ON policy_versions
			BEGIN SELECT RAISE(ABORT, 'injected failure'); END`}
		if db.Postgres {
			stmts = []string{`CREATE FUNCTION fail_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
				`CREATE TRIGGER fail_policy_version BEFORE INSERT ON policy_versions
				FOR EACH ROW EXECUTE FUNCTION fail_policy_version()`}
		}
		for _, q := range stmts {
			if _, err := db.DB.ExecContext(ctx, q); err != nil {
				t.Fatalf("install failing trigger: %v", err)
			}
		}
		_, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "parent", Child: "child", Policy: budget("1")})
		if err == nil {
			t.Fatal("delegation succeeded although its last write failed")
		}
		unchanged(t, s, "child", "")
		pols, err := s.ListPolicies(ctx, "", true)
		if err != nil || len(pols) != 0 {
			t.Errorf("policies after a failed delegation: %+v, %v", pols, err)
		}
	})

	// Two delegations that would each be fine alone but together close a
	// loop: the hierarchy lock lets exactly one through.
	t.Run("ConcurrentCycle", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		crudAgent(t, s, "x", "")
		crudAgent(t, s, "y", "")
		const rounds = 4
		for i := range rounds {
			if i > 0 {
				for _, n := range []string{"x", "y"} {
					if _, err := s.SetAgentParent(ctx, n, ""); err != nil {
						t.Fatal(err)
					}
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for j, pair := range [][2]string{{"x", "y"}, {"y", "x"}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[j] = s.CreateDelegation(ctx, ledger.NewDelegation{Parent: pair[0], Child: pair[1], Policy: budget("1")})
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, ledger.ErrConflict):
					t.Errorf("round %d: unexpected error %v", i, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of 2 crossing delegations succeeded, want 1", i, ok)
			}
			if _, err := s.Chain(ctx, "x"); err != nil {
				t.Fatalf("round %d: chain after crossing delegations: %v", i, err)
			}
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		crudAgent(t, s, "parent", "")
		crudAgent(t, s, "child", "")
		own, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: "parent", Limit: amt("10"), Window: policy.WindowDaily})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.CreateDelegation(ctx, ledger.NewDelegation{Parent: "parent", Child: "child", Policy: budget("5")})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.RevokeDelegation(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := d
		want.Version, want.Limit, want.CreatedAt = 2, 0, r.CreatedAt
		if !reflect.DeepEqual(r, want) {
			t.Errorf("RevokeDelegation\n got %+v\nwant %+v", r, want)
		}
		if h, err := s.PolicyHistory(ctx, d.ID); err != nil || len(h) != 2 || h[1].Limit != 0 || h[0].Limit != amt("5") {
			t.Errorf("history after revoke: %+v, %v", h, err)
		}
		_, err = s.RevokeDelegation(ctx, d.ID)
		wantErr(t, err, ledger.ErrConflict, `delegation "`+d.ID+`" is already revoked`)
		_, err = s.RevokeDelegation(ctx, own.ID)
		wantErr(t, err, ledger.ErrNotDelegation, `policy "`+own.ID+`" is not a delegation`)
		wantErr(t, err, ledger.ErrInvalid, `policy "`+own.ID+`" is not a delegation`)
		_, err = s.RevokeDelegation(ctx, "no-such-policy")
		wantErr(t, err, ledger.ErrNotFound, `policy "no-such-policy" not found`)
		if p, err := s.GetPolicy(ctx, own.ID); err != nil || p.Version != 1 {
			t.Errorf("refused revoke changed the parent's policy: %+v, %v", p, err)
		}
	})
}
