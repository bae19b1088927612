package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

// Integrate implements ledger.Merkle. One transaction, elected by the
// dialect's integrator lock, sequences the oldest queued events, stores
// their leaves and tree hashes, removes them from the queue and stores the
// signed checkpoint, so a crash at any point leaves either all of it or
// none of it, and the next run resumes from the queue.
func (s *Store) Integrate(ctx context.Context, max int, sign ledger.Signer) (ledger.Checkpoint, bool, error) {
	if max <= 0 {
		max = 10000
	}
	var cp ledger.Checkpoint
	var integrated bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.dialect.LockIntegrator(ctx, tx); err != nil {
			return fmt.Errorf("take the integrator lock: %w", err)
		}
		var err error
		cp, integrated, err = s.integrate(ctx, tx, max, sign)
		return err
	})
	if err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("integrate: %w", err)
	}
	return cp, integrated, nil
}

type queued struct {
	pk   int64
	id   string
	leaf []byte
}

func (s *Store) integrate(ctx context.Context, tx *sql.Tx, max int, sign ledger.Signer) (ledger.Checkpoint, bool, error) {
	var size, nhash int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM leaves`).Scan(&size); err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("read tree size: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM merkle_hashes`).Scan(&nhash); err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("read stored hash count: %w", err)
	}
	if want := tlog.StoredHashCount(size); nhash != want {
		return ledger.Checkpoint{}, false, errkind.Errorf(ledger.ErrTreeDamaged, "the tree has %d leaves but %d stored hashes (want %d)", size, nhash, want)
	}

	batch, err := s.loadQueue(ctx, tx, max)
	if err != nil {
		return ledger.Checkpoint{}, false, err
	}
	latest, err := s.checkpointAt(ctx, tx, -1)
	hasLatest := err == nil
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return ledger.Checkpoint{}, false, err
	}
	if len(batch) == 0 && hasLatest && latest.Size == size {
		return latest, false, nil
	}

	hr := &txHashReader{ctx: ctx, tx: tx, s: s, cache: make(map[int64]tlog.Hash, 2*len(batch)+64)}
	leafHashes := make([]tlog.Hash, len(batch))
	var newHashes []tlog.Hash
	base := tlog.StoredHashIndex(0, size)
	for i, q := range batch {
		n := size + int64(i)
		leafHashes[i] = tlog.RecordHash(q.leaf)
		hs, err := tlog.StoredHashesForRecordHash(n, leafHashes[i], hr)
		if err != nil {
			return ledger.Checkpoint{}, false, fmt.Errorf("hash leaf %d: %w", n, err)
		}
		idx := tlog.StoredHashIndex(0, n)
		for k, h := range hs {
			hr.cache[idx+int64(k)] = h
		}
		newHashes = append(newHashes, hs...)
	}
	newSize := size + int64(len(batch))
	root, err := tlog.TreeHash(newSize, hr)
	if err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("compute root: %w", err)
	}

	if err := insertRows(ctx, tx, s, `INSERT INTO leaves (seq, event_id, leaf_hash) VALUES `, "(?, ?, ?)", len(batch), func(i int, a []any) []any {
		return append(a, size+int64(i), batch[i].id, leafHashes[i][:])
	}); err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("insert leaves: %w", err)
	}
	if err := insertRows(ctx, tx, s, `INSERT INTO merkle_hashes (idx, hash) VALUES `, "(?, ?)", len(newHashes), func(i int, a []any) []any {
		return append(a, base+int64(i), newHashes[i][:])
	}); err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("insert tree hashes: %w", err)
	}
	// Queue rows are deleted by key, never by range: on PostgreSQL an event
	// with a smaller pk may commit after this batch was read.
	for start := 0; start < len(batch); start += 500 {
		end := min(start+500, len(batch))
		args := make([]any, 0, end-start)
		for _, q := range batch[start:end] {
			args = append(args, q.pk)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM integration_queue WHERE event_pk IN (`+placeholders(end-start)+`)`), args...); err != nil {
			return ledger.Checkpoint{}, false, fmt.Errorf("dequeue integrated events: %w", err)
		}
	}

	if err := s.checkSigningKey(ctx, tx, sign.KeyID()); err != nil {
		return ledger.Checkpoint{}, false, err
	}
	note, err := sign.Sign(newSize, root)
	if err != nil {
		return ledger.Checkpoint{}, false, err
	}
	cp := ledger.Checkpoint{Size: newSize, Root: root[:], Note: string(note), KeyID: sign.KeyID(), CreatedAt: time.Now().UTC()}
	if hasLatest && latest.Size == newSize {
		// Only possible when the latest checkpoint is newer than the
		// leaves, which the stored-hash check above rules out unless rows
		// were removed; refuse rather than overwrite history.
		return ledger.Checkpoint{}, false, fmt.Errorf("a checkpoint of size %d already exists", newSize)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO checkpoints (size, root, note, key_id, created_ns) VALUES (?, ?, ?, ?, ?)`),
		cp.Size, cp.Root, cp.Note, cp.KeyID, cp.CreatedAt.UnixNano()); err != nil {
		return ledger.Checkpoint{}, false, fmt.Errorf("insert checkpoint: %w", err)
	}
	return cp, true, nil
}

// loadQueue reads up to max queued events in commit order and encodes their leaves.
func (s *Store) loadQueue(ctx context.Context, tx *sql.Tx, max int) ([]queued, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT q.event_pk, q.event_id, `+leafColumns+`
		FROM integration_queue q LEFT JOIN events e ON e.pk = q.event_pk
		ORDER BY q.event_pk LIMIT ?`), max)
	if err != nil {
		return nil, fmt.Errorf("read integration queue: %w", err)
	}
	defer rows.Close()
	var (
		out     []queued
		pk      int64
		eventID string
		lr      = newLeafRow()
		l       merkle.Leaf
	)
	dest := append([]any{&pk, &eventID}, lr.ptrs[:]...)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read integration queue: %w", err)
		}
		if lr.missing() {
			return nil, fmt.Errorf("queued event pk %d (id %s) is not in the ledger: the event was deleted", pk, eventID)
		}
		if err := lr.leaf(&l); err != nil {
			return nil, fmt.Errorf("queued event pk %d (id %s): %w", pk, eventID, err)
		}
		if l.ID != eventID {
			return nil, fmt.Errorf("queued event pk %d names id %s but the event row has id %s", pk, eventID, l.ID)
		}
		out = append(out, queued{pk: pk, id: l.ID, leaf: merkle.AppendLeaf(nil, &l)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read integration queue: %w", err)
	}
	return out, nil
}

func (s *Store) checkSigningKey(ctx context.Context, q querier, id string) error {
	var retired sql.NullInt64
	err := q.QueryRowContext(ctx, s.q(`SELECT retired_ns FROM signing_keys WHERE id = ?`), id).Scan(&retired)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errkind.Errorf(ledger.ErrNoSigningKey, "signing key %s is not registered in this database", id)
	case err != nil:
		return fmt.Errorf("read signing key %s: %w", id, err)
	case retired.Valid:
		return fmt.Errorf("signing key %s was retired at %s: sign with the current key", id, fromNS(retired.Int64).Format(time.RFC3339))
	}
	return nil
}

// insertRows inserts n rows with multi-row INSERT statements of at most
// 300 rows, well under both databases' parameter limits.
func insertRows(ctx context.Context, tx *sql.Tx, s *Store, head, tuple string, n int, arg func(int, []any) []any) error {
	const chunk = 300
	var b strings.Builder
	args := make([]any, 0, chunk*3)
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		b.Reset()
		b.WriteString(head)
		args = args[:0]
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString(tuple)
			args = arg(i, args)
		}
		if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
			return err
		}
	}
	return nil
}

// txHashReader reads stored hashes inside the integrating transaction,
// serving this batch's new hashes (and hashes already read) from memory.
type txHashReader struct {
	ctx   context.Context
	tx    *sql.Tx
	s     *Store
	cache map[int64]tlog.Hash
}

func (r *txHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var missing []int64
	for _, x := range indexes {
		if _, ok := r.cache[x]; !ok {
			missing = append(missing, x)
		}
	}
	if len(missing) > 0 {
		hs, err := r.s.readHashes(r.ctx, r.tx, missing)
		if err != nil {
			return nil, err
		}
		for i, x := range missing {
			r.cache[x] = hs[i]
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = r.cache[x]
	}
	return out, nil
}
