package cli

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// A serving process signs only with merkle.sign auto and the active key in
// its home; otherwise it starts without an integrator and says so once.
func TestStartIntegratorSignMode(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	keyHome := t.TempDir()
	if _, _, err := ledger.EnsureSigningKey(ctx, s, keyHome, "example.com/log"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, home, sign string
		signs            bool
		log              string
	}{
		{"auto with key", keyHome, SignAuto, true, "integrating events and signing checkpoints"},
		{"never with key", keyHome, SignNever, false, "merkle.sign is never"},
		{"auto without key", t.TempDir(), SignAuto, false, "no checkpoint signing key in this home"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			in, err := startIntegrator(ctx, &Config{Home: tc.home, Merkle: MerkleConfig{Sign: tc.sign}}, s, tc.home, log)
			if err != nil {
				t.Fatal(err)
			}
			if (in != nil) != tc.signs {
				t.Errorf("integrator started = %v, want %v", in != nil, tc.signs)
			}
			if err := stopIntegrator(ctx, in); err != nil {
				t.Errorf("stop: %v", err)
			}
			if n := strings.Count(buf.String(), tc.log); n != 1 {
				t.Errorf("log has %d × %q, want 1:\n%s", n, tc.log, buf.String())
			}
		})
	}
}

// The integrator a serving process starts signs with a key rotated while
// it runs (`caracal keys rotate` from another process on the same home).
func TestStartIntegratorFollowsRotation(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	d := storetest.OpenMerkleDB(t, s)
	home := t.TempDir()
	if _, _, err := ledger.EnsureSigningKey(ctx, s, home, "example.com/log"); err != nil {
		t.Fatal(err)
	}
	in, err := startIntegrator(ctx, &Config{Home: home, Merkle: MerkleConfig{Sign: SignAuto}}, s, home, slog.New(slog.DiscardHandler))
	if err != nil || in == nil {
		t.Fatalf("startIntegrator = %v, %v", in, err)
	}
	defer in.Stop(ctx)
	d.InsertEvents(t, 0, 2)
	if _, err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	newKey, _, err := ledger.RotateSigningKey(ctx, s, home, "")
	if err != nil {
		t.Fatal(err)
	}
	d.InsertEvents(t, 2, 2)
	cp, err := in.Flush(ctx)
	if err != nil || cp.Size != 4 || cp.KeyID != newKey.Signer.KeyID() {
		t.Fatalf("Flush after rotation = %+v, %v; want size 4 signed by %s", cp, err, newKey.Signer.KeyID())
	}
}
