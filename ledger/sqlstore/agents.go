package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// MaxChainDepth is the most agents a delegation chain may hold, the agent
// itself included. It bounds the walk up the parent links, so a corrupted
// row can never send a query into an endless loop.
const MaxChainDepth = 64

// agentCols are the columns scanAgent reads, in order.
const agentCols = `id, name, owner, parent_id, status, metadata, created_ns`

// scanAgent reads one agents row selected with agentCols.
func scanAgent(r rowScanner) (policy.Agent, error) {
	var (
		a       policy.Agent
		parent  sql.NullString
		status  string
		meta    string
		created int64
	)
	if err := r.Scan(&a.ID, &a.Name, &a.Owner, &parent, &status, &meta, &created); err != nil {
		return policy.Agent{}, err
	}
	a.ParentID = parent.String
	a.Status = policy.AgentStatus(status)
	a.CreatedAt = fromNS(created)
	md, err := decodeMetadata(meta)
	if err != nil {
		return policy.Agent{}, fmt.Errorf("agent %q: %w", a.Name, err)
	}
	a.Metadata = md
	return a, nil
}

func encodeMetadata(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	return string(b), nil
}

// decodeMetadata returns nil for an empty object, so an agent created
// without metadata reads back exactly as it was given.
func decodeMetadata(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func validateMetadata(m map[string]string) error {
	for k := range m {
		if k == "" || strings.TrimSpace(k) != k {
			return errorf(ledger.ErrInvalid, "metadata key %q must be non-empty and not padded with spaces", k)
		}
	}
	return nil
}

// agentByRef reads the agent whose ID or name is ref. An exact ID match
// wins over a name, though names shaped like IDs are refused anyway.
func (s *Store) agentByRef(ctx context.Context, q querier, ref string) (policy.Agent, error) {
	a, err := scanAgent(q.QueryRowContext(ctx, s.q(`SELECT `+agentCols+` FROM agents
		WHERE id = ? OR name = ? ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1`), ref, ref, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return policy.Agent{}, errorf(ledger.ErrNotFound, "agent %q not found", ref)
	}
	if err != nil {
		return policy.Agent{}, s.wrap(fmt.Errorf("read agent %q: %w", ref, err))
	}
	return a, nil
}

// CreateAgent implements ledger.Agents. ParentID may be the parent's ID or name.
func (s *Store) CreateAgent(ctx context.Context, in ledger.NewAgent) (policy.Agent, error) {
	if err := policy.ValidateAgentName(in.Name); err != nil {
		return policy.Agent{}, invalid(err)
	}
	if err := validateMetadata(in.Metadata); err != nil {
		return policy.Agent{}, err
	}
	meta, err := encodeMetadata(in.Metadata)
	if err != nil {
		return policy.Agent{}, err
	}
	md, _ := decodeMetadata(meta)
	a := policy.Agent{
		ID:        uuid.Must(uuid.NewV7()).String(),
		Name:      in.Name,
		Owner:     in.Owner,
		Status:    policy.StatusActive,
		Metadata:  md,
		CreatedAt: fromNS(toNS(now())),
	}
	err = s.configTx(ctx, func(tx *sql.Tx) error {
		var parent sql.NullString
		if in.ParentID != "" {
			// Serialised with re-parenting, so the chain checked against
			// the depth limits is the chain the new agent joins.
			if err := s.lockHierarchy(ctx, tx); err != nil {
				return err
			}
			p, err := s.agentByRef(ctx, tx, in.ParentID)
			if errors.Is(err, ledger.ErrNotFound) {
				return errorf(ledger.ErrInvalid, "parent agent %q not found", in.ParentID)
			}
			if err != nil {
				return err
			}
			chain, err := s.chain(ctx, tx, p.ID, false)
			if err != nil {
				return err
			}
			if in.MaxDepth > 0 && len(chain)+1 > in.MaxDepth {
				return &ledger.ChainDepthError{Agents: len(chain) + 1, Path: chainPath(chain) + " → " + in.Name, Max: in.MaxDepth}
			}
			if len(chain)+1 > MaxChainDepth {
				return errorf(ledger.ErrInvalid, "parent agent %q: a delegation chain may hold at most %d agents", in.ParentID, MaxChainDepth)
			}
			a.ParentID = p.ID
			parent = sql.NullString{String: p.ID, Valid: true}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO agents (`+agentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			a.ID, a.Name, a.Owner, parent, string(a.Status), meta, toNS(a.CreatedAt))
		if err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return errorf(ledger.ErrConflict, "agent %q already exists", a.Name)
			}
			return fmt.Errorf("insert agent %q: %w", a.Name, err)
		}
		return nil
	})
	if err != nil {
		return policy.Agent{}, err
	}
	return a, nil
}

// GetAgent implements ledger.Agents.
func (s *Store) GetAgent(ctx context.Context, idOrName string) (policy.Agent, error) {
	return s.agentByRef(ctx, s.rdb, idOrName)
}

// ListAgents implements ledger.Agents, ordered by name byte by byte, the
// same on both backends whatever the database's collation.
func (s *Store) ListAgents(ctx context.Context) ([]policy.Agent, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+agentCols+` FROM agents`)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list agents: %w", err))
	}
	defer rows.Close()
	out := []policy.Agent{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("list agents: %w", err))
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("list agents: %w", err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SetAgentStatus implements ledger.Agents. id may also be the agent's name.
func (s *Store) SetAgentStatus(ctx context.Context, id string, st policy.AgentStatus) (policy.Agent, error) {
	if st != policy.StatusActive && st != policy.StatusSuspended {
		return policy.Agent{}, errorf(ledger.ErrInvalid, "agent status %q must be active or suspended", st)
	}
	var a policy.Agent
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = s.agentByRef(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET status = ? WHERE id = ?`), string(st), a.ID); err != nil {
			return fmt.Errorf("set status of agent %q: %w", a.Name, err)
		}
		a.Status = st
		return nil
	})
	if err != nil {
		return policy.Agent{}, err
	}
	return a, nil
}

// SetAgentParent implements ledger.Agents. An empty parentID makes the agent
// a root; id and parentID may also be names.
func (s *Store) SetAgentParent(ctx context.Context, id, parentID string) (policy.Agent, error) {
	var a policy.Agent
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockHierarchy(ctx, tx); err != nil {
			return err
		}
		var err error
		if a, err = s.agentByRef(ctx, tx, id); err != nil {
			return err
		}
		var parent sql.NullString
		if parentID != "" {
			p, err := s.agentByRef(ctx, tx, parentID)
			if errors.Is(err, ledger.ErrNotFound) {
				return errorf(ledger.ErrInvalid, "parent agent %q not found", parentID)
			}
			if err != nil {
				return err
			}
			chain, err := s.chain(ctx, tx, p.ID, false)
			if err != nil {
				return err
			}
			path := []string{a.Name}
			for _, c := range chain {
				path = append(path, c.Name)
				if c.ID == a.ID {
					return errorf(ledger.ErrConflict, "would create a cycle: %s", strings.Join(path, " → "))
				}
			}
			h, err := s.subtreeHeight(ctx, tx, a.ID)
			if err != nil {
				return err
			}
			if len(chain)+h > MaxChainDepth {
				return errorf(ledger.ErrInvalid, "parent agent %q: a delegation chain may hold at most %d agents", parentID, MaxChainDepth)
			}
			parent = sql.NullString{String: p.ID, Valid: true}
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET parent_id = ? WHERE id = ?`), parent, a.ID); err != nil {
			return fmt.Errorf("set parent of agent %q: %w", a.Name, err)
		}
		a.ParentID = parent.String
		return nil
	})
	if err != nil {
		return policy.Agent{}, err
	}
	return a, nil
}

// Chain implements ledger.Agents. agentID may also be the agent's name.
func (s *Store) Chain(ctx context.Context, agentID string) ([]policy.Agent, error) {
	return s.chain(ctx, s.rdb, agentID, true)
}

// chainTx returns the agent with ID agentID and its ancestors, the agent
// first, read inside tx. It fails with ledger.ErrNotFound for an unknown
// agent, and refuses a chain with a cycle or more than MaxChainDepth agents.
func (s *Store) chainTx(ctx context.Context, tx *sql.Tx, agentID string) ([]policy.Agent, error) {
	return s.chain(ctx, tx, agentID, false)
}

// chain loads a chain in one recursive query. byName also accepts the
// agent's name, at the price of a second index probe.
func (s *Store) chain(ctx context.Context, q querier, ref string, byName bool) ([]policy.Agent, error) {
	seed, args := `id = ?`, []any{ref}
	if byName {
		seed, args = `id = ? OR name = ?`, []any{ref, ref}
	}
	// The walk stops one level past the cap so an overlong chain (or a
	// cycle, which looks like an endless one) is seen rather than cut.
	args = append(args, MaxChainDepth)
	rows, err := q.QueryContext(ctx, s.q(`WITH RECURSIVE up(id, depth) AS (
			SELECT id, 0 FROM agents WHERE `+seed+`
			UNION ALL
			SELECT a.parent_id, up.depth + 1 FROM up JOIN agents a ON a.id = up.id
			WHERE a.parent_id IS NOT NULL AND up.depth < ?
		)
		SELECT a.id, a.name, a.owner, a.parent_id, a.status, a.metadata, a.created_ns
		FROM up JOIN agents a ON a.id = up.id ORDER BY up.depth`), args...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("read chain of agent %q: %w", ref, err))
	}
	defer rows.Close()
	var out []policy.Agent
	seen := make(map[string]bool)
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("read chain of agent %q: %w", ref, err))
		}
		if seen[a.ID] {
			return nil, fmt.Errorf("chain of agent %q has a parent cycle at %q", ref, a.Name)
		}
		seen[a.ID] = true
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("read chain of agent %q: %w", ref, err))
	}
	if len(out) == 0 {
		return nil, errorf(ledger.ErrNotFound, "agent %q not found", ref)
	}
	if len(out) > MaxChainDepth {
		return nil, fmt.Errorf("chain of agent %q holds more than %d agents", ref, MaxChainDepth)
	}
	return out, nil
}

// keyCols are the columns scanKey reads, in order.
const keyCols = `id, agent_id, prefix, created_ns, expires_ns, revoked_ns`

func scanKey(r rowScanner) (policy.APIKey, error) {
	var (
		k                policy.APIKey
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.AgentID, &k.Prefix, &created, &expires, &revoked); err != nil {
		return policy.APIKey{}, err
	}
	k.CreatedAt = fromNS(created)
	k.ExpiresAt = fromNullNS(expires)
	k.RevokedAt = fromNullNS(revoked)
	return k, nil
}

// keyHashLen is the length of a SHA-256 digest, the only hash stored.
const keyHashLen = 32

// CreateKey implements ledger.Agents. agentID may also be the agent's name.
func (s *Store) CreateKey(ctx context.Context, agentID string, hash []byte, prefix string, expiresAt *time.Time) (policy.APIKey, error) {
	if len(hash) != keyHashLen {
		return policy.APIKey{}, errorf(ledger.ErrInvalid, "key hash must be %d bytes (SHA-256), got %d", keyHashLen, len(hash))
	}
	k := policy.APIKey{ID: uuid.Must(uuid.NewV7()).String(), Prefix: prefix, CreatedAt: fromNS(toNS(now()))}
	if expiresAt != nil {
		t := fromNS(toNS(*expiresAt))
		k.ExpiresAt = &t
	}
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		a, err := s.agentByRef(ctx, tx, agentID)
		if err != nil {
			return err
		}
		k.AgentID = a.ID
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO api_keys (id, agent_id, prefix, hash, created_ns, expires_ns, revoked_ns)
			VALUES (?, ?, ?, ?, ?, ?, NULL)`), k.ID, k.AgentID, k.Prefix, hash, toNS(k.CreatedAt), toNullNS(k.ExpiresAt))
		if err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return errorf(ledger.ErrConflict, "a key with this hash already exists")
			}
			return fmt.Errorf("insert key for agent %q: %w", a.Name, err)
		}
		return nil
	})
	if err != nil {
		return policy.APIKey{}, err
	}
	return k, nil
}

// RevokeKey implements ledger.Agents. Revoking twice is a conflict, so a
// script learns that the key it meant was already dead.
func (s *Store) RevokeKey(ctx context.Context, keyID string) (policy.APIKey, error) {
	var k policy.APIKey
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` FROM api_keys WHERE id = ?`), keyID))
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ledger.ErrNotFound, "key %q not found", keyID)
		}
		if err != nil {
			return fmt.Errorf("read key %q: %w", keyID, err)
		}
		if k.RevokedAt != nil {
			return errorf(ledger.ErrConflict, "key %q already revoked at %s", keyID, k.RevokedAt.Format(time.RFC3339))
		}
		t := fromNS(toNS(now()))
		// The revoked_ns IS NULL guard makes a concurrent second revoke a
		// no-op rather than moving the revocation time.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE api_keys SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL`), toNS(t), keyID)
		if err != nil {
			return fmt.Errorf("revoke key %q: %w", keyID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errorf(ledger.ErrConflict, "key %q already revoked", keyID)
		}
		k.RevokedAt = &t
		return nil
	})
	if err != nil {
		return policy.APIKey{}, err
	}
	return k, nil
}

// ListKeys implements ledger.Agents, oldest first. agentID may also be the
// agent's name.
func (s *Store) ListKeys(ctx context.Context, agentID string) ([]policy.APIKey, error) {
	a, err := s.agentByRef(ctx, s.rdb, agentID)
	if err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+keyCols+` FROM api_keys WHERE agent_id = ? ORDER BY created_ns, id`), a.ID)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list keys of agent %q: %w", a.Name, err))
	}
	defer rows.Close()
	out := []policy.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("list keys of agent %q: %w", a.Name, err))
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("list keys of agent %q: %w", a.Name, err))
	}
	return out, nil
}

// readKeyByHash reads the key with this hash and its agent (KeyByHash
// caches it).
func (s *Store) readKeyByHash(ctx context.Context, hash []byte) (policy.APIKey, policy.Agent, error) {
	row := s.rdb.QueryRowContext(ctx, s.q(`SELECT k.id, k.agent_id, k.prefix, k.created_ns, k.expires_ns, k.revoked_ns,
			a.id, a.name, a.owner, a.parent_id, a.status, a.metadata, a.created_ns
		FROM api_keys k JOIN agents a ON a.id = k.agent_id WHERE k.hash = ?`), hash)
	var (
		k                policy.APIKey
		kc               int64
		expires, revoked sql.NullInt64
		a                policy.Agent
		parent           sql.NullString
		status, meta     string
		ac               int64
	)
	err := row.Scan(&k.ID, &k.AgentID, &k.Prefix, &kc, &expires, &revoked,
		&a.ID, &a.Name, &a.Owner, &parent, &status, &meta, &ac)
	if errors.Is(err, sql.ErrNoRows) {
		return policy.APIKey{}, policy.Agent{}, errorf(ledger.ErrNotFound, "no key with this hash")
	}
	if err != nil {
		return policy.APIKey{}, policy.Agent{}, s.wrap(fmt.Errorf("read key: %w", err))
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromNS(kc), fromNullNS(expires), fromNullNS(revoked)
	a.ParentID, a.Status, a.CreatedAt = parent.String, policy.AgentStatus(status), fromNS(ac)
	if a.Metadata, err = decodeMetadata(meta); err != nil {
		return policy.APIKey{}, policy.Agent{}, fmt.Errorf("agent %q: %w", a.Name, err)
	}
	return k, a, nil
}

// sortedIDs returns ids sorted and without duplicates.
func sortedIDs(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	j := 0
	for i, id := range out {
		if i == 0 || id != out[j-1] {
			out[j] = id
			j++
		}
	}
	return out[:j]
}
