package zzmerklepg

import (
	"context"
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestMerklePG(t *testing.T) {
	storetest.RunMerkle(t, func(t *testing.T) ledger.Store {
		ctx := context.Background()
		s, err := postgres.Open(ctx, pgtest.URL(t), postgres.Options{SkipSchemaCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.MigrateUp(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	})
}
