package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

// OpenSQLite returns a fresh, migrated SQLite store in a temporary folder,
// closed when the test ends.
func OpenSQLite(t testing.TB) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "caracal.db"), sqlite.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
