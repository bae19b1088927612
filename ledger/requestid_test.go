package ledger_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
)

// TestNewRequestIDIsTimeOrdered checks what the reservation indexes rely
// on: each new ID is a version 7 UUID that sorts after the one before,
// even within one millisecond.
func TestNewRequestIDIsTimeOrdered(t *testing.T) {
	prev := ""
	for i := range 10000 {
		id := ledger.NewRequestID()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("ID %d %q: %v", i, id, err)
		}
		if u.Version() != 7 {
			t.Fatalf("ID %d %q: version %d, want 7", i, id, u.Version())
		}
		if id <= prev {
			t.Fatalf("ID %d %q does not sort after %q", i, id, prev)
		}
		prev = id
	}
}
