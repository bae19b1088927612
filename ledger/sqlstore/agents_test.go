package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

func mustAgent(t *testing.T, s *sqlstore.Store, name, parent string) policy.Agent {
	t.Helper()
	a, err := s.CreateAgent(context.Background(), ledger.NewAgent{Name: name, Owner: "o", ParentID: parent})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return a
}

func TestChainDepthLimit(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	parent := ""
	var last policy.Agent
	for i := 1; i <= sqlstore.MaxChainDepth; i++ {
		last = mustAgent(t, s, fmt.Sprintf("a%02d", i), parent)
		parent = last.ID
	}
	chain, err := s.Chain(ctx, last.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != sqlstore.MaxChainDepth || chain[0].ID != last.ID || chain[len(chain)-1].Name != "a01" {
		t.Fatalf("chain of %d agents from %s to %s", len(chain), chain[0].Name, chain[len(chain)-1].Name)
	}
	inTx, err := s.ChainInTx(ctx, last.ID)
	if err != nil || !reflect.DeepEqual(inTx, chain) {
		t.Fatalf("chainTx differs from Chain: %v", err)
	}

	_, err = s.CreateAgent(ctx, ledger.NewAgent{Name: "one-too-many", ParentID: last.ID})
	want := fmt.Sprintf("parent agent %q: a delegation chain may hold at most 64 agents", last.ID)
	if !errors.Is(err, ledger.ErrInvalid) || err == nil || err.Error() != want {
		t.Fatalf("CreateAgent past the depth limit: %v, want %q", err, want)
	}
	// Hanging a two-agent tree under the deepest agent would also overflow.
	top := mustAgent(t, s, "top", "")
	mustAgent(t, s, "below", top.ID)
	_, err = s.SetAgentParent(ctx, top.ID, last.ID)
	if !errors.Is(err, ledger.ErrInvalid) || err.Error() != want {
		t.Fatalf("SetAgentParent past the depth limit: %v, want %q", err, want)
	}
}

// TestCorruptCycle writes a parent cycle behind the store's back: reading
// the chain must fail rather than loop.
func TestCorruptCycle(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	a := mustAgent(t, s, "a", "")
	b := mustAgent(t, s, "b", a.ID)
	if _, err := s.DB().ExecContext(ctx, `UPDATE agents SET parent_id = ? WHERE id = ?`, b.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.Chain(ctx, b.ID)
	want := fmt.Sprintf("chain of agent %q has a parent cycle at \"b\"", b.ID)
	if err == nil || err.Error() != want {
		t.Fatalf("Chain over a cycle: %v, want %q", err, want)
	}
	_, err = s.ChainInTx(ctx, a.ID)
	if err == nil || !strings.Contains(err.Error(), "has a parent cycle") {
		t.Fatalf("chainTx over a cycle: %v", err)
	}
}

func TestChainTxUnknown(t *testing.T) {
	s := storetest.OpenSQLite(t)
	_, err := s.ChainInTx(context.Background(), "nope")
	if !errors.Is(err, ledger.ErrNotFound) || err.Error() != `agent "nope" not found` {
		t.Fatalf("chainTx(unknown) = %v", err)
	}
	// chainTx is the hot path: it takes IDs only, not names.
	mustAgent(t, s, "named", "")
	if _, err := s.ChainInTx(context.Background(), "named"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("chainTx(name) = %v, want ErrNotFound", err)
	}
}

// TestLegacyAgentNameReadable checks that an agent stored under the looser
// name rule of older releases stays readable and addressable by name,
// although policy.ValidateAgentName now refuses to create one like it.
func TestLegacyAgentNameReadable(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	legacy := "résumé bot"
	if err := policy.ValidateAgentName(legacy); err == nil {
		t.Fatalf("%q passes today's rule; pick a name it refuses", legacy)
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO agents (id, name, owner, parent_id, status, metadata, created_ns)
		VALUES ('0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f', ?, 'o', NULL, 'active', '{}', 1)`, legacy); err != nil {
		t.Fatal(err)
	}
	a, err := s.GetAgent(ctx, legacy)
	if err != nil || a.Name != legacy {
		t.Fatalf("GetAgent(%q) = %+v, %v", legacy, a, err)
	}
	child := mustAgent(t, s, "child", legacy)
	if child.ParentID != a.ID {
		t.Errorf("child of the legacy agent has parent %q, want %q", child.ParentID, a.ID)
	}
	if _, err := s.SetAgentStatus(ctx, legacy, policy.StatusSuspended); err != nil {
		t.Errorf("suspend the legacy agent by name: %v", err)
	}
}
