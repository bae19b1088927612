package sqlstore

import (
	"context"
	"database/sql"

	"github.com/caracal-dev/caracal/policy"
)

// ChainInTx runs chainTx in a transaction of its own, for the tests.
func (s *Store) ChainInTx(ctx context.Context, agentID string) (chain []policy.Agent, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		chain, err = s.chainTx(ctx, tx, agentID)
		return err
	})
	return chain, err
}

// ActivePoliciesInTx runs activePoliciesTx in a transaction of its own, for the tests.
func (s *Store) ActivePoliciesInTx(ctx context.Context, agentIDs []string) (ps []policy.Policy, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		ps, err = s.activePoliciesTx(ctx, tx, agentIDs)
		return err
	})
	return ps, err
}
