package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func openMerkleSQLite(t testing.TB) ledger.Store {
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

func TestMerkleSQLite(t *testing.T) {
	storetest.RunMerkle(t, func(t *testing.T) ledger.Store { return openMerkleSQLite(t) })
}
