package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

// TreeSize implements ledger.Merkle.
func (s *Store) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM leaves`).Scan(&n); err != nil {
		return 0, s.wrap(fmt.Errorf("read tree size: %w", err))
	}
	return n, nil
}

// ReadHashes implements ledger.Merkle and merkle.HashStore. Runs of
// consecutive indexes are read with one range query each, which is what
// proofs and verification mostly ask for.
func (s *Store) ReadHashes(ctx context.Context, indexes []int64) ([][32]byte, error) {
	hs, err := s.readHashes(ctx, s.rdb, indexes)
	if err != nil {
		return nil, s.wrap(err)
	}
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out, nil
}

func (s *Store) readHashes(ctx context.Context, q querier, indexes []int64) ([]tlog.Hash, error) {
	got := make(map[int64]tlog.Hash, len(indexes))
	scan := func(query string, args ...any) error {
		rows, err := q.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return fmt.Errorf("read stored hashes: %w", err)
		}
		defer rows.Close()
		var idx int64
		var h []byte
		for rows.Next() {
			if err := rows.Scan(&idx, &h); err != nil {
				return fmt.Errorf("read stored hashes: %w", err)
			}
			if len(h) != tlog.HashSize {
				return fmt.Errorf("stored hash %d is %d bytes, not %d", idx, len(h), tlog.HashSize)
			}
			got[idx] = tlog.Hash(h)
		}
		return rows.Err()
	}
	var singles []any
	for i := 0; i < len(indexes); {
		j := i + 1
		for j < len(indexes) && indexes[j] == indexes[j-1]+1 {
			j++
		}
		if j-i >= 4 {
			if err := scan(`SELECT idx, hash FROM merkle_hashes WHERE idx >= ? AND idx <= ?`, indexes[i], indexes[j-1]); err != nil {
				return nil, err
			}
		} else {
			for _, x := range indexes[i:j] {
				singles = append(singles, x)
			}
		}
		i = j
	}
	for start := 0; start < len(singles); start += 500 {
		end := min(start+500, len(singles))
		if err := scan(`SELECT idx, hash FROM merkle_hashes WHERE idx IN (`+placeholders(end-start)+`)`, singles[start:end]...); err != nil {
			return nil, err
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("stored hash %d: %w", x, ledger.ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}

// EventsBySeq implements ledger.Merkle.
func (s *Store) EventsBySeq(ctx context.Context, from, to int64, fn func(ledger.Event) error) error {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT `+EventColumns+` FROM leaves l JOIN events e ON e.id = l.event_id
		WHERE l.seq >= ? AND l.seq < ? ORDER BY l.seq`), from, to)
	if err != nil {
		return s.wrap(fmt.Errorf("read events by seq: %w", err))
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := ScanEvent(rows)
		if err != nil {
			return s.wrap(fmt.Errorf("read events by seq: %w", err))
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(fmt.Errorf("read events by seq: %w", err))
	}
	return nil
}

// LeafAt returns the canonical leaf bytes of the event at seq, read from
// the event row as stored, for inclusion proofs.
func (s *Store) LeafAt(ctx context.Context, seq int64) ([]byte, error) {
	var got merkle.LeafRecord
	found := false
	err := s.scanLeaves(ctx, seq, seq+1, func(r *merkle.LeafRecord) error {
		got, found = *r, true
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("event seq %d: %w", seq, ledger.ErrNotFound)
	case got.Missing:
		return nil, fmt.Errorf("event seq %d (id %s): the event row is missing", seq, got.EventID)
	case got.Err != nil:
		return nil, fmt.Errorf("event seq %d (id %s): %w", seq, got.EventID, got.Err)
	}
	return merkle.AppendLeaf(nil, &got.Leaf), nil
}

// SeqOf returns the sequence number of an integrated event.
func (s *Store) SeqOf(ctx context.Context, eventID string) (int64, error) {
	var seq int64
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT seq FROM leaves WHERE event_id = ?`), eventID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		var n int
		if s.rdb.QueryRowContext(ctx, s.q(`SELECT 1 FROM integration_queue WHERE event_id = ?`), eventID).Scan(&n) == nil {
			return 0, fmt.Errorf("event %s is not in the tree yet (integration pending): %w", eventID, ledger.ErrNotFound)
		}
		return 0, fmt.Errorf("event %s: %w", eventID, ledger.ErrNotFound)
	}
	if err != nil {
		return 0, s.wrap(fmt.Errorf("read event %s: %w", eventID, err))
	}
	return seq, nil
}

// ScanCheckpoints implements merkle.CheckpointScanner.
func (s *Store) ScanCheckpoints(ctx context.Context, fn func(*merkle.CheckpointRecord) error) error {
	return s.Checkpoints(ctx, func(c ledger.Checkpoint) error { return fn(&c) })
}

const checkpointColumns = `size, root, note, key_id, created_ns`

func scanCheckpoint(sc rowScanner) (ledger.Checkpoint, error) {
	var c ledger.Checkpoint
	var created int64
	if err := sc.Scan(&c.Size, &c.Root, &c.Note, &c.KeyID, &created); err != nil {
		return ledger.Checkpoint{}, err
	}
	c.CreatedAt = fromNS(created)
	return c, nil
}

// LatestCheckpoint implements ledger.Merkle.
func (s *Store) LatestCheckpoint(ctx context.Context) (ledger.Checkpoint, error) {
	c, err := s.checkpointAt(ctx, s.rdb, -1)
	return c, s.wrap(err)
}

// CheckpointAt implements ledger.Merkle.
func (s *Store) CheckpointAt(ctx context.Context, size int64) (ledger.Checkpoint, error) {
	if size < 0 {
		return ledger.Checkpoint{}, fmt.Errorf("checkpoint size %d: %w", size, ledger.ErrInvalid)
	}
	c, err := s.checkpointAt(ctx, s.rdb, size)
	return c, s.wrap(err)
}

// checkpointAt reads the checkpoint of size, or the latest when size < 0.
func (s *Store) checkpointAt(ctx context.Context, q querier, size int64) (ledger.Checkpoint, error) {
	var row *sql.Row
	if size < 0 {
		row = q.QueryRowContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints ORDER BY size DESC LIMIT 1`)
	} else {
		row = q.QueryRowContext(ctx, s.q(`SELECT `+checkpointColumns+` FROM checkpoints WHERE size = ?`), size)
	}
	c, err := scanCheckpoint(row)
	switch {
	case errors.Is(err, sql.ErrNoRows) && size < 0:
		return ledger.Checkpoint{}, fmt.Errorf("no checkpoint yet: %w", ledger.ErrNotFound)
	case errors.Is(err, sql.ErrNoRows):
		return ledger.Checkpoint{}, fmt.Errorf("no checkpoint of size %d: %w", size, ledger.ErrNotFound)
	case err != nil:
		return ledger.Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	return c, nil
}

// Checkpoints implements ledger.Merkle, in size order.
func (s *Store) Checkpoints(ctx context.Context, fn func(ledger.Checkpoint) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints ORDER BY size`)
	if err != nil {
		return s.wrap(fmt.Errorf("read checkpoints: %w", err))
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return s.wrap(fmt.Errorf("read checkpoints: %w", err))
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(fmt.Errorf("read checkpoints: %w", err))
	}
	return nil
}

// PendingEvents implements ledger.Merkle.
func (s *Store) PendingEvents(ctx context.Context) (int64, time.Time, error) {
	var n int64
	var oldest sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*), MIN(queued_ns) FROM integration_queue`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.wrap(fmt.Errorf("read integration queue: %w", err))
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, fromNS(oldest.Int64), nil
}
