package sqlstore_test

import (
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// The Merkle conformance tests run for both backends from ledger/sqlite and
// ledger/postgres (storetest.Run); these are the SQLite benchmarks.

func BenchmarkMerkleIntegrateSQLite(b *testing.B) {
	storetest.BenchmarkIntegrate(b, func(b *testing.B) ledger.Store { return storetest.OpenSQLite(b) })
}

func BenchmarkMerkleVerifyFull1MSQLite(b *testing.B) {
	storetest.BenchmarkVerifyFull(b, func(b *testing.B) ledger.Store { return storetest.OpenSQLite(b) }, 1_000_000)
}

func BenchmarkMerkleIntegrationLagSQLite(b *testing.B) {
	storetest.BenchmarkIntegrationLag(b, func(b *testing.B) ledger.Store { return storetest.OpenSQLite(b) }, 2000, 5*time.Second)
}
