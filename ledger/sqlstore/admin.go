package sqlstore

import (
	"context"
	"fmt"

	"github.com/caracal-dev/caracal/ledger"
)

// StatusTables are the tables whose row counts Status reports.
var StatusTables = []string{
	"agents", "api_keys", "policies", "policy_versions", "prices",
	"reservations", "events", "integration_queue", "leaves", "checkpoints", "signing_keys", "admin_tokens",
}

// Status implements ledger.Admin. On a database older than this binary
// (or not yet initialised) it reports the versions and counts only the
// tables that exist, so `caracal db status` still helps.
func (s *Store) Status(ctx context.Context) (ledger.Status, error) {
	cur, latest, err := s.Versions(ctx)
	if err != nil {
		return ledger.Status{}, err
	}
	st := ledger.Status{
		Backend:       s.dialect.Name(),
		Location:      s.location,
		SchemaVersion: cur,
		LatestVersion: latest,
		Rows:          map[string]int64{},
	}
	if cur == 0 {
		return st, nil
	}
	for _, t := range StatusTables {
		var n int64
		// The table names are constants above, never user input.
		if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
			if cur < latest {
				continue
			}
			return ledger.Status{}, s.wrap(fmt.Errorf("count %s: %w", t, err))
		}
		st.Rows[t] = n
	}
	return st, nil
}
