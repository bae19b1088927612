package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// ChangesReachOtherProcesses checks that a change made through one
// process stops admissions that another process, holding a lease, would
// otherwise make from memory: a limit lowered below what is leased and an
// agent suspended. open opens one more process on the shared database
// (with its background lease loop), closed when the test ends. The change
// must take effect at once in the process that made it and, in the other,
// within the bound docs/architecture.md gives (the test allows five times
// that, so a loaded machine does not fail it).
func ChangesReachOtherProcesses(t *testing.T, open func(t *testing.T) *sqlstore.Store) {
	ctx := context.Background()
	a, b := open(t), open(t)
	n := 0
	reserve := func(s *sqlstore.Store, agentID, amount string) policy.Decision {
		t.Helper()
		n++
		d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: fmt.Sprintf("chg-%d", n), AgentID: agentID, Resource: "r", Amount: money.MustParse(amount)})
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		return d
	}
	// until reserves through s until a call is refused with want,
	// allowing 5 s; it returns how many were admitted first.
	until := func(s *sqlstore.Store, agentID string, want policy.Code) int {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for admitted := 0; ; admitted++ {
			d := reserve(s, agentID, "0.01")
			if !d.Allow {
				if d.Code != want {
					t.Fatalf("refused with %s (%s), want %s", d.Code, d.Reason, want)
				}
				return admitted
			}
			if time.Now().After(deadline) {
				t.Fatalf("still admitting %d calls after the change", admitted)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("LimitLowered", func(t *testing.T) {
		ag, err := a.CreateAgent(ctx, ledger.NewAgent{Name: "lowered", Owner: "o"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.CreatePolicy(ctx, ledger.NewPolicy{AgentID: ag.ID, Limit: money.MustParse("100"), Window: policy.WindowTotal})
		if err != nil {
			t.Fatal(err)
		}
		if d := reserve(a, ag.ID, "1"); !d.Allow {
			t.Fatalf("first call refused: %s", d.Reason)
		}
		if d := reserve(a, ag.ID, "1"); !d.Allow {
			t.Fatalf("second call refused: %s", d.Reason)
		}
		// A now leases far more than 2.
		if _, err := b.UpdatePolicy(ctx, p.ID, ledger.NewPolicy{Limit: money.MustParse("2")}); err != nil {
			t.Fatal(err)
		}
		if d := reserve(b, ag.ID, "0.01"); d.Allow {
			t.Fatalf("the process that lowered the limit admitted a call over it")
		}
		until(a, ag.ID, policy.CodeBudgetExceeded)
		us, err := b.Usage(ctx, ag.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := us[0].Spent + us[0].Reserved; got > money.MustParse("2.5") {
			t.Fatalf("spent + reserved %s after the limit fell to 2", got)
		}
	})

	t.Run("AgentSuspended", func(t *testing.T) {
		ag, err := a.CreateAgent(ctx, ledger.NewAgent{Name: "suspended", Owner: "o"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreatePolicy(ctx, ledger.NewPolicy{AgentID: ag.ID, Limit: money.MustParse("100"), Window: policy.WindowTotal}); err != nil {
			t.Fatal(err)
		}
		if d := reserve(a, ag.ID, "1"); !d.Allow {
			t.Fatalf("first call refused: %s", d.Reason)
		}
		if _, err := b.SetAgentStatus(ctx, ag.ID, policy.StatusSuspended); err != nil {
			t.Fatal(err)
		}
		if d := reserve(b, ag.ID, "0.01"); d.Allow || d.Code != policy.CodeAgentSuspended {
			t.Fatalf("the process that suspended the agent: %v %s, want agent_suspended", d.Allow, d.Code)
		}
		until(a, ag.ID, policy.CodeAgentSuspended)
	})
}
