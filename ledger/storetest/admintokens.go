package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
)

func testAdminTokens(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)

	if _, err := s.AdminTokenByHash(ctx, keyHash("nobody")); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("AdminTokenByHash(unknown) = %v, want ErrNotFound", err)
	}
	ops, err := s.CreateAdminToken(ctx, "ops", keyHash("cra_ops"), "cra_ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if ops.ID == "" || ops.Name != "ops" || ops.Prefix != "cra_ops" || ops.ReadOnly || ops.RevokedAt != nil || ops.CreatedAt.IsZero() {
		t.Fatalf("created %+v", ops)
	}
	ro, err := s.CreateAdminToken(ctx, "auditor", keyHash("cra_ro"), "cra_ro", true)
	if err != nil {
		t.Fatal(err)
	}
	if !ro.ReadOnly {
		t.Fatalf("read-only token created as %+v", ro)
	}
	if _, err := s.CreateAdminToken(ctx, "ops", keyHash("cra_other"), "cra_oth", false); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("duplicate name: %v, want ErrConflict", err)
	}
	if _, err := s.CreateAdminToken(ctx, "dup-hash", keyHash("cra_ops"), "cra_ops", false); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("duplicate hash: %v, want ErrConflict", err)
	}
	if _, err := s.CreateAdminToken(ctx, "short", []byte("x"), "cra_x", false); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("short hash: %v, want ErrInvalid", err)
	}

	got, err := s.AdminTokenByHash(ctx, keyHash("cra_ro"))
	if err != nil || got.ID != ro.ID || !got.ReadOnly || got.Name != "auditor" {
		t.Fatalf("AdminTokenByHash = %+v, %v; want %+v", got, err, ro)
	}
	list, err := s.ListAdminTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != ops.ID || list[1].ID != ro.ID {
		t.Fatalf("ListAdminTokens = %+v, %v", list, err)
	}

	// By name, then by ID: both refer to a token.
	rv, err := s.RevokeAdminToken(ctx, "ops")
	if err != nil || rv.ID != ops.ID || rv.RevokedAt == nil {
		t.Fatalf("RevokeAdminToken(name) = %+v, %v", rv, err)
	}
	if _, err := s.RevokeAdminToken(ctx, ops.ID); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("second revoke: %v, want ErrConflict", err)
	}
	if _, err := s.RevokeAdminToken(ctx, "missing"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("revoke unknown: %v, want ErrNotFound", err)
	}
	got, err = s.AdminTokenByHash(ctx, keyHash("cra_ops"))
	if err != nil || got.RevokedAt == nil {
		t.Fatalf("revoked token read back as %+v, %v", got, err)
	}
}
