package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// enforceChainSQL reads an agent, its ancestors (the agent first) and the
// active policies of each, in one statement: one row per (agent, policy),
// or one row with NULL policy columns for an agent without policies.
const enforceChainSQL = `WITH RECURSIVE chain(id, name, owner, parent_id, status, created_ns, depth) AS (
	SELECT id, name, owner, parent_id, status, created_ns, 0 FROM agents WHERE id = ?
	UNION ALL
	SELECT a.id, a.name, a.owner, a.parent_id, a.status, a.created_ns, c.depth + 1
	FROM agents a JOIN chain c ON a.id = c.parent_id
	WHERE c.depth < ?
)
SELECT c.id, c.name, c.owner, c.parent_id, c.status, c.created_ns,
	p.id, p.version, p.limit_nanos, p.currency, p.win, p.win_type, p.timezone, p.allow, p.delegated_from, p.created_ns
FROM chain c LEFT JOIN policies p ON p.agent_id = c.id AND p.active
ORDER BY c.depth, p.id`

// loadEnforceChain returns the agent's chain (the agent first) and the
// active policies of every agent on it, sorted by chain position then
// policy ID. An unknown agent is ledger.ErrNotFound.
func (s *Store) loadEnforceChain(ctx context.Context, q querier, agentID string) ([]policy.Agent, []policy.PolicyUsage, error) {
	rows, err := q.QueryContext(ctx, s.q(enforceChainSQL), agentID, MaxChainDepth)
	if err != nil {
		return nil, nil, fmt.Errorf("read agent chain: %w", err)
	}
	defer rows.Close()
	var chain []policy.Agent
	var pols []policy.PolicyUsage
	seen := make(map[string]bool)
	for rows.Next() {
		var (
			a                                      policy.Agent
			parent, pid, pcur, pwin, pwt, ptz, pal sql.NullString
			pdel                                   sql.NullString
			acreated                               int64
			pver, plimit, pcreated                 sql.NullInt64
		)
		if err := rows.Scan(&a.ID, &a.Name, &a.Owner, &parent, &a.Status, &acreated,
			&pid, &pver, &plimit, &pcur, &pwin, &pwt, &ptz, &pal, &pdel, &pcreated); err != nil {
			return nil, nil, fmt.Errorf("read agent chain: %w", err)
		}
		if len(chain) == 0 || chain[len(chain)-1].ID != a.ID {
			if seen[a.ID] {
				return nil, nil, fmt.Errorf("chain of agent %q has a parent cycle at %q", agentID, a.Name)
			}
			seen[a.ID] = true
			a.ParentID = parent.String
			a.CreatedAt = fromNS(acreated)
			chain = append(chain, a)
		}
		if !pid.Valid {
			continue
		}
		p := policy.Policy{
			ID:            pid.String,
			AgentID:       a.ID,
			Version:       int(pver.Int64),
			Limit:         money.Amount(plimit.Int64),
			Currency:      pcur.String,
			Window:        policy.Window(pwin.String),
			WindowType:    policy.WindowType(pwt.String),
			Timezone:      ptz.String,
			Active:        true,
			DelegatedFrom: pdel.String,
			CreatedAt:     fromNS(pcreated.Int64),
		}
		if p.Allow, err = decodeAllow(pal.String); err != nil {
			return nil, nil, fmt.Errorf("policy %s: %w", p.ID, err)
		}
		pols = append(pols, policy.PolicyUsage{Policy: p, AgentName: a.Name})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read agent chain: %w", err)
	}
	if len(chain) == 0 {
		return nil, nil, fmt.Errorf("agent %q: %w", agentID, ledger.ErrNotFound)
	}
	return chain, pols, nil
}

// encodeChain stores a delegation chain (agent IDs, the agent first) as a
// JSON array of strings, in reservations.chain and events.chain.
func encodeChain(ids []string) string {
	if ids == nil {
		ids = []string{}
	}
	b, _ := json.Marshal(ids) // a []string always marshals
	return string(b)
}

// decodeChain reads what encodeChain wrote.
func decodeChain(s string) ([]string, error) {
	var ids []string
	if s == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(s), &ids); err != nil {
		return nil, fmt.Errorf("decode chain %q: %w", s, err)
	}
	return ids, nil
}

func chainIDs(chain []policy.Agent) []string {
	ids := make([]string, len(chain))
	for i, a := range chain {
		ids[i] = a.ID
	}
	return ids
}
