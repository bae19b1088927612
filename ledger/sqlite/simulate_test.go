package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// TestSimulateLeases runs the lease simulation with several processes on
// one SQLite file: each opens the file as a separate process would, so
// they meet only in the database, serialised by its lock.
func TestSimulateLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caracal.db")
	ctx := context.Background()
	first := true
	open := func(t *testing.T) *sqlstore.Store {
		s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true, ManualLeases: true})
		if err != nil {
			t.Fatal(err)
		}
		if first {
			if _, err := s.MigrateUp(ctx); err != nil {
				t.Fatal(err)
			}
			first = false
		}
		return s
	}
	storetest.Simulate(t, open, storetest.SimConfigFromEnv(storetest.SimConfig{Seed: 1, Processes: 4, Steps: 400}))
}

// TestChangesReachOtherProcesses: two processes on one SQLite file.
func TestChangesReachOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caracal.db")
	ctx := context.Background()
	first := true
	storetest.ChangesReachOtherProcesses(t, func(t *testing.T) *sqlstore.Store {
		s, err := sqlite.Open(ctx, path, sqlite.Options{SkipSchemaCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if first {
			if _, err := s.MigrateUp(ctx); err != nil {
				t.Fatal(err)
			}
			first = false
		}
		return s
	})
}
