package postgres_test

import (
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
)

// TestMain stops and removes the throwaway PostgreSQL cluster, if the tests
// started one, when they end.
func TestMain(m *testing.M) { pgtest.Main(m) }
