package postgres_test

import (
	"context"
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// TestSimulateLeases runs the lease simulation with several processes,
// each with its own connection pool, on one PostgreSQL database.
func TestSimulateLeases(t *testing.T) {
	url := pgtest.URL(t)
	openMigrated(t, url)
	ctx := context.Background()
	open := func(t *testing.T) *sqlstore.Store {
		s, err := postgres.Open(ctx, url, postgres.Options{ManualLeases: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	storetest.Simulate(t, open, storetest.SimConfigFromEnv(storetest.SimConfig{Seed: 1, Processes: 4, Steps: 400}))
}

// TestChangesReachOtherProcesses: two processes on one PostgreSQL database.
func TestChangesReachOtherProcesses(t *testing.T) {
	url := pgtest.URL(t)
	openMigrated(t, url)
	ctx := context.Background()
	storetest.ChangesReachOtherProcesses(t, func(t *testing.T) *sqlstore.Store {
		s, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
