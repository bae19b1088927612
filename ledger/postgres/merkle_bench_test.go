package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func openMerkleBench(b *testing.B) ledger.Store {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.URL(b), postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.MigrateUp(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkMerkleIntegrate reports leaves appended per second, storage included.
func BenchmarkMerkleIntegrate(b *testing.B) { storetest.BenchmarkIntegrate(b, openMerkleBench) }

// BenchmarkMerkleVerifyFull reports `merkle verify --full` events per second.
func BenchmarkMerkleVerifyFull(b *testing.B) {
	storetest.BenchmarkVerifyFull(b, openMerkleBench, 200_000)
}

// BenchmarkMerkleIntegrationLag reports commit-to-checkpoint lag at 2,000 events/s.
func BenchmarkMerkleIntegrationLag(b *testing.B) {
	storetest.BenchmarkIntegrationLag(b, openMerkleBench, 2000, 5*time.Second)
}
