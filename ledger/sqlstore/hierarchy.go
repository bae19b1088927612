package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/caracal-dev/caracal/policy"
)

// lockHierarchy serialises, for the rest of tx, every transaction that
// reads a chain to change it (re-parenting, delegating, creating a child).
func (s *Store) lockHierarchy(ctx context.Context, tx *sql.Tx) error {
	if err := s.dialect.LockHierarchy(ctx, tx); err != nil {
		return fmt.Errorf("lock agent hierarchy: %w", err)
	}
	return nil
}

// chainPath prints a chain root first: root → … → agent.
func chainPath(chain []policy.Agent) string {
	names := make([]string, len(chain))
	for i, a := range chain {
		names[len(chain)-1-i] = a.Name
	}
	return strings.Join(names, " → ")
}

// subtreeHeight returns how many agents the longest path down from id
// holds, id included.
func (s *Store) subtreeHeight(ctx context.Context, q querier, id string) (int, error) {
	var h sql.NullInt64
	err := q.QueryRowContext(ctx, s.q(`WITH RECURSIVE sub(id, depth) AS (
			SELECT id, 1 FROM agents WHERE id = ?
			UNION ALL
			SELECT a.id, sub.depth + 1 FROM agents a JOIN sub ON a.parent_id = sub.id WHERE sub.depth <= ?
		) SELECT MAX(depth) FROM sub`), id, MaxChainDepth).Scan(&h)
	if err != nil {
		return 0, fmt.Errorf("read descendants of agent %s: %w", id, err)
	}
	return int(h.Int64), nil
}
