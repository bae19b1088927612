package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// DefaultReservationTTL is the expiry of a reservation whose request gives
// no TTL.
const DefaultReservationTTL = 10 * time.Minute

// Reservation statuses as stored.
const (
	resOpen     = "open"
	resSettled  = "settled"
	resReleased = "released"
	resExpired  = "expired"
)

// txFunc is one unit of enforcement work inside a write transaction. It
// must use the ctx it is given, not its caller's.
type txFunc func(ctx context.Context, tx *sql.Tx) error

// writeTx runs fn in a write transaction and commits if fn returns nil.
//
// On SQLite, where there is one writer and every commit costs a WAL fsync,
// concurrent calls are grouped: the first caller becomes the leader, runs
// its own fn and every fn queued meanwhile (up to maxGroup) one after the
// other in one transaction, each inside its own SAVEPOINT so that one
// failure rolls back only its own work, and commits once for the group.
// No caller returns before the commit that holds its work is durable, and
// each fn sees the effects of the ones before it exactly as if they had
// committed separately, so the result is the same as serial transactions
// with fewer fsyncs. On PostgreSQL every call is its own transaction.
func (s *Store) writeTx(ctx context.Context, fn txFunc) error {
	if !s.sqlite() {
		return s.singleTx(ctx, fn)
	}
	return s.enforce.run(ctx, s, fn)
}

// sqlite reports whether the store is SQLite, where statements are cheap
// to run but costly to parse (so they are prepared once and kept one row
// each), unlike PostgreSQL, where every statement is a network round trip
// (so they are merged) and pgx caches prepared statements itself.
func (s *Store) sqlite() bool { return s.dialect.Name() == "sqlite" }

// singleTx runs fn in its own transaction. The deferred rollback also
// covers a panic in fn, so no transaction is ever left open.
func (s *Store) singleTx(ctx context.Context, fn txFunc) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(fmt.Errorf("begin: %w", err))
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return s.wrap(err)
	}
	committed = true // a failed commit has ended the transaction too
	if err := tx.Commit(); err != nil {
		return s.wrap(fmt.Errorf("commit: %w", err))
	}
	return nil
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
	// stmts are the prepared statements by query text. prepare replaces
	// the map, never changes it, so a reader may keep using one it got.
	stmts map[string]*sql.Stmt
	// prepared is set once every statement is prepared.
	prepared bool
}

// txOp is one queued call.
type txOp struct {
	ctx  context.Context
	fn   txFunc
	done chan error // receives the result, or errLead
}

// errLead tells a queued caller that it is now the leader.
var errLead = errors.New("lead the next group")

func (q *enforceState) run(ctx context.Context, s *Store, fn txFunc) error {
	op := &txOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	q.mu.Lock()
	if q.leading {
		q.queue = append(q.queue, op)
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
	q.mu.Lock()
	n := min(len(q.queue), maxGroup-1)
	group := append([]*txOp{op}, q.queue[:n]...)
	q.queue = q.queue[n:]
	q.mu.Unlock()

	errs := s.runGroup(group)
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

// runGroup runs the group's functions in one transaction and returns each
// one's result.
func (s *Store) runGroup(group []*txOp) []error {
	errs := make([]error, len(group))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
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
	for i, o := range group {
		if err := o.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		// Statements run without the caller's cancellation: interrupting a
		// statement could roll back the whole shared transaction.
		ctx := context.WithoutCancel(o.ctx)
		q := s.ptx(tx)
		if solo {
			if err := callTx(ctx, tx, o.fn); err != nil {
				errs[i] = s.wrap(err)
			} else {
				ran++
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
		return errs
	}
	if err := tx.Commit(); err != nil {
		return fail(s.wrap(fmt.Errorf("commit: %w", err)))
	}
	return errs
}

// sqliteStatements are the statements of the SQLite enforcement path,
// prepared once on the write connection: parsing dominated their cost.
var sqliteStatements = []string{
	`SAVEPOINT op`, `ROLLBACK TO op`, `RELEASE op`,
	enforceChainSQL, usageSumSQL, usageUpsertSQL, reservationInsertSQL, bucketInsertSQL,
	finishSQL, finishExpiredSQL, bucketsSelectSQL, eventInsertSQL, queueInsertSQL,
}

// prepare prepares sqliteStatements on the write connection until all of
// them are (a store opened before its schema was migrated cannot prepare
// them yet). It runs while the caller holds no connection, as the write
// pool has only one. A statement not prepared is simply run as text.
func (s *Store) prepare() {
	s.enforce.mu.Lock()
	defer s.enforce.mu.Unlock()
	if s.enforce.prepared {
		return
	}
	// Readers hold the old map without the lock, so build a new one.
	m := make(map[string]*sql.Stmt, len(sqliteStatements))
	for _, q := range sqliteStatements {
		if st, ok := s.enforce.stmts[q]; ok {
			m[q] = st
		} else if st, err := s.db.PrepareContext(context.Background(), q); err == nil {
			m[q] = st
		}
	}
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

// usageSumSQL sums one policy's usage buckets from a window start on.
const usageSumSQL = `SELECT CAST(COALESCE(SUM(spent_nanos), 0) AS BIGINT), CAST(COALESCE(SUM(reserved_nanos), 0) AS BIGINT)
	FROM usage WHERE policy_id = ? AND bucket_ns >= ?`

// fillUsage sets Spent and Reserved of every policy to the sum of its usage
// buckets that start at or after policy.WindowStart(p, now): one prepared
// query per policy on SQLite, one query for all on PostgreSQL.
func (s *Store) fillUsage(ctx context.Context, q querier, pols []policy.PolicyUsage, now time.Time) error {
	if len(pols) == 0 {
		return nil
	}
	starts := make([]int64, len(pols))
	for i, pu := range pols {
		ws, err := s.zones.WindowStart(pu.Policy, now)
		if err != nil {
			return fmt.Errorf("policy %s: window: %w", pu.Policy.ID, err)
		}
		starts[i] = ws.UnixNano()
	}
	if s.sqlite() {
		for i := range pols {
			var spent, reserved int64
			if err := q.QueryRowContext(ctx, usageSumSQL, pols[i].Policy.ID, starts[i]).Scan(&spent, &reserved); err != nil {
				return fmt.Errorf("read usage: %w", err)
			}
			pols[i].Spent, pols[i].Reserved = money.Amount(spent), money.Amount(reserved)
		}
		return nil
	}
	var b strings.Builder
	b.WriteString(`SELECT policy_id, CAST(SUM(spent_nanos) AS BIGINT), CAST(SUM(reserved_nanos) AS BIGINT) FROM usage WHERE `)
	args := make([]any, 0, 2*len(pols))
	idx := make(map[string]int, len(pols))
	for i, pu := range pols {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(policy_id = ? AND bucket_ns >= ?)")
		args = append(args, pu.Policy.ID, starts[i])
		idx[pu.Policy.ID] = i
	}
	b.WriteString(" GROUP BY policy_id")
	rows, err := q.QueryContext(ctx, s.q(b.String()), args...)
	if err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var spent, reserved int64
		if err := rows.Scan(&id, &spent, &reserved); err != nil {
			return fmt.Errorf("read usage: %w", err)
		}
		if i, ok := idx[id]; ok {
			pols[i].Spent = money.Amount(spent)
			pols[i].Reserved = money.Amount(reserved)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	return nil
}

// bucketMove is one usage row change.
type bucketMove struct {
	policyID string
	bucket   int64
	spent    int64
	reserved int64
}

// usageUpsertSQL adds to one usage row, creating it if missing.
const usageUpsertSQL = `INSERT INTO usage (policy_id, bucket_ns, spent_nanos, reserved_nanos) VALUES (?, ?, ?, ?)
	ON CONFLICT (policy_id, bucket_ns) DO UPDATE SET
	spent_nanos = usage.spent_nanos + excluded.spent_nanos,
	reserved_nanos = usage.reserved_nanos + excluded.reserved_nanos`

// usageValues returns the multi-row form of usageUpsertSQL for PostgreSQL
// and its arguments. PostgreSQL takes the row locks in VALUES order, so the
// moves must be sorted by policy ID: with the policies locked in that
// order too, concurrent reserves and settles never deadlock.
func usageValues(moves []bucketMove) (string, []any) {
	var b strings.Builder
	b.WriteString(`INSERT INTO usage (policy_id, bucket_ns, spent_nanos, reserved_nanos) VALUES `)
	args := make([]any, 0, 4*len(moves))
	for i, m := range moves {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?)")
		args = append(args, m.policyID, m.bucket, m.spent, m.reserved)
	}
	b.WriteString(` ON CONFLICT (policy_id, bucket_ns) DO UPDATE SET
		spent_nanos = usage.spent_nanos + excluded.spent_nanos,
		reserved_nanos = usage.reserved_nanos + excluded.reserved_nanos`)
	return b.String(), args
}

// applyUsage adds the moves (sorted by policy ID) to their usage rows,
// creating missing rows.
func (s *Store) applyUsage(ctx context.Context, q querier, moves []bucketMove) error {
	if len(moves) == 0 {
		return nil
	}
	if s.sqlite() {
		for _, m := range moves {
			if _, err := q.ExecContext(ctx, usageUpsertSQL, m.policyID, m.bucket, m.spent, m.reserved); err != nil {
				return fmt.Errorf("update usage: %w", err)
			}
		}
		return nil
	}
	query, args := usageValues(moves)
	if _, err := q.ExecContext(ctx, s.q(query), args...); err != nil {
		return fmt.Errorf("update usage: %w", err)
	}
	return nil
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

func validateReserve(r *ledger.ReserveRequest) error {
	switch {
	case r.RequestID == "":
		return fmt.Errorf("reserve: empty request id: %w", ledger.ErrInvalid)
	case r.AgentID == "":
		return fmt.Errorf("reserve: empty agent id: %w", ledger.ErrInvalid)
	case r.Resource == "":
		return fmt.Errorf("reserve: empty resource: %w", ledger.ErrInvalid)
	case r.Amount < 0:
		return fmt.Errorf("reserve: negative amount %s: %w", r.Amount, ledger.ErrInvalid)
	}
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	if r.TTL <= 0 {
		r.TTL = DefaultReservationTTL
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	return nil
}

// Reserve decides over the agent's whole chain and, if allowed, reserves
// the amount on every active policy of the chain, in one transaction:
//
//  1. read the chain (the agent first) and the active policies of every
//     agent on it;
//  2. lock those policies in policy-ID order (PostgreSQL: SELECT … FOR
//     UPDATE; SQLite write transactions are already exclusive), so
//     concurrent callers and processes serialise per policy and never
//     deadlock;
//  3. sum each policy's usage buckets inside its window and call
//     policy.Decide;
//  4. allowed: add the amount to the reserved column of each policy's
//     current bucket (policy.BucketStart) and insert the reservation with
//     the buckets it holds; denied: insert a denied event of amount zero.
//
// A chain without any active policy is refused with code no_budget unless
// r.AllowUnbudgeted, when the call is unmetered but still reserved, settled
// and recorded. An unknown agent is
// ledger.ErrNotFound; a request ID already reserved is ledger.ErrConflict.
// A policy edited while a reservation waits for its lock applies from the
// next reservation on.
func (s *Store) Reserve(ctx context.Context, r ledger.ReserveRequest) (policy.Decision, error) {
	if err := validateReserve(&r); err != nil {
		return policy.Decision{}, err
	}
	var d policy.Decision
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		q := s.ptx(tx)
		chain, pols, err := s.loadEnforceChain(ctx, q, r.AgentID)
		if err != nil {
			return err
		}
		ids := make([]string, len(pols))
		for i, p := range pols {
			ids[i] = p.Policy.ID
		}
		sort.Strings(ids)
		if len(ids) > 0 {
			if err := s.dialect.LockPolicies(ctx, tx, ids); err != nil {
				return err
			}
		}
		if err := s.fillUsage(ctx, q, pols, r.Now); err != nil {
			return err
		}
		d = policy.Decide(&policy.Request{Chain: chain, Policies: pols, Resource: r.Resource, Price: r.Amount, Currency: r.Currency, AllowUnbudgeted: r.AllowUnbudgeted})
		cids := chainIDs(chain)
		if !d.Allow {
			return s.insertEvent(ctx, q, &ledger.Event{
				Time: r.Now, AgentID: chain[0].ID, AgentName: chain[0].Name, Chain: cids,
				Resource: r.Resource, Operation: r.Operation, Quantity: r.Quantity, Unit: r.Unit,
				Currency: r.Currency, RequestID: r.RequestID, Outcome: policy.OutcomeDenied,
				Code: d.Code, Reason: d.Reason, Upstream: r.Upstream, Unpriced: r.Unpriced,
			})
		}
		moves := make([]bucketMove, 0, len(pols))
		for _, pu := range pols {
			bs, err := s.zones.BucketStart(pu.Policy, r.Now)
			if err != nil {
				return fmt.Errorf("policy %s: bucket: %w", pu.Policy.ID, err)
			}
			moves = append(moves, bucketMove{policyID: pu.Policy.ID, bucket: bs.UnixNano(), reserved: int64(r.Amount)})
		}
		sort.Slice(moves, func(i, j int) bool { return moves[i].policyID < moves[j].policyID })
		resArgs := []any{r.RequestID, chain[0].ID, encodeChain(cids), r.Resource, r.Operation, r.Upstream, int64(r.Amount), r.Currency,
			r.Unpriced, r.Quantity, r.Unit, resOpen, r.Now.UnixNano(), r.Now.Add(r.TTL).UnixNano()}
		if err := s.insertReservation(ctx, q, r.RequestID, moves, resArgs); err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return fmt.Errorf("request %q is already reserved: %w", r.RequestID, ledger.ErrConflict)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return policy.Decision{}, fmt.Errorf("reserve %s: %w", r.RequestID, err)
	}
	return d, nil
}

// Statements that record a reservation.
const (
	reservationInsertSQL = `INSERT INTO reservations
		(request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit, status, created_ns, expires_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	bucketInsertSQL = `INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) VALUES (?, ?, ?)`
)

// insertReservation adds the reserved amounts to the usage rows and
// inserts the reservation and the buckets it holds: statement by statement
// on SQLite, in one statement on PostgreSQL, whose data-modifying WITH
// clauses all run to completion.
func (s *Store) insertReservation(ctx context.Context, q querier, requestID string, moves []bucketMove, resArgs []any) error {
	if s.sqlite() {
		if err := s.applyUsage(ctx, q, moves); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, reservationInsertSQL, resArgs...); err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		}
		for _, m := range moves {
			if _, err := q.ExecContext(ctx, bucketInsertSQL, requestID, m.policyID, m.bucket); err != nil {
				return fmt.Errorf("insert reservation bucket: %w", err)
			}
		}
		return nil
	}
	if len(moves) == 0 {
		if _, err := q.ExecContext(ctx, s.q(reservationInsertSQL), resArgs...); err != nil {
			return fmt.Errorf("insert reservation: %w", err)
		}
		return nil
	}
	usage, args := usageValues(moves)
	var b strings.Builder
	b.WriteString(`WITH u AS (` + usage + `), r AS (` + reservationInsertSQL + `) INSERT INTO reservation_buckets (request_id, policy_id, bucket_ns) VALUES `)
	args = append(args, resArgs...)
	for i, m := range moves {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?)")
		args = append(args, requestID, m.policyID, m.bucket)
	}
	if _, err := q.ExecContext(ctx, s.q(b.String()), args...); err != nil {
		return fmt.Errorf("insert reservation: %w", err)
	}
	return nil
}

// RecordDenial records a denial decided outside the store (for example an
// unpriced resource under strict pricing) as a denied event of amount zero,
// so the audit trail shows every decision. It reserves nothing.
func (s *Store) RecordDenial(ctx context.Context, r ledger.ReserveRequest, d policy.Decision) (ledger.Event, error) {
	if r.RequestID == "" || r.AgentID == "" {
		return ledger.Event{}, fmt.Errorf("record denial: empty request or agent id: %w", ledger.ErrInvalid)
	}
	if r.Currency == "" {
		r.Currency = money.DefaultCurrency
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	var ev ledger.Event
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		q := s.ptx(tx)
		chain, _, err := s.loadEnforceChain(ctx, q, r.AgentID)
		if err != nil {
			return err
		}
		ev = ledger.Event{
			Time: r.Now, AgentID: chain[0].ID, AgentName: chain[0].Name, Chain: chainIDs(chain),
			Resource: r.Resource, Operation: r.Operation, Quantity: r.Quantity, Unit: r.Unit,
			Currency: r.Currency, RequestID: r.RequestID, Outcome: policy.OutcomeDenied,
			Code: d.Code, Reason: d.Reason, Upstream: r.Upstream, Unpriced: r.Unpriced,
		}
		return s.insertEvent(ctx, q, &ev)
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("record denial %s: %w", r.RequestID, err)
	}
	return ev, nil
}

// finish is one way a reservation ends.
type finish struct {
	requestID string
	status    string // settled, released or expired
	outcome   policy.Outcome
	// amount is the charge; nil charges the reserved amount.
	amount   *money.Amount
	tokens   policy.Tokens
	quantity string
	unit     string
	code     policy.Code
	reason   string
	now      time.Time
	// onlyIfExpired makes the finish a no-op unless the reservation is still
	// open and expired at now (the sweep must not race a late settlement).
	onlyIfExpired bool
}

// errNotOpen is returned by finishTx when the reservation is already
// finished; the caller then returns the first event.
var errNotOpen = errors.New("reservation is not open")

// Statements that finish a reservation on SQLite. The conditional UPDATE
// makes the finish happen exactly once: a second finisher finds no open row.
const (
	finishSQL = `UPDATE reservations SET status = ?, event_id = ?
		WHERE request_id = ? AND status = 'open'
		RETURNING agent_id, (SELECT name FROM agents WHERE agents.id = reservations.agent_id),
		chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit`
	finishExpiredSQL = `UPDATE reservations SET status = ?, event_id = ?
		WHERE request_id = ? AND status = 'open' AND expires_ns <= ?
		RETURNING agent_id, (SELECT name FROM agents WHERE agents.id = reservations.agent_id),
		chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit`
	bucketsSelectSQL = `SELECT policy_id, bucket_ns FROM reservation_buckets WHERE request_id = ? ORDER BY policy_id`
)

// event returns the event that f records for a reservation whose stored
// fields ev already holds, with its charge: f.amount, or the reserved
// amount when nil, or zero for a release.
func (f finish) event(ev ledger.Event, evID string, reserved money.Amount) ledger.Event {
	charge := reserved
	if f.amount != nil {
		charge = *f.amount
	}
	if f.status == resReleased {
		charge = 0
	}
	ev.ID = evID
	ev.Seq = -1
	ev.Time = f.now.UTC()
	ev.Amount = charge
	ev.RequestID = f.requestID
	ev.Outcome = f.outcome
	ev.Code = f.code
	ev.Reason = f.reason
	ev.Tokens = f.tokens
	if f.quantity != "" {
		ev.Quantity = f.quantity
	}
	if f.unit != "" {
		ev.Unit = f.unit
	}
	return ev
}

// finishTx ends an open reservation inside tx (SQLite): it marks the
// reservation finished, moves the reserved amount out of exactly the
// buckets it was reserved in (spending the charge there), and records the
// event. It returns errNotOpen if the reservation is not open (or, for the
// sweep, not yet expired).
func (s *Store) finishTx(ctx context.Context, tx *sql.Tx, f finish) (ledger.Event, error) {
	q := s.ptx(tx)
	evID := uuid.NewString()
	query, args := finishSQL, []any{f.status, evID, f.requestID}
	if f.onlyIfExpired {
		query, args = finishExpiredSQL, append(args, f.now.UnixNano())
	}
	var (
		ev       ledger.Event
		chain    string
		reserved int64
	)
	err := q.QueryRowContext(ctx, s.q(query), args...).Scan(&ev.AgentID, &ev.AgentName, &chain, &ev.Resource, &ev.Operation,
		&ev.Upstream, &reserved, &ev.Currency, &ev.Unpriced, &ev.Quantity, &ev.Unit)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, errNotOpen
	}
	if err != nil {
		return ledger.Event{}, fmt.Errorf("finish reservation: %w", err)
	}
	if ev.Chain, err = decodeChain(chain); err != nil {
		return ledger.Event{}, err
	}
	ev = f.event(ev, evID, money.Amount(reserved))
	rows, err := q.QueryContext(ctx, s.q(bucketsSelectSQL), f.requestID)
	if err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	var moves []bucketMove
	for rows.Next() {
		m := bucketMove{spent: int64(ev.Amount), reserved: -reserved}
		if err := rows.Scan(&m.policyID, &m.bucket); err != nil {
			rows.Close()
			return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
		}
		moves = append(moves, m)
	}
	if err := rows.Close(); err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	if err := rows.Err(); err != nil {
		return ledger.Event{}, fmt.Errorf("read reservation buckets: %w", err)
	}
	if err := s.applyUsage(ctx, q, moves); err != nil {
		return ledger.Event{}, err
	}
	if err := s.insertEvent(ctx, q, &ev); err != nil {
		return ledger.Event{}, err
	}
	return ev, nil
}

// pgFinishSQL finishes a reservation on PostgreSQL in one statement, so in
// one round trip and its own implicit transaction: the UPDATE marks the
// reservation finished (it locks the row; a concurrent finisher waits,
// then finds it no longer open and gets no row), the usage rows of its
// buckets move from reserved to spent (inserted in policy-ID order, so row
// locks are taken in the same order as everywhere else), and the event and
// its integration_queue entry are inserted. Every data-modifying WITH
// clause runs to completion whether or not the outer SELECT reads it.
// Placeholders: status, event id, request id, expiry bound (NULL for no
// bound), charge (NULL for the reserved amount), release flag, time,
// quantity, unit, outcome, code, reason, five token counts, queued time.
const pgFinishSQL = `WITH r AS (
	UPDATE reservations SET status = ?, event_id = ?
	WHERE request_id = ? AND status = 'open' AND (CAST(? AS BIGINT) IS NULL OR expires_ns <= CAST(? AS BIGINT))
	RETURNING event_id, request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, unpriced, quantity, unit
), c AS (
	SELECT CASE WHEN CAST(? AS BOOLEAN) THEN 0 ELSE COALESCE(CAST(? AS BIGINT), r.amount_nanos) END AS charge, r.amount_nanos AS reserved FROM r
), u AS (
	INSERT INTO usage (policy_id, bucket_ns, spent_nanos, reserved_nanos)
	SELECT b.policy_id, b.bucket_ns, c.charge, -c.reserved
	FROM reservation_buckets b JOIN r ON b.request_id = r.request_id CROSS JOIN c
	ORDER BY b.policy_id
	ON CONFLICT (policy_id, bucket_ns) DO UPDATE SET
	spent_nanos = usage.spent_nanos + excluded.spent_nanos,
	reserved_nanos = usage.reserved_nanos + excluded.reserved_nanos
), e AS (
	INSERT INTO events
	(id, time_ns, agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency,
	 request_id, outcome, code, reason, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
	 upstream, unpriced)
	SELECT r.event_id, CAST(? AS BIGINT), r.agent_id, (SELECT name FROM agents a WHERE a.id = r.agent_id), r.chain, r.resource, r.operation,
	 COALESCE(NULLIF(CAST(? AS TEXT), ''), r.quantity), COALESCE(NULLIF(CAST(? AS TEXT), ''), r.unit), c.charge, r.currency,
	 r.request_id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT),
	 CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), r.upstream, r.unpriced
	FROM r CROSS JOIN c
	RETURNING pk, id, agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency, upstream, unpriced
), q AS (
	INSERT INTO integration_queue (event_pk, event_id, queued_ns) SELECT pk, id, CAST(? AS BIGINT) FROM e
)
SELECT agent_id, agent_name, chain, resource, operation, quantity, unit, amount_nanos, currency, upstream, unpriced FROM e`

// finishPG is finishTx for PostgreSQL, in one statement (pgFinishSQL).
func (s *Store) finishPG(ctx context.Context, f finish) (ledger.Event, error) {
	evID := uuid.NewString()
	var bound, charge sql.NullInt64
	if f.onlyIfExpired {
		bound = sql.NullInt64{Int64: f.now.UnixNano(), Valid: true}
	}
	if f.amount != nil {
		charge = sql.NullInt64{Int64: int64(*f.amount), Valid: true}
	}
	// The event returned is built from the row the database wrote, so it
	// is exactly what GetEvent reads back.
	ev := f.event(ledger.Event{}, evID, 0)
	var (
		chain  string
		amount int64
	)
	err := s.db.QueryRowContext(ctx, s.q(pgFinishSQL),
		f.status, evID, f.requestID, bound, bound, f.status == resReleased, charge,
		ev.Time.UnixNano(), f.quantity, f.unit, string(f.outcome), string(f.code), f.reason,
		f.tokens.Input, f.tokens.Output, f.tokens.CachedRead, f.tokens.CacheWrite, f.tokens.Reasoning,
		time.Now().UnixNano()).
		Scan(&ev.AgentID, &ev.AgentName, &chain, &ev.Resource, &ev.Operation, &ev.Quantity, &ev.Unit, &amount, &ev.Currency, &ev.Upstream, &ev.Unpriced)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, errNotOpen
	}
	if err != nil {
		return ledger.Event{}, s.wrap(fmt.Errorf("finish reservation: %w", err))
	}
	if ev.Chain, err = decodeChain(chain); err != nil {
		return ledger.Event{}, err
	}
	ev.Amount = money.Amount(amount)
	return ev, nil
}

// finishOnce ends a reservation in its own transaction, or returns
// errNotOpen.
func (s *Store) finishOnce(ctx context.Context, f finish) (ledger.Event, error) {
	if !s.sqlite() {
		return s.finishPG(ctx, f)
	}
	var ev ledger.Event
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		ev, err = s.finishTx(ctx, tx, f)
		return err
	})
	return ev, err
}

// finish runs finishTx in its own transaction. If the reservation was
// already finished it returns the event of the first finish; an unknown
// request ID is ledger.ErrNotFound.
func (s *Store) finish(ctx context.Context, f finish) (ledger.Event, error) {
	ev, err := s.finishOnce(ctx, f)
	if errors.Is(err, errNotOpen) {
		return s.firstEvent(ctx, f.requestID)
	}
	if err != nil {
		return ledger.Event{}, err
	}
	return ev, nil
}

// firstEvent returns the event that finished a reservation.
func (s *Store) firstEvent(ctx context.Context, requestID string) (ledger.Event, error) {
	var status string
	var evID sql.NullString
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT status, event_id FROM reservations WHERE request_id = ?`), requestID).Scan(&status, &evID)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Event{}, fmt.Errorf("reservation %q: %w", requestID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Event{}, s.wrap(fmt.Errorf("read reservation %s: %w", requestID, err))
	}
	if !evID.Valid {
		// A finished reservation always names its event; this one is not finished.
		return ledger.Event{}, fmt.Errorf("reservation %q is still %s: %w", requestID, status, errNotOpen)
	}
	return s.getEvent(ctx, s.rdb, evID.String)
}

// Settle replaces the reservation with the actual amount: the reserved
// amount leaves every bucket it was reserved in and r.Amount is spent in
// those same buckets (even if settlement happens after the window turned),
// the reservation is marked settled and a charged or unconfirmed event is
// recorded, in one transaction. Settling again, or settling a released or
// expired reservation, returns the first event unchanged.
func (s *Store) Settle(ctx context.Context, r ledger.SettleRequest) (ledger.Event, error) {
	if r.RequestID == "" {
		return ledger.Event{}, fmt.Errorf("settle: empty request id: %w", ledger.ErrInvalid)
	}
	if r.Amount < 0 {
		return ledger.Event{}, fmt.Errorf("settle %s: negative amount %s: %w", r.RequestID, r.Amount, ledger.ErrInvalid)
	}
	switch r.Outcome {
	case "":
		r.Outcome = policy.OutcomeCharged
	case policy.OutcomeCharged, policy.OutcomeUnconfirmed:
	default:
		return ledger.Event{}, fmt.Errorf("settle %s: outcome %q: want charged or unconfirmed: %w", r.RequestID, r.Outcome, ledger.ErrInvalid)
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	amt := r.Amount
	ev, err := s.finish(ctx, finish{
		requestID: r.RequestID, status: resSettled, outcome: r.Outcome, amount: &amt, code: r.Code,
		tokens: r.Tokens, quantity: r.Quantity, unit: r.Unit, reason: r.Reason, now: r.Now,
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("settle %s: %w", r.RequestID, err)
	}
	return ev, nil
}

// Release frees a reservation whose call never ran: the reserved amount
// leaves its buckets and a refunded event of amount zero is recorded.
// Releasing again, or releasing a settled reservation, returns the first
// event.
func (s *Store) Release(ctx context.Context, requestID, reason string) (ledger.Event, error) {
	if requestID == "" {
		return ledger.Event{}, fmt.Errorf("release: empty request id: %w", ledger.ErrInvalid)
	}
	ev, err := s.finish(ctx, finish{
		requestID: requestID, status: resReleased, outcome: policy.OutcomeRefunded,
		reason: reason, now: time.Now(),
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("release %s: %w", requestID, err)
	}
	return ev, nil
}

// expireBatch bounds how many expired reservations one sweep query lists.
const expireBatch = 500

// ExpireReservations settles every open reservation with expires_ns ≤ now
// as an unconfirmed charge of the full reserved amount (an outcome that is
// unknown is never silently refunded), each in its own transaction, and
// returns how many it settled. A reservation settled concurrently by its
// caller is left to that settlement.
func (s *Store) ExpireReservations(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for {
		rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT request_id FROM reservations WHERE status = ? AND expires_ns <= ? ORDER BY expires_ns LIMIT ?`),
			resOpen, now.UnixNano(), expireBatch)
		if err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		if err := rows.Err(); err != nil {
			return n, s.wrap(fmt.Errorf("list expired reservations: %w", err))
		}
		done := 0
		for _, id := range ids {
			_, err := s.finishOnce(ctx, finish{
				requestID: id, status: resExpired, outcome: policy.OutcomeUnconfirmed,
				reason: "reservation expired with its outcome unknown", now: now, onlyIfExpired: true,
			})
			if errors.Is(err, errNotOpen) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("expire %s: %w", id, err)
			}
			n++
			done++
		}
		if len(ids) < expireBatch || done == 0 {
			return n, nil
		}
	}
}

// GetReservation reads a reservation by request ID.
func (s *Store) GetReservation(ctx context.Context, requestID string) (ledger.Reservation, error) {
	var (
		r                 ledger.Reservation
		chain             string
		amount, cns, exns int64
	)
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT request_id, agent_id, chain, resource, operation, upstream, amount_nanos, currency, status, created_ns, expires_ns
		FROM reservations WHERE request_id = ?`), requestID).
		Scan(&r.RequestID, &r.AgentID, &chain, &r.Resource, &r.Operation, &r.Upstream, &amount, &r.Currency, &r.Status, &cns, &exns)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Reservation{}, fmt.Errorf("reservation %q: %w", requestID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Reservation{}, s.wrap(fmt.Errorf("read reservation %s: %w", requestID, err))
	}
	if r.Chain, err = decodeChain(chain); err != nil {
		return ledger.Reservation{}, err
	}
	r.Amount = money.Amount(amount)
	r.CreatedAt = time.Unix(0, cns).UTC()
	r.ExpiresAt = time.Unix(0, exns).UTC()
	return r, nil
}

// Usage returns every active policy on the agent's chain (the agent's own
// first, then each ancestor's, by policy ID within an agent) with its spent
// and reserved amounts in the window that applies at now.
func (s *Store) Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error) {
	if now.IsZero() {
		now = time.Now()
	}
	_, pols, err := s.loadEnforceChain(ctx, s.rdb, agentID)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("usage: %w", err))
	}
	if err := s.fillUsage(ctx, s.rdb, pols, now); err != nil {
		return nil, s.wrap(fmt.Errorf("usage: %w", err))
	}
	if pols == nil {
		pols = []policy.PolicyUsage{}
	}
	return pols, nil
}
