package sqlstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

// TestQueriesUseTheirIndexes checks, on SQLite, that the queries that find
// open reservations use the partial index of open reservations, and the
// other reservation queries their indexes, rather than scanning a table
// that grows with every call.
func TestQueriesUseTheirIndexes(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	for _, c := range []struct{ query, want string }{
		{sqlstore.ExpiredListSQL, "SEARCH reservations USING INDEX reservations_open (expires_ns<?)"},
		{`SELECT COUNT(*) FROM reservations WHERE status = 'open'`, "SCAN reservations USING COVERING INDEX reservations_open"},
		{`UPDATE reservations SET holder = NULL WHERE holder = ? AND status <> 'open'`, "SEARCH reservations USING INDEX reservations_holder (holder=?)"},
		{`UPDATE reservations SET status = 'settled' WHERE request_id = ? AND status = 'open'`, "SEARCH reservations USING INDEX sqlite_autoindex_reservations_1 (request_id=?)"},
		// Held reservations are few; every reservation bucket is not.
		{sqlstore.OthersFinishedSQL, "SEARCH r USING INDEX reservations_holder (holder>?); SEARCH b USING INDEX sqlite_autoindex_reservation_buckets_1 (request_id=? AND policy_id=?)"},
		{sqlstore.HeldUsageSQL, "SEARCH r USING INDEX reservations_holder (holder>?); SEARCH b USING INDEX sqlite_autoindex_reservation_buckets_1 (request_id=? AND policy_id=?)"},
	} {
		args := []any{"x", 1, 1}[:strings.Count(c.query, "?")]
		rows, err := s.DB().QueryContext(ctx, `EXPLAIN QUERY PLAN `+c.query, args...)
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if got := strings.Join(plan, "; "); got != c.want {
			t.Errorf("plan of %s:\n got %s\nwant %s", c.query, got, c.want)
		}
	}
}
