package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

// heldUsageSQL sums one policy's reservations still inside their
// holders' leases from a window start on: open ones as reserved, finished
// ones (not yet folded into usage) as spent, up to the reserved amount (an
// overrun's excess is in usage already).
const heldUsageSQL = `SELECT CAST(COALESCE(SUM(CASE WHEN r.status = 'open' THEN 0
		ELSE ` + foldCoveredSQL + ` END), 0) AS BIGINT) AS spent,
	CAST(COALESCE(SUM(CASE WHEN r.status = 'open' THEN r.amount_nanos ELSE 0 END), 0) AS BIGINT) AS reserved
	FROM reservations r JOIN reservation_buckets b ON b.request_id = r.request_id
	WHERE r.holder > '' AND b.policy_id = ? AND b.bucket_ns >= ?`

// windowUsageSQL is one policy's spent and reserved from a window start
// on: its usage rows plus what heldUsageSQL finds inside leases. It is one
// statement so that both parts are read in one snapshot: a sync folding a
// charge from its lease into the usage rows between two reads would
// otherwise hide the charge, or count it twice. Placeholders: policy ID
// and window start, three times.
const windowUsageSQL = `SELECT
	CAST(COALESCE((SELECT SUM(spent_nanos) FROM usage WHERE policy_id = ? AND bucket_ns >= ?), 0) AS BIGINT) + h.spent,
	CAST(COALESCE((SELECT SUM(reserved_nanos) FROM usage WHERE policy_id = ? AND bucket_ns >= ?), 0) AS BIGINT) + h.reserved
	FROM (` + heldUsageSQL + `) h`

// fillUsage sets Spent and Reserved of every policy to what is spent and
// reserved in its window (buckets that start at or after
// policy.WindowStart(p, now)): the usage rows, plus what is still inside
// leases, so the figures are exact whenever they are read. Headroom a
// lease holds but has not used is neither.
func (s *Store) fillUsage(ctx context.Context, q querier, pols []policy.PolicyUsage, now time.Time) error {
	for i := range pols {
		ws, err := s.zones.WindowStart(pols[i].Policy, now)
		if err != nil {
			return fmt.Errorf("policy %s: window: %w", pols[i].Policy.ID, err)
		}
		id, start := pols[i].Policy.ID, ws.UnixNano()
		var spent, reserved int64
		if err := q.QueryRowContext(ctx, s.q(windowUsageSQL), id, start, id, start, id, start).Scan(&spent, &reserved); err != nil {
			return fmt.Errorf("read usage: %w", err)
		}
		pols[i].Spent, pols[i].Reserved = money.Amount(spent), money.Amount(reserved)
	}
	return nil
}

// bucketMove is one usage row change: each amount is added to its column
// (leased to leased_nanos, the headroom held by leases).
type bucketMove struct {
	policyID string
	bucket   int64
	spent    int64
	reserved int64
	leased   int64
}

// usageUpsertSQL adds to one usage row, creating it if missing.
const usageUpsertSQL = usageInsert + `(?, ?, ?, ?, ?)` + usageAdd

const (
	usageInsert = `INSERT INTO usage (policy_id, bucket_ns, spent_nanos, reserved_nanos, leased_nanos) VALUES `
	usageAdd    = ` ON CONFLICT (policy_id, bucket_ns) DO UPDATE SET
	spent_nanos = usage.spent_nanos + excluded.spent_nanos,
	reserved_nanos = usage.reserved_nanos + excluded.reserved_nanos,
	leased_nanos = usage.leased_nanos + excluded.leased_nanos`
)

// usageValues returns the multi-row form of usageUpsertSQL for PostgreSQL
// and its arguments. PostgreSQL takes the row locks in VALUES order, so the
// moves must be sorted by policy ID: with the policies locked in that
// order too, concurrent reserves and settles never deadlock. A statement
// may change a row only once, so no two moves may share a bucket.
func usageValues(moves []bucketMove) (string, []any) {
	var b strings.Builder
	b.WriteString(usageInsert)
	args := make([]any, 0, 5*len(moves))
	for i, m := range moves {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, m.policyID, m.bucket, m.spent, m.reserved, m.leased)
	}
	b.WriteString(usageAdd)
	return b.String(), args
}

// applyUsage adds the moves (sorted by policy ID) to their usage rows,
// creating missing rows.
func (s *Store) applyUsage(ctx context.Context, q querier, moves []bucketMove) error {
	if len(moves) == 0 {
		return nil
	}
	if !s.dialect.MergeStatements() {
		for _, m := range moves {
			if _, err := q.ExecContext(ctx, usageUpsertSQL, m.policyID, m.bucket, m.spent, m.reserved, m.leased); err != nil {
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
