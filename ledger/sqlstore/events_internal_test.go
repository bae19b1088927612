package sqlstore

import (
	"testing"

	"github.com/google/uuid"
)

// Event IDs must be UUIDs that sort in the order they were made, so that
// the unique indexes on them grow at their right edge.
func TestNewEventIDsAreOrderedUUIDs(t *testing.T) {
	prev := newEventID()
	for range 1000 {
		id := newEventID()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("event ID %q: %v", id, err)
		}
		if u.Version() != 7 {
			t.Fatalf("event ID %q is a version %d UUID, want 7", id, u.Version())
		}
		if id <= prev {
			t.Fatalf("event ID %q does not sort after %q", id, prev)
		}
		prev = id
	}
}
