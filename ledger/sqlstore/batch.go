package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// txFunc is one unit of enforcement work inside a write transaction. It
// must use the ctx it is given, not its caller's.
type txFunc func(ctx context.Context, tx *sql.Tx) error

// writeTx runs fn in a write transaction and commits if fn returns nil.
//
// On SQLite, where there is one writer and every commit costs a WAL fsync,
// concurrent calls are grouped: the first caller becomes the leader, runs
// its own fn and every fn queued meanwhile, or while the group runs (up to
// maxGroup), one after the other in one transaction, each inside its own SAVEPOINT so that one
// failure rolls back only its own work, and commits once for the group.
// No caller returns before the commit that holds its work is durable, and
// each fn sees the effects of the ones before it exactly as if they had
// committed separately, so the result is the same as serial transactions
// with fewer fsyncs. On PostgreSQL every call is its own transaction.
func (s *Store) writeTx(ctx context.Context, fn txFunc) error {
	if !s.dialect.GroupCommit() {
		return s.tx(ctx, func(tx *sql.Tx) error { return fn(ctx, tx) })
	}
	return s.enforce.run(ctx, s, fn, false)
}

// appendFunc is an append's work (see appendTx), on the querier it is
// given, using the ctx it is given.
type appendFunc func(ctx context.Context, q querier) error

// appendTx runs an append: fn either fails having written nothing,
// returning an error that wraps nothingWritten, or writes statements that
// cannot fail but for the database itself failing. On SQLite such a call
// joins a group (see writeTx) without a savepoint of its own; any other
// failure of it fails the whole group. Where statements are merged
// (PostgreSQL) an append writes in a single statement, which is atomic
// and durable on its own, so fn runs on the pool without a transaction:
// no BEGIN and COMMIT round trips.
func (s *Store) appendTx(ctx context.Context, fn appendFunc) error {
	if !s.dialect.GroupCommit() {
		if s.dialect.MergeStatements() {
			return s.wrap(fn(ctx, s.db))
		}
		return s.tx(ctx, func(tx *sql.Tx) error { return fn(ctx, tx) })
	}
	return s.enforce.run(ctx, s, func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, s.ptx(tx)) }, true)
}

// lingerFor is how long an append no one waits on (lingerTx) may hold
// its group's commit for a reservation to share it. At one call at a
// time, a call's settlement and the next call's reservation then cost
// one fsync, not two, and the reservation does not wait behind a commit
// of the settlement alone.
const lingerFor = time.Millisecond

// lingerTx is appendTx for an append whose caller does not wait on it:
// a group made only of such appends waits up to lingerFor, or until an
// append someone waits on arrives, before it commits.
func (s *Store) lingerTx(ctx context.Context, fn appendFunc) error {
	if !s.dialect.GroupCommit() {
		return s.appendTx(ctx, fn)
	}
	run := func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, s.ptx(tx)) }
	return s.enforce.runOp(ctx, s, &txOp{ctx: ctx, fn: run, append: true, linger: true, done: make(chan error, 1)})
}

// maxGroup bounds how many calls share one SQLite commit, so a leader
// under a steady stream of callers hands over and returns.
const maxGroup = 64

// enforceState groups SQLite write transactions and keeps the enforcement
// statements prepared on the write connection; its zero value is ready.
type enforceState struct {
	mu      sync.Mutex
	leading bool
	queue   []*txOp
	// wake tells a lingering leader that an append someone waits on has
	// been queued.
	wake chan struct{}
	// stmts are the prepared statements by query text. prepare replaces
	// the map, never changes it, so a reader may keep using one it got.
	stmts map[string]*sql.Stmt
	// prepared is set once every statement is prepared.
	prepared bool
	// preparing is held by the one call of prepare at work.
	preparing sync.Mutex
}

// txOp is one queued call.
type txOp struct {
	ctx context.Context
	fn  txFunc
	// appends need no savepoint (see appendTx).
	append bool
	// linger: no one waits on it (see lingerTx).
	linger bool
	done   chan error // receives the result, or errLead
}

// errLead tells a queued caller that it is now the leader.
var errLead = errors.New("lead the next group")

func (q *enforceState) run(ctx context.Context, s *Store, fn txFunc, appendOnly bool) error {
	return q.runOp(ctx, s, &txOp{ctx: ctx, fn: fn, append: appendOnly, done: make(chan error, 1)})
}

func (q *enforceState) runOp(ctx context.Context, s *Store, op *txOp) error {
	q.mu.Lock()
	if q.wake == nil {
		q.wake = make(chan struct{}, 1)
	}
	if q.leading {
		q.queue = append(q.queue, op)
		if !op.linger {
			select {
			case q.wake <- struct{}{}:
			default:
			}
		}
		q.mu.Unlock()
		// A queued call waits for its group's commit even if its context
		// ends meanwhile: its work may already be in the transaction.
		if err := <-op.done; err != errLead {
			return err
		}
	} else {
		q.leading = true
		q.mu.Unlock()
	}
	// Leading: this call's group is op and whatever queued behind it.
	q.lingerIfAlone(op)
	q.mu.Lock()
	n := min(len(q.queue), maxGroup-1)
	group := append([]*txOp{op}, q.queue[:n]...)
	q.queue = q.queue[n:]
	q.mu.Unlock()

	group, errs := s.runGroup(group)
	for i, o := range group[1:] {
		o.done <- errs[i+1]
	}
	q.mu.Lock()
	if len(q.queue) == 0 {
		q.leading = false
	} else {
		next := q.queue[0]
		q.queue = q.queue[1:]
		next.done <- errLead
	}
	q.mu.Unlock()
	return errs[0]
}

// lingerIfAlone waits up to lingerFor, or until an append someone waits on
// is queued, when op and everything queued behind it linger.
func (q *enforceState) lingerIfAlone(op *txOp) {
	if !op.linger {
		return
	}
	q.mu.Lock()
	for _, o := range q.queue {
		if !o.linger {
			q.mu.Unlock()
			return
		}
	}
	// A stale wake-up from an earlier group must not end this wait.
	select {
	case <-q.wake:
	default:
	}
	q.mu.Unlock()
	t := time.NewTimer(lingerFor)
	defer t.Stop()
	select {
	case <-q.wake:
	case <-t.C:
	}
}

// takeQueued removes up to n queued calls from the queue and returns them.
func (q *enforceState) takeQueued(n int) []*txOp {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.queue))
	out := append([]*txOp(nil), q.queue[:n]...)
	q.queue = q.queue[n:]
	return out
}

// runGroup runs the group's functions in one transaction and returns the
// group and each one's result. Calls that queued while the group ran join
// it before the commit (up to maxGroup in all): the commit, whose WAL
// fsync no other write can overlap, is then shared by more calls.
func (s *Store) runGroup(group []*txOp) ([]*txOp, []error) {
	errs := make([]error, len(group))
	fail := func(err error) ([]*txOp, []error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return group, errs
	}
	s.prepare()
	// The transaction outlives any one caller's context.
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		return fail(s.wrap(fmt.Errorf("begin: %w", err)))
	}
	ran := 0
	// A group of one needs no savepoint: its failure rolls back the whole
	// transaction.
	solo := len(group) == 1
	for i := 0; ; i++ {
		if i == len(group) {
			// A lone call that failed is rolled back whole (it ran
			// without a savepoint), so nothing may join it.
			if len(group) == maxGroup || (solo && errs[0] != nil) {
				break
			}
			more := s.enforce.takeQueued(maxGroup - len(group))
			if len(more) == 0 {
				break
			}
			group = append(group, more...)
			errs = append(errs, make([]error, len(more))...)
		}
		o := group[i]
		if err := o.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		// Statements run without the caller's cancellation: interrupting a
		// statement could roll back the whole shared transaction.
		ctx := context.WithoutCancel(o.ctx)
		q := s.ptx(tx)
		// Only a group's first call can be alone: calls that join later
		// run with the savepoints of a group.
		alone := solo && i == 0
		if alone || o.append {
			err := callTx(ctx, tx, o.fn)
			var nw nothingWritten
			switch {
			case err == nil:
				ran++
			case alone || errors.As(err, &nw):
				errs[i] = s.wrap(err)
			default:
				// An append that failed part-way: nothing of the group
				// may commit.
				_ = tx.Rollback()
				return fail(s.wrap(err))
			}
			continue
		}
		if _, err := q.ExecContext(ctx, `SAVEPOINT op`); err != nil {
			_ = tx.Rollback()
			return fail(s.wrap(fmt.Errorf("savepoint: %w", err)))
		}
		if err := callTx(ctx, tx, o.fn); err != nil {
			errs[i] = s.wrap(err)
			if _, rerr := q.ExecContext(ctx, `ROLLBACK TO op`); rerr != nil {
				_ = tx.Rollback()
				return fail(s.wrap(fmt.Errorf("rollback to savepoint: %w", rerr)))
			}
		} else {
			ran++
		}
		if _, err := q.ExecContext(ctx, `RELEASE op`); err != nil {
			_ = tx.Rollback()
			return fail(s.wrap(fmt.Errorf("release savepoint: %w", err)))
		}
	}
	if ran == 0 {
		_ = tx.Rollback()
		return group, errs
	}
	if err := tx.Commit(); err != nil {
		return fail(s.wrap(fmt.Errorf("commit: %w", err)))
	}
	return group, errs
}

// callTx runs fn, turning a panic into an error so that one bad call
// cannot strand the others in its group.
func callTx(ctx context.Context, tx *sql.Tx, fn txFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in write transaction: %v", p)
		}
	}()
	return fn(ctx, tx)
}
