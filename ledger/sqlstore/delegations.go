package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// CreateDelegation implements ledger.Delegations: every check and both
// writes (the parent link, the delegated policy) in one transaction under
// the hierarchy lock, so a refusal or a failure leaves nothing behind.
func (s *Store) CreateDelegation(ctx context.Context, d ledger.NewDelegation) (policy.Policy, error) {
	in, err := normalizePolicy(d.Policy)
	if err != nil {
		return policy.Policy{}, err
	}
	limit := MaxChainDepth
	if d.MaxDepth > 0 && d.MaxDepth < limit {
		limit = d.MaxDepth
	}
	p := firstVersion(in)
	err = s.configTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockHierarchy(ctx, tx); err != nil {
			return err
		}
		parent, err := s.requiredAgent(ctx, tx, "parent", d.Parent)
		if err != nil {
			return err
		}
		child, err := s.requiredAgent(ctx, tx, "child", d.Child)
		if err != nil {
			return err
		}
		if parent.ID == child.ID {
			return ledger.ErrDelegateToSelf
		}
		if child.ParentID != "" && child.ParentID != parent.ID {
			name := child.ParentID
			if cur, err := s.agentByRef(ctx, tx, child.ParentID); err == nil {
				name = cur.Name
			}
			return errorf(ledger.ErrConflict, "agent %q already has parent %q; delegate from that parent", child.Name, name)
		}
		chain, err := s.chainTx(ctx, tx, parent.ID)
		if err != nil {
			return err
		}
		for _, a := range chain {
			if a.ID == child.ID {
				return errorf(ledger.ErrConflict, "agent %q is an ancestor of %q: delegating would make a cycle", child.Name, parent.Name)
			}
		}
		h, err := s.subtreeHeight(ctx, tx, child.ID)
		if err != nil {
			return err
		}
		if depth := len(chain) + h; depth > limit {
			return &ledger.ChainDepthError{Agents: depth, Path: chainPath(chain) + " → " + child.Name + "…", Max: limit}
		}
		// A child may not be granted more than its parent can spend in the
		// same window and currency: the grant could never be spent.
		parentPols, err := s.activePolicies(ctx, tx, []string{parent.ID})
		if err != nil {
			return err
		}
		for _, pp := range parentPols {
			if pp.Window == p.Window && pp.Currency == p.Currency && p.Limit > pp.Limit {
				return errkind.New(ledger.ErrOverParentLimit, fmt.Sprintf("%s %s exceeds parent %q's %s limit of %s %s",
					p.Limit, p.Currency, parent.Name, pp.Window, pp.Limit, pp.Currency))
			}
		}
		if child.ParentID == "" {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET parent_id = ? WHERE id = ?`), parent.ID, child.ID); err != nil {
				return fmt.Errorf("make agent %q a child of %q: %w", child.Name, parent.Name, err)
			}
		}
		p.AgentID, p.DelegatedFrom = child.ID, parent.ID
		return s.insertPolicy(ctx, tx, p)
	})
	if err != nil {
		return policy.Policy{}, err
	}
	return p, nil
}

// requiredAgent reads the agent ref names, refusing an empty ref as
// ErrInvalid; role ("parent", "child") says which one was missing.
func (s *Store) requiredAgent(ctx context.Context, q querier, role, ref string) (policy.Agent, error) {
	if ref == "" {
		return policy.Agent{}, errorf(ledger.ErrInvalid, "%s agent is required", role)
	}
	return s.agentByRef(ctx, q, ref)
}

// RevokeDelegation implements ledger.Delegations: it locks the policy,
// checks that it is a live delegation and writes its zero-limit version,
// in one transaction.
func (s *Store) RevokeDelegation(ctx context.Context, policyID string) (policy.Policy, error) {
	var p policy.Policy
	err := s.configTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockedPolicy(ctx, tx, policyID)
		if err != nil {
			return err
		}
		if cur.DelegatedFrom == "" {
			return errkind.New(ledger.ErrNotDelegation, fmt.Sprintf("policy %q is not a delegation", policyID))
		}
		if !cur.Active || cur.Limit == 0 {
			return errorf(ledger.ErrConflict, "delegation %q is already revoked", policyID)
		}
		p = cur
		p.Version++
		p.Limit = 0
		p.CreatedAt = fromNS(toNS(now()))
		return s.writeVersion(ctx, tx, p)
	})
	if err != nil {
		return policy.Policy{}, err
	}
	return p, nil
}
