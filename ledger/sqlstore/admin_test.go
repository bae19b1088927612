package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caracal-dev/caracal/ledger/sqlite"
)

// TestStatusBeforeMigrating: `caracal db status` must work on a database
// that was never migrated, reporting version 0 and no tables.
func TestStatusBeforeMigrating(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "caracal.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != "sqlite" || st.Location != path || st.SchemaVersion != 0 || st.LatestVersion < 1 || len(st.Rows) != 0 {
		t.Fatalf("Status = %+v", st)
	}
	// One step short of the latest version, the tables that exist are counted.
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.SchemaVersion != st.LatestVersion-1 || st.Rows["agents"] != 0 {
		t.Fatalf("Status one version behind = %+v", st)
	}
	if _, ok := st.Rows["agents"]; !ok && st.SchemaVersion > 0 {
		t.Fatalf("Status one version behind counts no agents: %+v", st)
	}
}
