package api

import (
	"context"
	"errors"
	"testing"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func TestCheckAdminToken(t *testing.T) {
	st := storetest.OpenSQLite(t)
	s, err := New(Options{Store: st, Engine: interpose.New(interpose.Options{Store: st}), MaxDepth: 5})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: st}
	ops, viewer, gone := h.token("ops", false), h.token("viewer", true), h.token("gone", false)
	if _, err := st.RevokeAdminToken(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		tok      string
		name     string
		readOnly bool
		err      error
	}{
		{ops, "ops", false, nil},
		{viewer, "viewer", true, nil},
		{gone, "", false, ErrInvalidAdminToken},
		{ops[:len(ops)-1] + "x", "", false, ErrInvalidAdminToken},
		{"cra_short", "", false, ErrInvalidAdminToken},
		{"crk_agentkey", "", false, ErrInvalidAdminToken},
		{"", "", false, ErrInvalidAdminToken},
	} {
		got, err := s.CheckAdminToken(ctx, tt.tok)
		if !errors.Is(err, tt.err) {
			t.Errorf("%q: error %v, want %v", tt.tok, err, tt.err)
			continue
		}
		if err == nil && (got.Name != tt.name || got.ReadOnly != tt.readOnly) {
			t.Errorf("%q: token %s read-only %v, want %s %v", tt.tok, got.Name, got.ReadOnly, tt.name, tt.readOnly)
		}
	}
}
