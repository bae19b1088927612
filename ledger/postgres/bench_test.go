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
// PostgreSQL through the pgx pool, sized to the concurrency.
func BenchmarkReserveSettle(b *testing.B) {
	for _, c := range []struct{ callers, chains int }{{1, 1}, {32, 1}, {32, 32}} {
		b.Run(fmt.Sprintf("c=%d/chains=%d", c.callers, c.chains), func(b *testing.B) {
			ctx := context.Background()
			s, err := postgres.Open(ctx, pgtest.URL(b), postgres.Options{SkipSchemaCheck: true, MaxConns: int32(max(4, c.callers))})
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
