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

// ActivePoliciesInTx runs activePolicies in a transaction of its own, for the tests.
func (s *Store) ActivePoliciesInTx(ctx context.Context, agentIDs []string) (ps []policy.Policy, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		ps, err = s.activePolicies(ctx, tx, agentIDs)
		return err
	})
	return ps, err
}

// WriteTx runs fn through writeTx, the enforcement path's transaction, for
// the tests.
func (s *Store) WriteTx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	return s.writeTx(ctx, fn)
}

// Tx runs fn through tx, the store's transaction helper, for the tests.
func (s *Store) Tx(ctx context.Context, fn func(*sql.Tx) error) error { return s.tx(ctx, fn) }

// QueuedWrites is how many writeTx calls wait for a group leader.
func (s *Store) QueuedWrites() int {
	s.enforce.mu.Lock()
	defer s.enforce.mu.Unlock()
	return len(s.enforce.queue)
}

// KeyCached reports whether KeyByHash holds the key with this hash in its
// cache.
func (s *Store) KeyCached(hash []byte) bool {
	s.config.mu.Lock()
	defer s.config.mu.Unlock()
	_, ok := s.config.keys[string(hash)]
	return ok
}

// ExpiredListSQL is the expiry sweep's query, for the tests.
const ExpiredListSQL = expiredListSQL

// OthersFinishedSQL and HeldUsageSQL read what is inside leases, for the
// tests of their query plans.
const (
	OthersFinishedSQL = othersFinishedSQL
	HeldUsageSQL      = heldUsageSQL
)

// Prepare runs prepare, for the tests.
func (s *Store) Prepare() { s.prepare() }

// Prepared reports whether every enforcement statement is prepared.
func (s *Store) Prepared() bool {
	s.enforce.mu.Lock()
	defer s.enforce.mu.Unlock()
	return s.enforce.prepared
}

// UsePrepared runs ptx on tx, as every SQLite write transaction does
// before its statements.
func (s *Store) UsePrepared(tx *sql.Tx) { s.ptx(tx) }
