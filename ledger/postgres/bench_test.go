package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// BenchmarkReserveSettle measures Reserve+Settle round trips on
// PostgreSQL through a pool of 8 connections: more only adds server
// processes competing for the same cores. chains=1 is the worst case, every
// caller spending under the same two policies; chains=32 gives each caller
// its own.
func BenchmarkReserveSettle(b *testing.B) {
	for _, c := range []struct{ callers, chains int }{{1, 1}, {32, 1}, {32, 32}} {
		b.Run(fmt.Sprintf("c=%d/chains=%d", c.callers, c.chains), func(b *testing.B) {
			ctx := context.Background()
			s, err := postgres.Open(ctx, pgtest.URL(b), postgres.Options{SkipSchemaCheck: true, MaxConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.MigrateUp(ctx); err != nil {
				b.Fatal(err)
			}
			storetest.BenchReserveSettle(b, s, c.callers, c.chains)
		})
	}
}
