package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// policyCols are the columns scanPolicy reads, in order. policy_versions
// has the same columns with policy_id for id.
const policyCols = `id, agent_id, version, limit_nanos, currency, win, win_type, timezone, allow, active, delegated_from, created_ns`

// scanPolicy reads one row selected with policyCols, then any extra
// columns into extra.
func scanPolicy(r rowScanner, extra ...any) (policy.Policy, error) {
	var (
		p         policy.Policy
		limit     int64
		win, wt   string
		allow     string
		delegated sql.NullString
		created   int64
	)
	dest := append([]any{&p.ID, &p.AgentID, &p.Version, &limit, &p.Currency, &win, &wt, &p.Timezone,
		&allow, &p.Active, &delegated, &created}, extra...)
	if err := r.Scan(dest...); err != nil {
		return policy.Policy{}, err
	}
	p.Limit = money.Amount(limit)
	p.Window = policy.Window(win)
	p.WindowType = policy.WindowType(wt)
	p.DelegatedFrom = delegated.String
	p.CreatedAt = fromNS(created)
	a, err := decodeAllow(allow)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("policy %s: %w", p.ID, err)
	}
	p.Allow = a
	return p, nil
}

func encodeAllow(a []string) (string, error) {
	if len(a) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("encode allow list: %w", err)
	}
	return string(b), nil
}

// decodeAllow returns nil for an empty list, so a policy without an
// allowlist reads back exactly as it was given.
func decodeAllow(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var a []string
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return nil, fmt.Errorf("decode allow list: %w", err)
	}
	if len(a) == 0 {
		return nil, nil
	}
	return a, nil
}

// normalizePolicy fills a policy's defaults (currency USD, calendar
// windows, time zone UTC) and checks every field with policy.ValidatePolicy,
// whose error names the bad one.
func normalizePolicy(in ledger.NewPolicy) (ledger.NewPolicy, error) {
	p := policy.NormalizePolicy(policy.Policy{
		Limit:      in.Limit,
		Currency:   in.Currency,
		Window:     in.Window,
		WindowType: in.WindowType,
		Timezone:   in.Timezone,
		Allow:      in.Allow,
	})
	if err := policy.ValidatePolicy(p); err != nil {
		return in, invalid(err)
	}
	in.Currency, in.WindowType, in.Timezone = p.Currency, p.WindowType, p.Timezone
	return in, nil
}

// CreatePolicy implements ledger.Policies. AgentID and DelegatedFrom may
// also be agent names; the policy stores IDs. Currency, WindowType and
// Timezone default to USD, calendar and UTC (policy.NormalizePolicy).
func (s *Store) CreatePolicy(ctx context.Context, in ledger.NewPolicy) (policy.Policy, error) {
	in, err := normalizePolicy(in)
	if err != nil {
		return policy.Policy{}, err
	}
	p := firstVersion(in)
	err = s.configTx(ctx, func(tx *sql.Tx) error {
		if in.AgentID == "" {
			return errorf(ledger.ErrInvalid, "agent is required")
		}
		a, err := s.agentByRef(ctx, tx, in.AgentID)
		if err != nil {
			return err
		}
		p.AgentID = a.ID
		if in.DelegatedFrom != "" {
			d, err := s.agentByRef(ctx, tx, in.DelegatedFrom)
			if errors.Is(err, ledger.ErrNotFound) {
				return errorf(ledger.ErrInvalid, "delegating agent %q not found", in.DelegatedFrom)
			}
			if err != nil {
				return err
			}
			p.DelegatedFrom = d.ID
		}
		return s.insertPolicy(ctx, tx, p)
	})
	if err != nil {
		return policy.Policy{}, err
	}
	return p, nil
}

// firstVersion is version 1 of a new, active policy shaped by in (already
// normalised); policies and delegations both create policies through it.
func firstVersion(in ledger.NewPolicy) policy.Policy {
	p := policy.Policy{
		ID:         uuid.Must(uuid.NewV7()).String(),
		Version:    1,
		Limit:      in.Limit,
		Currency:   in.Currency,
		Window:     in.Window,
		WindowType: in.WindowType,
		Timezone:   in.Timezone,
		Allow:      ownAllow(in.Allow),
		Active:     true,
		CreatedAt:  fromNS(toNS(now())),
	}
	return p
}

// ownAllow copies an allowlist so the stored policy shares no array with
// the caller's; an empty list is nil.
func ownAllow(a []string) []string {
	if len(a) == 0 {
		return nil
	}
	return append([]string(nil), a...)
}

// insertPolicy stores p, a first version (firstVersion), in both tables.
func (s *Store) insertPolicy(ctx context.Context, tx *sql.Tx, p policy.Policy) error {
	if err := s.insertPolicyRow(ctx, tx, "policies", p); err != nil {
		return err
	}
	return s.insertPolicyRow(ctx, tx, "policy_versions", p)
}

// insertPolicyRow writes p into policies or policy_versions, which share
// their columns but for the key's name.
func (s *Store) insertPolicyRow(ctx context.Context, tx *sql.Tx, table string, p policy.Policy) error {
	allow, err := encodeAllow(p.Allow)
	if err != nil {
		return err
	}
	idCol := "id"
	if table == "policy_versions" {
		idCol = "policy_id"
	}
	var delegated sql.NullString
	if p.DelegatedFrom != "" {
		delegated = sql.NullString{String: p.DelegatedFrom, Valid: true}
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO `+table+` (`+idCol+`, agent_id, version, limit_nanos, currency, win, win_type, timezone, allow, active, delegated_from, created_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		p.ID, p.AgentID, p.Version, p.Limit.Nanos(), p.Currency, string(p.Window), string(p.WindowType), p.Timezone,
		allow, p.Active, delegated, toNS(p.CreatedAt))
	if err != nil {
		return fmt.Errorf("write policy %s version %d: %w", p.ID, p.Version, err)
	}
	return nil
}

// lockedPolicy locks policy id for the rest of tx and reads it, so two
// concurrent updates cannot both write the same next version.
func (s *Store) lockedPolicy(ctx context.Context, tx *sql.Tx, id string) (policy.Policy, error) {
	// Policies are never deleted, so a policy seen here still exists when
	// the lock is taken.
	var one int
	err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM policies WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return policy.Policy{}, errorf(ledger.ErrNotFound, "policy %q not found", id)
	}
	if err != nil {
		return policy.Policy{}, fmt.Errorf("read policy %q: %w", id, err)
	}
	if err := s.dialect.LockPolicies(ctx, tx, []string{id}); err != nil {
		return policy.Policy{}, err
	}
	p, err := scanPolicy(tx.QueryRowContext(ctx, s.q(`SELECT `+policyCols+` FROM policies WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return policy.Policy{}, errorf(ledger.ErrNotFound, "policy %q not found", id)
	}
	if err != nil {
		return policy.Policy{}, fmt.Errorf("read policy %q: %w", id, err)
	}
	return p, nil
}

// writeVersion stores p as the policy's next version in both tables.
func (s *Store) writeVersion(ctx context.Context, tx *sql.Tx, p policy.Policy) error {
	allow, err := encodeAllow(p.Allow)
	if err != nil {
		return err
	}
	var delegated sql.NullString
	if p.DelegatedFrom != "" {
		delegated = sql.NullString{String: p.DelegatedFrom, Valid: true}
	}
	_, err = tx.ExecContext(ctx, s.q(`UPDATE policies SET version = ?, limit_nanos = ?, currency = ?, win = ?, win_type = ?,
			timezone = ?, allow = ?, active = ?, delegated_from = ?, created_ns = ? WHERE id = ?`),
		p.Version, p.Limit.Nanos(), p.Currency, string(p.Window), string(p.WindowType), p.Timezone, allow, p.Active,
		delegated, toNS(p.CreatedAt), p.ID)
	if err != nil {
		return fmt.Errorf("write policy %s version %d: %w", p.ID, p.Version, err)
	}
	return s.insertPolicyRow(ctx, tx, "policy_versions", p)
}

// UpdatePolicy implements ledger.Policies. Limit and Allow are replaced;
// an empty AgentID, Currency, Window, WindowType, Timezone or DelegatedFrom
// keeps the current value. A policy cannot move to another agent, and an
// inactive policy cannot be updated.
func (s *Store) UpdatePolicy(ctx context.Context, id string, in ledger.NewPolicy) (policy.Policy, error) {
	var p policy.Policy
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockedPolicy(ctx, tx, id)
		if err != nil {
			return err
		}
		if !cur.Active {
			return errorf(ledger.ErrConflict, "policy %q is inactive", id)
		}
		if in.AgentID != "" {
			a, err := s.agentByRef(ctx, tx, in.AgentID)
			if err != nil {
				return err
			}
			if a.ID != cur.AgentID {
				return errorf(ledger.ErrInvalid, "policy %q belongs to agent %s and cannot move to agent %q", id, cur.AgentID, in.AgentID)
			}
		}
		keep := func(v *string, c string) {
			if *v == "" {
				*v = c
			}
		}
		keep(&in.Currency, cur.Currency)
		keep((*string)(&in.Window), string(cur.Window))
		keep((*string)(&in.WindowType), string(cur.WindowType))
		keep(&in.Timezone, cur.Timezone)
		if in, err = normalizePolicy(in); err != nil {
			return err
		}
		p = cur
		if in.DelegatedFrom != "" {
			d, err := s.agentByRef(ctx, tx, in.DelegatedFrom)
			if errors.Is(err, ledger.ErrNotFound) {
				return errorf(ledger.ErrInvalid, "delegating agent %q not found", in.DelegatedFrom)
			}
			if err != nil {
				return err
			}
			p.DelegatedFrom = d.ID
		}
		p.Version = cur.Version + 1
		p.Limit, p.Currency, p.Window, p.WindowType, p.Timezone = in.Limit, in.Currency, in.Window, in.WindowType, in.Timezone
		p.Allow = ownAllow(in.Allow)
		p.CreatedAt = fromNS(toNS(now()))
		return s.writeVersion(ctx, tx, p)
	})
	if err != nil {
		return policy.Policy{}, err
	}
	return p, nil
}

// DeactivatePolicy implements ledger.Policies: it writes a new, inactive
// version. Deactivating an inactive policy is a conflict.
func (s *Store) DeactivatePolicy(ctx context.Context, id string) (policy.Policy, error) {
	var p policy.Policy
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockedPolicy(ctx, tx, id)
		if err != nil {
			return err
		}
		if !cur.Active {
			return errorf(ledger.ErrConflict, "policy %q is already inactive", id)
		}
		p = cur
		p.Version++
		p.Active = false
		p.CreatedAt = fromNS(toNS(now()))
		return s.writeVersion(ctx, tx, p)
	})
	if err != nil {
		return policy.Policy{}, err
	}
	return p, nil
}

// GetPolicy implements ledger.Policies: the current version.
func (s *Store) GetPolicy(ctx context.Context, id string) (policy.Policy, error) {
	p, err := scanPolicy(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+policyCols+` FROM policies WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return policy.Policy{}, errorf(ledger.ErrNotFound, "policy %q not found", id)
	}
	if err != nil {
		return policy.Policy{}, s.wrap(fmt.Errorf("read policy %q: %w", id, err))
	}
	return p, nil
}

// ListPolicies implements ledger.Policies, ordered by agent name (byte by
// byte, whatever the database's collation), then by when each policy was
// first created. agentID may also be the agent's name.
func (s *Store) ListPolicies(ctx context.Context, agentID string, includeInactive bool) ([]policy.Policy, error) {
	var (
		where []string
		args  []any
	)
	if agentID != "" {
		a, err := s.agentByRef(ctx, s.rdb, agentID)
		if err != nil {
			return nil, err
		}
		where, args = append(where, `p.agent_id = ?`), append(args, a.ID)
	}
	if !includeInactive {
		where, args = append(where, `p.active = ?`), append(args, true)
	}
	query := `SELECT p.id, p.agent_id, p.version, p.limit_nanos, p.currency, p.win, p.win_type, p.timezone, p.allow,
			p.active, p.delegated_from, p.created_ns, a.name
		FROM policies p
		JOIN agents a ON a.id = p.agent_id
		JOIN policy_versions v ON v.policy_id = p.id AND v.version = 1`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY v.created_ns, p.id`
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list policies: %w", err))
	}
	defer rows.Close()
	type named struct {
		p     policy.Policy
		agent string
	}
	var list []named
	for rows.Next() {
		var n named
		if n.p, err = scanPolicy(rows, &n.agent); err != nil {
			return nil, s.wrap(fmt.Errorf("list policies: %w", err))
		}
		list = append(list, n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("list policies: %w", err))
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].agent < list[j].agent })
	out := make([]policy.Policy, len(list))
	for i, n := range list {
		out[i] = n.p
	}
	return out, nil
}

// PolicyHistory implements ledger.Policies.
func (s *Store) PolicyHistory(ctx context.Context, id string) ([]policy.Policy, error) {
	out, err := s.queryPolicies(ctx, s.rdb, "read policy history", `SELECT policy_id, agent_id, version, limit_nanos, currency, win,
			win_type, timezone, allow, active, delegated_from, created_ns
		FROM policy_versions WHERE policy_id = ? ORDER BY version`, id)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errorf(ledger.ErrNotFound, "policy %q not found", id)
	}
	return out, nil
}

// activePolicies returns the active policies (current versions) of the
// given agents, read through q and ordered by policy ID.
func (s *Store) activePolicies(ctx context.Context, q querier, agentIDs []string) ([]policy.Policy, error) {
	ids := sortedIDs(agentIDs)
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, true)
	for _, id := range ids {
		args = append(args, id)
	}
	return s.queryPolicies(ctx, q, "read active policies", `SELECT `+policyCols+` FROM policies
		WHERE active = ? AND agent_id IN (`+placeholders(len(ids))+`) ORDER BY id`, args...)
}

func (s *Store) queryPolicies(ctx context.Context, q querier, what, query string, args ...any) ([]policy.Policy, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("%s: %w", what, err))
	}
	defer rows.Close()
	out := []policy.Policy{}
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("%s: %w", what, err))
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("%s: %w", what, err))
	}
	return out, nil
}
