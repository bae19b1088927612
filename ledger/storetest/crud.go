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

	"github.com/caracal-dev/caracal/internal/money"
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

func testPricebook(t *testing.T, newStore Factory) {
	ctx := context.Background()
	amt := money.MustParse
	yes, no := true, false

	full := policy.PriceRule{
		Resource:              "llm:openai/gpt-4o*",
		Currency:              "EUR",
		PerCall:               amt("0.001"),
		InputPerMillion:       amt("2.50"),
		OutputPerMillion:      amt("10.00"),
		CachedInputPerMillion: amt("1.25"),
		CacheWritePerMillion:  amt("3.125"),
		ReasoningPerMillion:   amt("0.000000001"),
		PerUnit:               &policy.PerUnit{Path: "args.count", Price: amt("0.002")},
		ChargeErrors:          &no,
		ChargeRounds:          true,
	}
	same := func(a, b policy.PriceRule) bool {
		a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
		return reflect.DeepEqual(a, b)
	}

	t.Run("SetAndGet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		got, err := s.SetPrice(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		if !same(got, full) || got.UpdatedAt.IsZero() {
			t.Errorf("SetPrice\n got %+v\nwant %+v", got, full)
		}
		read, err := s.GetPrice(ctx, full.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(read, got) {
			t.Errorf("GetPrice\n got %+v\nwant %+v", read, got)
		}
		if *read.PerUnit != *full.PerUnit || *read.ChargeErrors {
			t.Errorf("PerUnit %+v ChargeErrors %v", *read.PerUnit, *read.ChargeErrors)
		}
	})

	t.Run("DefaultsAndTriState", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, ce := range []*bool{nil, &yes, &no} {
			res := fmt.Sprintf("mcp:s/%v", ce != nil && *ce)
			if ce == nil {
				res = "mcp:s/nil"
			}
			if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: res, PerCall: amt("0.01"), ChargeErrors: ce}); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetPrice(ctx, res)
			if err != nil {
				t.Fatal(err)
			}
			if got.Currency != "USD" {
				t.Errorf("%s: currency %q, want the default USD", res, got.Currency)
			}
			if got.PerUnit != nil {
				t.Errorf("%s: PerUnit %+v, want nil", res, got.PerUnit)
			}
			switch {
			case ce == nil && got.ChargeErrors != nil,
				ce != nil && (got.ChargeErrors == nil || *got.ChargeErrors != *ce):
				t.Errorf("%s: ChargeErrors %v, want %v", res, got.ChargeErrors, ce)
			}
		}
	})

	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.SetPrice(ctx, full); err != nil {
			t.Fatal(err)
		}
		repl := policy.PriceRule{Resource: full.Resource, PerCall: amt("0.5")}
		if _, err := s.SetPrice(ctx, repl); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetPrice(ctx, full.Resource)
		if err != nil {
			t.Fatal(err)
		}
		repl.Currency = "USD"
		if !same(got, repl) {
			t.Errorf("after replacing\n got %+v\nwant %+v", got, repl)
		}
		all, _ := s.ListPrices(ctx)
		if len(all) != 1 {
			t.Errorf("%d rules after replacing one, want 1", len(all))
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		tests := []struct {
			in  policy.PriceRule
			msg string
		}{
			{policy.PriceRule{Resource: "mcp:x", PerCall: amt("-1")}, `price rule "mcp:x": per_call: negative price -1.00`},
			{policy.PriceRule{Resource: "mcp:x", OutputPerMillion: amt("-0.5")}, `price rule "mcp:x": output_per_million: negative price -0.50`},
			{policy.PriceRule{Resource: ""}, `price rule "": resource: empty`},
			{policy.PriceRule{Resource: "mcp:x", Currency: "US"}, `price rule "mcp:x": currency: invalid currency "US": want a three-letter code such as USD`},
			{policy.PriceRule{Resource: "mcp:x", PerUnit: &policy.PerUnit{}}, `price rule "mcp:x": per_unit: path: empty (want a gjson path into the call arguments, e.g. count)`},
		}
		for _, tc := range tests {
			_, err := s.SetPrice(ctx, tc.in)
			wantErr(t, err, ledger.ErrInvalid, tc.msg)
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 0 {
			t.Errorf("refused rules were written: %+v", all)
		}
	})

	t.Run("GetAndDeleteMissing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.GetPrice(ctx, "mcp:none")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:none"`)
		err = s.DeletePrice(ctx, "mcp:none")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:none"`)
		if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:a", PerCall: amt("1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePrice(ctx, "mcp:a"); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetPrice(ctx, "mcp:a")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:a"`)
		// Patterns are stored as given: GetPrice does not match globs.
		if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", PerCall: amt("1")}); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetPrice(ctx, "mcp:fs/read")
		wantErr(t, err, ledger.ErrNotFound, `no price rule for "mcp:fs/read"`)
	})

	t.Run("ListOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		empty, err := s.ListPrices(ctx)
		if err != nil || empty == nil || len(empty) != 0 {
			t.Errorf("ListPrices on an empty store = %#v, %v; want an empty, non-nil slice", empty, err)
		}
		for _, r := range []string{"mcp:search/*", "llm:openai/gpt-4o", "mcp:Search/x", "http:api/v1", "mcp:fs/read_file"} {
			if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: r, PerCall: amt("0.01")}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range all {
			got = append(got, r.Resource)
		}
		want := []string{"http:api/v1", "llm:openai/gpt-4o", "mcp:Search/x", "mcp:fs/read_file", "mcp:search/*"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ListPrices = %v, want %v (byte order)", got, want)
		}
	})

	t.Run("ImportAllOrNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		old := policy.PriceRule{Resource: "mcp:fs/read_file", PerCall: amt("0.001")}
		if _, err := s.SetPrice(ctx, old); err != nil {
			t.Fatal(err)
		}
		before, _ := s.ListPrices(ctx)

		bad := []policy.PriceRule{
			{Resource: "mcp:fs/read_file", PerCall: amt("0.5")},
			{Resource: "mcp:search/*", PerCall: amt("0.01")},
			{Resource: "mcp:broken", PerCall: amt("-2")},
		}
		err := s.ImportPrices(ctx, bad)
		wantErr(t, err, ledger.ErrInvalid, `entry 3: price rule "mcp:broken": per_call: negative price -2.00`)
		dup := []policy.PriceRule{
			{Resource: "mcp:a", PerCall: amt("1")},
			{Resource: "mcp:b", PerCall: amt("1")},
			{Resource: "mcp:a", PerCall: amt("2")},
		}
		err = s.ImportPrices(ctx, dup)
		wantErr(t, err, ledger.ErrInvalid, `entry 3: price rule "mcp:a": resource: duplicate of entry 1`)
		after, _ := s.ListPrices(ctx)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused import changed the pricebook:\nbefore %+v\nafter  %+v", before, after)
		}

		good := []policy.PriceRule{
			{Resource: "mcp:fs/read_file", PerCall: amt("0.002")},
			{Resource: "mcp:search/*", PerCall: amt("0.01"), PerUnit: &policy.PerUnit{Path: "count", Price: amt("0.002")}},
			full,
		}
		if err := s.ImportPrices(ctx, good); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListPrices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("%d rules after import, want 3", len(all))
		}
		for _, want := range good {
			got, err := s.GetPrice(ctx, want.Resource)
			if err != nil {
				t.Fatal(err)
			}
			if want.Currency == "" {
				want.Currency = "USD"
			}
			if !same(got, want) {
				t.Errorf("imported\n got %+v\nwant %+v", got, want)
			}
		}
		if err := s.ImportPrices(ctx, nil); err != nil {
			t.Errorf("empty import: %v", err)
		}
	})

	t.Run("ExactAmounts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, v := range []string{"0.000000001", "9223372036.854775807", "0.075", "123456.789012345"} {
			r := policy.PriceRule{Resource: "llm:x/" + v, InputPerMillion: amt(v)}
			if _, err := s.SetPrice(ctx, r); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetPrice(ctx, r.Resource)
			if err != nil {
				t.Fatal(err)
			}
			if got.InputPerMillion != amt(v) || got.InputPerMillion.String() != amt(v).String() {
				t.Errorf("price %s reads back as %s", v, got.InputPerMillion)
			}
		}
	})
}
