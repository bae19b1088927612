// Package storetest is the conformance suite every ledger.Store backend
// must pass. Backends call Run from their own tests.
package storetest

import (
	"testing"

	"github.com/caracal-dev/caracal/ledger"
)

// Factory returns a fresh, empty, migrated store for one test. The store is
// closed by the test's cleanup.
type Factory func(t *testing.T) ledger.Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	t.Run("Agents", func(t *testing.T) { testAgents(t, newStore) })
	t.Run("Policies", func(t *testing.T) { testPolicies(t, newStore) })
	t.Run("Pricebook", func(t *testing.T) { testPricebook(t, newStore) })
	t.Run("Enforce", func(t *testing.T) { testEnforce(t, newStore) })
	t.Run("Events", func(t *testing.T) { testEvents(t, newStore) })
	t.Run("Merkle", func(t *testing.T) { testMerkle(t, newStore) })
}
