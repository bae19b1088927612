// Package storetest is the conformance suite every ledger.Store backend
// must pass. Backends call Run from their own tests.
package storetest

import (
	"context"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// Factory returns a fresh, empty, migrated store for one test. The store is
// closed by the test's cleanup.
type Factory func(t *testing.T) ledger.Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	t.Run("Agents", func(t *testing.T) { testAgents(t, newStore) })
	t.Run("Policies", func(t *testing.T) { testPolicies(t, newStore) })
	t.Run("Delegations", func(t *testing.T) { testDelegations(t, newStore) })
	t.Run("Pricebook", func(t *testing.T) { testPricebook(t, newStore) })
	t.Run("Admin", func(t *testing.T) { testAdmin(t, newStore) })
	t.Run("AdminTokens", func(t *testing.T) { testAdminTokens(t, newStore) })
	t.Run("Enforce", func(t *testing.T) { testEnforce(t, newStore) })
	t.Run("Events", func(t *testing.T) { testEvents(t, newStore) })
	t.Run("Merkle", func(t *testing.T) { testMerkle(t, newStore) })
	t.Run("Alerts", func(t *testing.T) { testAlerts(t, newStore) })
}

func testAdmin(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	a := crudAgent(t, s, "counted", "")
	if _, err := s.CreateKey(ctx, a.ID, keyHash("k"), "crk_k", nil); err != nil {
		t.Fatal(err)
	}
	p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("1"), Window: policy.WindowDaily})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdatePolicy(ctx, p.ID, ledger.NewPolicy{Limit: money.MustParse("2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:x/y", PerCall: money.MustParse("0.1")}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != "sqlite" && st.Backend != "postgres" {
		t.Errorf("Backend = %q", st.Backend)
	}
	if st.Location == "" {
		t.Error("Location is empty")
	}
	if st.SchemaVersion < 1 || st.SchemaVersion != st.LatestVersion {
		t.Errorf("schema version %d of %d on a migrated store", st.SchemaVersion, st.LatestVersion)
	}
	for tbl, want := range map[string]int64{"agents": 1, "api_keys": 1, "policies": 1, "policy_versions": 2, "prices": 1, "events": 0, "leaves": 0} {
		if got, ok := st.Rows[tbl]; !ok || got != want {
			t.Errorf("Rows[%s] = %d (present %v), want %d", tbl, got, ok, want)
		}
	}
}

// Migrator is the schema management both backends' stores offer to
// `caracal db`.
type Migrator interface {
	MigrateUp(ctx context.Context) ([]int64, error)
	MigrateDown(ctx context.Context) (int64, error)
	MigrationStatus(ctx context.Context) ([]sqlstore.MigrationState, error)
	Versions(ctx context.Context) (current, latest int64, err error)
}

// Migrations lists the migrations in fsys (a dialect's folder of the
// migrations package) as MigrationStatus reports them before any is applied.
func Migrations(t testing.TB, fsys fs.FS) []sqlstore.MigrationState {
	t.Helper()
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	sort.Strings(files)
	out := make([]sqlstore.MigrationState, len(files))
	for i, f := range files {
		num, _, _ := strings.Cut(f, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			t.Fatalf("migration %s: %v", f, err)
		}
		out[i] = sqlstore.MigrationState{Version: v, Name: f}
	}
	return out
}

// MigrationRoundTrip takes a store opened on an empty database without the
// schema check all the way up, down to nothing and up again, checking the
// status at every step. fsys is the dialect's migration folder.
func MigrationRoundTrip(t *testing.T, s Migrator, fsys fs.FS) {
	t.Helper()
	ctx := context.Background()
	all := Migrations(t, fsys)
	latest := all[len(all)-1].Version
	var versions []int64
	for _, m := range all {
		versions = append(versions, m.Version)
	}
	// check expects the first applied migrations to be applied.
	check := func(step string, applied int) {
		t.Helper()
		wantCur := int64(0)
		if applied > 0 {
			wantCur = all[applied-1].Version
		}
		cur, lat, err := s.Versions(ctx)
		if err != nil {
			t.Fatalf("%s: Versions: %v", step, err)
		}
		if cur != wantCur || lat != latest {
			t.Errorf("%s: versions %d of %d, want %d of %d", step, cur, lat, wantCur, latest)
		}
		st, err := s.MigrationStatus(ctx)
		if err != nil {
			t.Fatalf("%s: MigrationStatus: %v", step, err)
		}
		want := append([]sqlstore.MigrationState(nil), all...)
		for i := range applied {
			want[i].Applied = true
		}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("%s: MigrationStatus = %+v, want %+v", step, st, want)
		}
	}
	check("fresh", 0)
	v, err := s.MigrateUp(ctx)
	if err != nil || !reflect.DeepEqual(v, versions) {
		t.Fatalf("MigrateUp = %v, %v; want %v", v, err, versions)
	}
	check("up", len(all))
	v, err = s.MigrateUp(ctx)
	if err != nil || len(v) != 0 {
		t.Fatalf("MigrateUp when current = %v, %v; want nothing applied", v, err)
	}
	for i := len(all) - 1; i >= 0; i-- {
		d, err := s.MigrateDown(ctx)
		if err != nil || d != all[i].Version {
			t.Fatalf("MigrateDown = %d, %v; want %d", d, err, all[i].Version)
		}
		check(fmt.Sprintf("down to %d", i), i)
	}
	if _, err := s.MigrateDown(ctx); err == nil {
		t.Error("MigrateDown with nothing applied succeeded")
	}
	v, err = s.MigrateUp(ctx)
	if err != nil || !reflect.DeepEqual(v, versions) {
		t.Fatalf("MigrateUp again = %v, %v; want %v", v, err, versions)
	}
	check("up again", len(all))
}

// OutdatedMessage is the error Open gives on a database at version cur when
// this binary needs latest.
func OutdatedMessage(cur, latest int64) string {
	return fmt.Sprintf("schema version %d, this binary needs %d: %v", cur, latest, ledger.ErrSchemaOutdated)
}
