package sqlstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// openTwo opens two stores on one SQLite file, as two processes would.
func openTwo(t *testing.T) (a, b *sqlstore.Store) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caracal.db")
	for _, s := range []**sqlstore.Store{&a, &b} {
		st, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.MigrateUp(ctx); err != nil {
			t.Fatal(err)
		}
		*s = st
	}
	return a, b
}

// eventually calls check until it returns true, failing the test if it
// has not within a bound far above the configuration cache's.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen by the other process", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeyByHashCache checks that KeyByHash serves keys from the
// configuration cache, and that a revoked key or a suspended agent takes
// effect at once in the process that made the change and, by the cache's
// age bound, in another process too.
func TestKeyByHashCache(t *testing.T) {
	ctx := context.Background()
	a, b := openTwo(t)
	agent, err := a.CreateAgent(ctx, ledger.NewAgent{Name: "keyed", Owner: "o", Metadata: map[string]string{"team": "t"}})
	if err != nil {
		t.Fatal(err)
	}
	key, hash, prefix, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := a.CreateKey(ctx, agent.ID, hash, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(s *sqlstore.Store) (policy.APIKey, policy.Agent) {
		t.Helper()
		gk, ga, err := s.KeyByHash(ctx, hash)
		if err != nil {
			t.Fatalf("KeyByHash: %v", err)
		}
		if gk.ID != k.ID || ga.ID != agent.ID {
			t.Fatalf("KeyByHash = key %s of agent %s, want key %s of agent %s", gk.ID, ga.ID, k.ID, agent.ID)
		}
		return gk, ga
	}
	for name, s := range map[string]*sqlstore.Store{"a": a, "b": b} {
		if gk, ga := lookup(s); gk.RevokedAt != nil || ga.Status != policy.StatusActive {
			t.Fatalf("%s: fresh key reads revoked %v, agent %s", name, gk.RevokedAt, ga.Status)
		}
		if !s.KeyCached(hash) {
			t.Fatalf("%s: KeyByHash did not cache the key", name)
		}
	}

	// An unknown hash is not found and not cached.
	unknown := apikey.Hash(key + "x")
	if _, _, err := b.KeyByHash(ctx, unknown); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("KeyByHash(unknown) = %v, want ErrNotFound", err)
	}
	if b.KeyCached(unknown) {
		t.Fatal("an unknown hash was cached")
	}

	// What a caller does to the returned values stays out of the cache.
	_, ga := lookup(b)
	ga.Metadata["team"] = "changed"
	if _, again := lookup(b); again.Metadata["team"] != "t" {
		t.Fatalf("cached agent metadata changed by a caller: %v", again.Metadata)
	}

	if _, err := a.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if a.KeyCached(hash) {
		t.Fatal("revoking a key left it cached in the same process")
	}
	if gk, _ := lookup(a); gk.RevokedAt == nil {
		t.Fatal("revoked key not revoked at once in the process that revoked it")
	}
	eventually(t, "key revocation", func() bool { gk, _ := lookup(b); return gk.RevokedAt != nil })

	if _, err := a.SetAgentStatus(ctx, agent.ID, policy.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, ga := lookup(a); ga.Status != policy.StatusSuspended {
		t.Fatal("suspended agent not suspended at once in the process that suspended it")
	}
	eventually(t, "agent suspension", func() bool { _, ga := lookup(b); return ga.Status == policy.StatusSuspended })
}
