package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// BenchmarkReserveSettle measures Reserve+Settle round trips on a SQLite
// file with durable (synchronous=FULL) commits. A lone caller pays two
// commits, so two WAL fsyncs, per round trip; concurrent callers share
// commits (see writeTx in ledger/sqlstore). chains=1 puts every caller under
// the same two policies; chains=32 gives each its own.
func BenchmarkReserveSettle(b *testing.B) {
	for _, c := range []struct{ callers, chains int }{{1, 1}, {32, 1}, {32, 32}} {
		b.Run(fmt.Sprintf("c=%d/chains=%d", c.callers, c.chains), func(b *testing.B) {
			ctx := context.Background()
			s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "caracal.db"), sqlite.Options{SkipSchemaCheck: true})
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
