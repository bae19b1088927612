package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// wantErr fails t unless err matches kind with errors.Is and reads exactly msg.
func wantErr(t *testing.T, err, kind error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v %q", kind, msg)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q does not match %v", err, kind)
	}
	if err.Error() != msg {
		t.Errorf("error\n got %q\nwant %q", err.Error(), msg)
	}
}

// crudAgent creates an agent or fails the test.
func crudAgent(t *testing.T, s ledger.Store, name, parent string) policy.Agent {
	t.Helper()
	a, err := s.CreateAgent(context.Background(), ledger.NewAgent{Name: name, Owner: "owner-" + name, ParentID: parent})
	if err != nil {
		t.Fatalf("create agent %s: %v", name, err)
	}
	return a
}

// keyHash is the SHA-256 of a made-up secret.
func keyHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func names(as []policy.Agent) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Name
	}
	return out
}

func testAgents(t *testing.T, newStore Factory) {
	ctx := context.Background()

	t.Run("CreateAndGet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		before := time.Now().UTC()
		a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "research-bot", Owner: "alice@example.com",
			Metadata: map[string]string{"team": "research", "env": "prod"}})
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now().UTC()
		if _, err := uuid.Parse(a.ID); err != nil {
			t.Errorf("ID %q is not a UUID: %v", a.ID, err)
		}
		if a.Name != "research-bot" || a.Owner != "alice@example.com" || a.Status != policy.StatusActive || a.ParentID != "" {
			t.Errorf("created %+v", a)
		}
		if a.CreatedAt.Location() != time.UTC || a.CreatedAt.Before(before.Truncate(time.Microsecond)) || a.CreatedAt.After(after) {
			t.Errorf("CreatedAt %v not in [%v, %v] UTC", a.CreatedAt, before, after)
		}
		for _, ref := range []string{a.ID, a.Name} {
			got, err := s.GetAgent(ctx, ref)
			if err != nil {
				t.Fatalf("GetAgent(%q): %v", ref, err)
			}
			if !reflect.DeepEqual(got, a) {
				t.Errorf("GetAgent(%q)\n got %+v\nwant %+v", ref, got, a)
			}
		}
		plain := crudAgent(t, s, "plain", "")
		got, err := s.GetAgent(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		if got.Metadata != nil || !reflect.DeepEqual(got, plain) {
			t.Errorf("agent without metadata reads back as %+v, want %+v", got, plain)
		}
	})

	t.Run("DuplicateName", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		crudAgent(t, s, "dup", "")
		_, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "dup", Owner: "someone else"})
		wantErr(t, err, ledger.ErrConflict, `agent "dup" already exists`)
		all, err := s.ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 {
			t.Errorf("%d agents after a refused duplicate, want 1", len(all))
		}
	})

	t.Run("ConcurrentSameName", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.CreateAgent(ctx, ledger.NewAgent{Name: "racer", Owner: fmt.Sprint(i)})
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ledger.ErrConflict):
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d concurrent creations of one name succeeded, want 1", ok, n)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		tests := []struct {
			in   ledger.NewAgent
			kind error
			msg  string
		}{
			{ledger.NewAgent{Name: ""}, ledger.ErrInvalid, `agent name is required`},
			// One rule, policy.ValidateAgentName, for the CLI and the store.
			{ledger.NewAgent{Name: " padded"}, ledger.ErrInvalid, `invalid agent name " padded": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
			{ledger.NewAgent{Name: "tab\there"}, ledger.ErrInvalid, `invalid agent name "tab\there": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
			{ledger.NewAgent{Name: "my bot"}, ledger.ErrInvalid, `invalid agent name "my bot": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
			{ledger.NewAgent{Name: "ünïcode"}, ledger.ErrInvalid, `invalid agent name "ünïcode": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
			{ledger.NewAgent{Name: strings.Repeat("x", 65)}, ledger.ErrInvalid, `invalid agent name "` + strings.Repeat("x", 65) + `": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
			{ledger.NewAgent{Name: "0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10"}, ledger.ErrInvalid, `agent name "0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10" must not be a UUID: UUIDs are agent IDs`},
			{ledger.NewAgent{Name: "m", Metadata: map[string]string{"": "v"}}, ledger.ErrInvalid, `metadata key "" must be non-empty and not padded with spaces`},
			{ledger.NewAgent{Name: "orphan", ParentID: "nope"}, ledger.ErrInvalid, `parent agent "nope" not found`},
		}
		for _, tc := range tests {
			_, err := s.CreateAgent(ctx, tc.in)
			wantErr(t, err, tc.kind, tc.msg)
		}
		all, err := s.ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 0 {
			t.Errorf("refused agents were written: %v", names(all))
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.GetAgent(ctx, "ghost")
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
		_, err = s.Chain(ctx, "ghost")
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
		_, err = s.SetAgentStatus(ctx, "ghost", policy.StatusSuspended)
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
		_, err = s.SetAgentParent(ctx, "ghost", "")
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		all, err := s.ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if all == nil || len(all) != 0 {
			t.Errorf("empty store lists %#v, want an empty, non-nil slice", all)
		}
		for _, n := range []string{"charlie", "Bravo", "alpha", "delta"} {
			crudAgent(t, s, n, "")
		}
		all, err = s.ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := names(all), []string{"Bravo", "alpha", "charlie", "delta"}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListAgents = %v, want %v (byte order)", got, want)
		}
	})

	t.Run("Status", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "sleepy", "")
		got, err := s.SetAgentStatus(ctx, a.ID, policy.StatusSuspended)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != policy.StatusSuspended {
			t.Errorf("status %q after suspend", got.Status)
		}
		if g, _ := s.GetAgent(ctx, a.ID); g.Status != policy.StatusSuspended {
			t.Errorf("stored status %q after suspend", g.Status)
		}
		if got, err = s.SetAgentStatus(ctx, "sleepy", policy.StatusActive); err != nil || got.Status != policy.StatusActive {
			t.Errorf("resume by name: %+v, %v", got, err)
		}
		_, err = s.SetAgentStatus(ctx, a.ID, "paused")
		wantErr(t, err, ledger.ErrInvalid, `agent status "paused" must be active or suspended`)
	})

	t.Run("ParentsAndChain", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		root := crudAgent(t, s, "root", "")
		mid := crudAgent(t, s, "mid", root.ID)
		leaf := crudAgent(t, s, "leaf", "mid") // a parent may be named
		if mid.ParentID != root.ID || leaf.ParentID != mid.ID {
			t.Fatalf("parents: mid→%q leaf→%q, want %q and %q", mid.ParentID, leaf.ParentID, root.ID, mid.ID)
		}
		for _, ref := range []string{leaf.ID, "leaf"} {
			chain, err := s.Chain(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(chain); !reflect.DeepEqual(got, []string{"leaf", "mid", "root"}) {
				t.Errorf("Chain(%q) = %v, want [leaf mid root]", ref, got)
			}
			if !reflect.DeepEqual(chain[0], leaf) {
				t.Errorf("chain[0] = %+v, want %+v", chain[0], leaf)
			}
		}
		chain, err := s.Chain(ctx, root.ID)
		if err != nil || len(chain) != 1 || chain[0].ID != root.ID {
			t.Errorf("Chain(root) = %v, %v; want just root", names(chain), err)
		}

		cycles := []struct{ agent, parent, msg string }{
			{"root", "root", `would create a cycle: root → root`},
			{"root", "mid", `would create a cycle: root → mid → root`},
			{"root", "leaf", `would create a cycle: root → leaf → mid → root`},
			{"mid", "leaf", `would create a cycle: mid → leaf → mid`},
		}
		for _, c := range cycles {
			_, err := s.SetAgentParent(ctx, c.agent, c.parent)
			wantErr(t, err, ledger.ErrConflict, c.msg)
		}
		_, err = s.SetAgentParent(ctx, leaf.ID, "nope")
		wantErr(t, err, ledger.ErrInvalid, `parent agent "nope" not found`)
		if chain, err := s.Chain(ctx, leaf.ID); err != nil || len(chain) != 3 {
			t.Fatalf("refused re-parenting changed the chain: %v, %v", names(chain), err)
		}

		// Move leaf under root, then make it a root of its own.
		got, err := s.SetAgentParent(ctx, leaf.ID, root.ID)
		if err != nil || got.ParentID != root.ID {
			t.Fatalf("SetAgentParent(leaf, root) = %+v, %v", got, err)
		}
		if chain, _ := s.Chain(ctx, leaf.ID); !reflect.DeepEqual(names(chain), []string{"leaf", "root"}) {
			t.Errorf("after the move Chain(leaf) = %v", names(chain))
		}
		got, err = s.SetAgentParent(ctx, "leaf", "")
		if err != nil || got.ParentID != "" {
			t.Fatalf("SetAgentParent(leaf, \"\") = %+v, %v", got, err)
		}
		if g, _ := s.GetAgent(ctx, leaf.ID); g.ParentID != "" {
			t.Errorf("stored parent %q after detaching", g.ParentID)
		}
		// Now that leaf is a root, root may go under it.
		if _, err := s.SetAgentParent(ctx, root.ID, leaf.ID); err != nil {
			t.Fatal(err)
		}
		if chain, _ := s.Chain(ctx, mid.ID); !reflect.DeepEqual(names(chain), []string{"mid", "root", "leaf"}) {
			t.Errorf("Chain(mid) = %v, want [mid root leaf]", names(chain))
		}
	})

	t.Run("ConcurrentReparentingNeverCycles", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "a", "")
		b := crudAgent(t, s, "b", "")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, pair := range [][2]string{{a.ID, b.ID}, {b.ID, a.ID}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.SetAgentParent(ctx, pair[0], pair[1])
			}()
		}
		wg.Wait()
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
				if !errors.Is(err, ledger.ErrConflict) {
					t.Errorf("unexpected error: %v", err)
				}
			}
		}
		if failed != 1 {
			t.Errorf("%d of 2 crossing re-parentings failed, want exactly 1: %v", failed, errs)
		}
		for _, id := range []string{a.ID, b.ID} {
			if _, err := s.Chain(ctx, id); err != nil {
				t.Errorf("Chain(%s): %v", id, err)
			}
		}
	})

	t.Run("Keys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "keyed", "")
		other := crudAgent(t, s, "other", "")
		exp := time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)
		k1, err := s.CreateKey(ctx, a.ID, keyHash("one"), "crk_one", nil)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := s.CreateKey(ctx, "keyed", keyHash("two"), "crk_two", &exp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateKey(ctx, other.ID, keyHash("three"), "crk_thr", nil); err != nil {
			t.Fatal(err)
		}
		if k1.AgentID != a.ID || k1.Prefix != "crk_one" || k1.ExpiresAt != nil || k1.RevokedAt != nil {
			t.Errorf("k1 = %+v", k1)
		}
		if _, err := uuid.Parse(k1.ID); err != nil {
			t.Errorf("key ID %q is not a UUID", k1.ID)
		}
		if k2.AgentID != a.ID || k2.ExpiresAt == nil || !k2.ExpiresAt.Equal(exp) {
			t.Errorf("k2 = %+v, want expiry %v", k2, exp)
		}

		keys, err := s.ListKeys(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(keys, []policy.APIKey{k1, k2}) {
			t.Errorf("ListKeys\n got %+v\nwant %+v", keys, []policy.APIKey{k1, k2})
		}

		k, ag, err := s.KeyByHash(ctx, keyHash("two"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(k, k2) || !reflect.DeepEqual(ag, a) {
			t.Errorf("KeyByHash = %+v, %+v; want %+v, %+v", k, ag, k2, a)
		}
		_, _, err = s.KeyByHash(ctx, keyHash("unknown"))
		wantErr(t, err, ledger.ErrNotFound, `no key with this hash`)

		r, err := s.RevokeKey(ctx, k1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.RevokedAt == nil || r.RevokedAt.Before(k1.CreatedAt) {
			t.Errorf("revoked key %+v", r)
		}
		_, err = s.RevokeKey(ctx, k1.ID)
		wantErr(t, err, ledger.ErrConflict, fmt.Sprintf("key %q already revoked at %s", k1.ID, r.RevokedAt.Format(time.RFC3339)))
		// A revoked key is still found: judging it is the caller's job.
		k, _, err = s.KeyByHash(ctx, keyHash("one"))
		if err != nil || k.RevokedAt == nil || !k.RevokedAt.Equal(*r.RevokedAt) {
			t.Errorf("KeyByHash(revoked) = %+v, %v", k, err)
		}
		keys, _ = s.ListKeys(ctx, "keyed")
		if len(keys) != 2 || keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
			t.Errorf("after revoking k1: %+v", keys)
		}
	})

	t.Run("KeyErrors", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := crudAgent(t, s, "k", "")
		_, err := s.CreateKey(ctx, "ghost", keyHash("x"), "crk_x", nil)
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
		_, err = s.CreateKey(ctx, a.ID, []byte("short"), "crk_x", nil)
		wantErr(t, err, ledger.ErrInvalid, `key hash must be 32 bytes (SHA-256), got 5`)
		if _, err := s.CreateKey(ctx, a.ID, keyHash("same"), "crk_1", nil); err != nil {
			t.Fatal(err)
		}
		_, err = s.CreateKey(ctx, a.ID, keyHash("same"), "crk_2", nil)
		wantErr(t, err, ledger.ErrConflict, `a key with this hash already exists`)
		_, err = s.RevokeKey(ctx, "no-such-key")
		wantErr(t, err, ledger.ErrNotFound, `key "no-such-key" not found`)
		_, err = s.ListKeys(ctx, "ghost")
		wantErr(t, err, ledger.ErrNotFound, `agent "ghost" not found`)
		keys, err := s.ListKeys(ctx, a.ID)
		if err != nil || len(keys) != 1 {
			t.Errorf("ListKeys = %+v, %v; want the one key", keys, err)
		}
		empty := crudAgent(t, s, "keyless", "")
		keys, err = s.ListKeys(ctx, empty.ID)
		if err != nil || keys == nil || len(keys) != 0 {
			t.Errorf("ListKeys(keyless) = %#v, %v; want an empty, non-nil slice", keys, err)
		}
	})
}
