package sqlstore_test

import (
	"context"
	"reflect"
	"sort"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

func TestActivePolicies(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	a := mustAgent(t, s, "a", "")
	b := mustAgent(t, s, "b", a.ID)
	c := mustAgent(t, s, "c", "")
	mk := func(agent string) policy.Policy {
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: agent, Limit: money.MustParse("5"), Window: policy.WindowDaily})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa1, pa2, pb, _ := mk(a.ID), mk(a.ID), mk(b.ID), mk(c.ID)
	gone := mk(b.ID)
	if _, err := s.DeactivatePolicy(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	pa2, err := s.UpdatePolicy(ctx, pa2.ID, ledger.NewPolicy{Limit: money.MustParse("7")})
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.ActivePoliciesInTx(ctx, []string{b.ID, a.ID, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Policy{pa1, pa2, pb}
	sort.Slice(want, func(i, j int) bool { return want[i].ID < want[j].ID })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("activePolicies\n got %+v\nwant %+v (active, current versions, by ID)", got, want)
	}
	if got, err := s.ActivePoliciesInTx(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("activePolicies(nil) = %v, %v", got, err)
	}
	if got, err := s.ActivePoliciesInTx(ctx, []string{"nobody"}); err != nil || len(got) != 0 {
		t.Errorf("activePolicies(unknown) = %v, %v", got, err)
	}
}
