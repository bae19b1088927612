package ledger_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// TestIntegratorPicksUpRotatedKey rotates the signing key while an
// integrator runs: with ReloadSigner its next integration signs with the new
// key; without it, integration keeps failing on the retired key.
func TestIntegratorPicksUpRotatedKey(t *testing.T) {
	for _, reload := range []bool{true, false} {
		t.Run(map[bool]string{true: "reload", false: "no-reload"}[reload], func(t *testing.T) {
			ctx := context.Background()
			s := storetest.OpenSQLite(t)
			d := storetest.OpenMerkleDB(t, s)
			home := t.TempDir()
			kf, _, err := ledger.EnsureSigningKey(ctx, s, home, "example.com/log")
			if err != nil {
				t.Fatal(err)
			}
			cfg := ledger.IntegratorConfig{Logger: slog.New(slog.DiscardHandler)}
			if reload {
				cfg.ReloadSigner = ledger.SignerLoader(s, home)
			}
			in := ledger.NewIntegrator(s, kf.Signer, cfg)
			d.InsertEvents(t, 0, 3)
			if cp, err := in.Flush(ctx); err != nil || cp.Size != 3 || cp.KeyID != kf.Signer.KeyID() {
				t.Fatalf("Flush before rotation = %+v, %v", cp, err)
			}
			newKey, _, err := ledger.RotateSigningKey(ctx, s, home, "")
			if err != nil {
				t.Fatal(err)
			}
			d.InsertEvents(t, 3, 2)
			cp, err := in.Flush(ctx)
			if !reload {
				if err == nil || !strings.Contains(err.Error(), "retired") {
					t.Fatalf("Flush after rotation without reload = %+v, %v; want the retired-key error", cp, err)
				}
				return
			}
			if err != nil || cp.Size != 5 || cp.KeyID != newKey.Signer.KeyID() {
				t.Fatalf("Flush after rotation = %+v, %v; want size 5 signed by %s", cp, err, newKey.Signer.KeyID())
			}
			ring, err := ledger.KeyRing(ctx, s, false)
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := ledger.VerifyFull(ctx, s, ring, nil); err != nil || rep.Size != 5 {
				t.Fatalf("VerifyFull = %+v, %v", rep, err)
			}
		})
	}
}
