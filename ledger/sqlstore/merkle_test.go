package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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

// The Merkle conformance tests run for both backends from ledger/sqlite and
// ledger/postgres (storetest.Run); these are the SQLite benchmarks.

func BenchmarkMerkleIntegrateSQLite(b *testing.B) {
	storetest.BenchmarkIntegrate(b, func(b *testing.B) ledger.Store { return openMerkleSQLite(b) })
}

func BenchmarkMerkleVerifyFull1MSQLite(b *testing.B) {
	storetest.BenchmarkVerifyFull(b, func(b *testing.B) ledger.Store { return openMerkleSQLite(b) }, 1_000_000)
}

func BenchmarkMerkleIntegrationLagSQLite(b *testing.B) {
	storetest.BenchmarkIntegrationLag(b, func(b *testing.B) ledger.Store { return openMerkleSQLite(b) }, 2000, 5*time.Second)
}
