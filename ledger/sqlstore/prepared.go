package sqlstore

import (
	"context"
	"database/sql"
)

// sqliteStatements are the statements of the SQLite enforcement path and
// of a lease holder's sync, prepared once on the write connection:
// parsing dominated their cost.
var sqliteStatements = append([]string{
	`SAVEPOINT op`, `ROLLBACK TO op`, `RELEASE op`,
	enforceChainSQL, usageUpsertSQL, reservationInsertSQL,
	finishSQL, finishExpiredSQL, bucketsSelectSQL, agentNameSQL, eventInsertSQL, queueInsertSQL,
	// A holder's periodic sync (syncLeases).
	heartbeatSQL, leasePoliciesSQL, foldReadSQL, foldClearSQL, wantedLeasesSQL, clearWantedSQL, leaseDeleteSQL,
	leaseAddSQL, othersFinishedSQL,
}, bucketInserts...)

// prepare prepares sqliteStatements on the write connection until all of
// them are (a store opened before its schema was migrated cannot prepare
// them yet). It runs while the caller holds no connection, as the write
// pool has only one. A statement not prepared is simply run as text.
//
// Preparing waits for that connection, so it must not hold enforce.mu
// meanwhile: a transaction that holds the connection takes enforce.mu in
// ptx, and the two would wait for each other for ever. preparing keeps
// preparers to one at a time instead.
func (s *Store) prepare() {
	s.enforce.preparing.Lock()
	defer s.enforce.preparing.Unlock()
	s.enforce.mu.Lock()
	done, old := s.enforce.prepared, s.enforce.stmts
	s.enforce.mu.Unlock()
	if done {
		return
	}
	// Readers hold the old map without the lock, so build a new one.
	m := make(map[string]*sql.Stmt, len(sqliteStatements))
	for _, q := range sqliteStatements {
		if st, ok := old[q]; ok {
			m[q] = st
		} else if st, err := s.db.PrepareContext(context.Background(), q); err == nil {
			m[q] = st
		}
	}
	s.enforce.mu.Lock()
	defer s.enforce.mu.Unlock()
	s.enforce.stmts = m
	s.enforce.prepared = len(m) == len(sqliteStatements)
}

// ptx returns tx as a querier that runs prepared statements where it has them.
func (s *Store) ptx(tx *sql.Tx) querier {
	s.enforce.mu.Lock()
	m := s.enforce.stmts
	s.enforce.mu.Unlock()
	if len(m) == 0 {
		return tx
	}
	return preparedTx{tx: tx, stmts: m}
}

// preparedTx is a transaction that runs the statements it has prepared
// through them and any other statement as text.
type preparedTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (p preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st, ok := p.stmts[query]; ok {
		return p.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return p.tx.ExecContext(ctx, query, args...)
}

func (p preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st, ok := p.stmts[query]; ok {
		return p.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return p.tx.QueryContext(ctx, query, args...)
}

func (p preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := p.stmts[query]; ok {
		return p.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return p.tx.QueryRowContext(ctx, query, args...)
}
