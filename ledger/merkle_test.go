package ledger_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/merkle"
	"github.com/caracal-dev/caracal/policy"
)

func TestSigningKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := storetest.OpenSQLite(t)

	// The library names no command; the CLI adds "run `caracal keys generate`".
	if _, err := ledger.LoadSigner(ctx, s, home); !errors.Is(err, ledger.ErrNoSigningKey) || err.Error() != "no checkpoint signing key" {
		t.Fatalf("LoadSigner with no key = %v", err)
	}
	kf, created, err := ledger.EnsureSigningKey(ctx, s, home, "example.com/log")
	if err != nil || !created || kf.Signer.Origin() != "example.com/log" {
		t.Fatalf("EnsureSigningKey = %+v, %v, %v", kf, created, err)
	}
	if st, err := os.Stat(kf.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode: %v, %v", st.Mode(), err)
	}
	again, created, err := ledger.EnsureSigningKey(ctx, s, home, "")
	if err != nil || created || again.Signer.KeyID() != kf.Signer.KeyID() {
		t.Fatalf("second EnsureSigningKey = %v, %v, %v", again.Signer.KeyID(), created, err)
	}
	if _, err := ledger.GenerateSigningKey(ctx, s, home, "", ""); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("GenerateSigningKey with an active key = %v, want ErrConflict", err)
	}

	// A new database initialised from the same home adopts its key.
	s2 := storetest.OpenSQLite(t)
	adopted, created, err := ledger.EnsureSigningKey(ctx, s2, home, "")
	if err != nil || created || adopted.Signer.KeyID() != kf.Signer.KeyID() {
		t.Fatalf("EnsureSigningKey on a new database = %+v, %v, %v", adopted, created, err)
	}

	newKey, retired, err := ledger.RotateSigningKey(ctx, s, home, "")
	if err != nil || len(retired) != 1 || retired[0] != kf.Signer.KeyID() || newKey.Signer.Origin() != "example.com/log" {
		t.Fatalf("RotateSigningKey = %+v, %v, %v", newKey, retired, err)
	}
	sign, err := ledger.LoadSigner(ctx, s, home)
	if err != nil || sign.KeyID() != newKey.Signer.KeyID() {
		t.Fatalf("LoadSigner after rotation = %v, %v", sign, err)
	}
	ring, err := ledger.KeyRing(ctx, s, false)
	if err != nil || len(ring) != 2 {
		t.Fatalf("KeyRing = %v, %v", ring, err)
	}

	if err := os.Chmod(newKey.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.LoadSigner(ctx, s, home); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadSigner with a readable key file = %v", err)
	}
	if err := os.Remove(newKey.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.LoadSigner(ctx, s, home); !errors.Is(err, ledger.ErrNoSigningKey) || !strings.Contains(err.Error(), newKey.Signer.KeyID()) {
		t.Fatalf("LoadSigner without the active key's file = %v", err)
	}
}

func TestLeafOf(t *testing.T) {
	e := ledger.Event{ID: "e1", Time: time.Unix(0, 42), AgentID: "a", Amount: money.MustParse("1.5"), Currency: "USD",
		Outcome: policy.OutcomeCharged, Tokens: policy.Tokens{Input: 1, Output: 2, CachedRead: 3, CacheWrite: 4, Reasoning: 5}, Unpriced: true}
	l := ledger.LeafOf(e)
	want := merkle.Leaf{ID: "e1", TimeNS: 42, AgentID: "a", Chain: []string{}, AmountNanos: 1_500_000_000, Currency: "USD", Outcome: "charged",
		InputTokens: 1, OutputTokens: 2, CachedTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, Unpriced: true}
	if string(l.Encode()) != string(want.Encode()) {
		t.Fatalf("LeafOf = %+v, want %+v", l, want)
	}
}

func TestIntegratorRetriesAfterFailure(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	home := t.TempDir()
	// No signing key is registered, so every run fails; the loop logs and
	// keeps going, and Flush reports the error.
	skey, _, _ := merkle.GenerateKey("example.com/log")
	sign, _ := merkle.NewSigner(skey)
	in := ledger.StartIntegrator(ctx, s, sign, ledger.IntegratorConfig{Interval: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if _, err := in.Flush(ctx); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("Flush with an unregistered key = %v", err)
	}
	if err := in.Stop(ctx); err == nil {
		t.Fatal("Stop flushed without a usable key")
	}
	kf, _, err := ledger.EnsureSigningKey(ctx, s, home, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	in = ledger.StartIntegrator(ctx, s, kf.Signer, ledger.IntegratorConfig{})
	cp, err := in.Flush(ctx)
	if err != nil || cp.Size != 0 || cp.KeyID != kf.Signer.KeyID() {
		t.Fatalf("Flush = %+v, %v; want the empty-tree checkpoint", cp, err)
	}
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
