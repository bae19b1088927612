package sqlstore

import (
	"context"
	"fmt"
)

// OpenReservations counts the reservations still open, for metrics. The
// partial index reservations_open (of open reservations only) answers it;
// the condition must stay the literal status = 'open' for that.
func (s *Store) OpenReservations(ctx context.Context) (int64, error) {
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM reservations WHERE status = 'open'`).Scan(&n); err != nil {
		return 0, s.wrap(fmt.Errorf("count open reservations: %w", err))
	}
	return n, nil
}
