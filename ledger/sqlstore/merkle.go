package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

// leafColumns are the event columns a leaf is made of, in merkle.Leaf
// order, over the events table aliased e.
const leafColumns = `e.id, e.time_ns, e.agent_id, e.agent_name, e.chain, e.resource, e.operation, e.quantity, e.unit,
	e.amount_nanos, e.currency, e.request_id, e.outcome, e.code, e.reason,
	e.input_tokens, e.output_tokens, e.cached_tokens, e.cache_write_tokens, e.reasoning_tokens, e.upstream, e.unpriced`

var leafColumnNames = [...]string{"id", "time_ns", "agent_id", "agent_name", "chain", "resource", "operation", "quantity", "unit",
	"amount_nanos", "currency", "request_id", "outcome", "code", "reason",
	"input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "upstream", "unpriced"}

const nLeafColumns = len(leafColumnNames)

// leafRow scans leafColumns as the driver returns them, so the leaf is
// built from the values exactly as stored: a column holding anything a
// Caracal writer never writes (a REAL amount, an unpriced of 2, a chain
// that is not canonical JSON) is reported instead of being coerced.
type leafRow struct {
	vals [nLeafColumns]any
	ptrs [nLeafColumns]any
}

func newLeafRow() *leafRow {
	r := &leafRow{}
	for i := range r.vals {
		r.ptrs[i] = &r.vals[i]
	}
	return r
}

// missing reports whether the joined event row is absent.
func (r *leafRow) missing() bool { return r.vals[0] == nil }

// leaf converts the scanned values into l.
func (r *leafRow) leaf(l *merkle.Leaf) error {
	var err error
	str := func(i int) string {
		if s, ok := r.vals[i].(string); ok {
			return s
		}
		if err == nil {
			err = fmt.Errorf("column %s holds %s, not text", leafColumnNames[i], describe(r.vals[i]))
		}
		return ""
	}
	num := func(i int) int64 {
		if n, ok := r.vals[i].(int64); ok {
			return n
		}
		if err == nil {
			err = fmt.Errorf("column %s holds %s, not an integer", leafColumnNames[i], describe(r.vals[i]))
		}
		return 0
	}
	l.ID = str(0)
	l.TimeNS = num(1)
	l.AgentID = str(2)
	l.AgentName = str(3)
	chain := str(4)
	l.Resource = str(5)
	l.Operation = str(6)
	l.Quantity = str(7)
	l.Unit = str(8)
	l.AmountNanos = num(9)
	l.Currency = str(10)
	l.RequestID = str(11)
	l.Outcome = str(12)
	l.Code = str(13)
	l.Reason = str(14)
	l.InputTokens = num(15)
	l.OutputTokens = num(16)
	l.CachedTokens = num(17)
	l.CacheWriteTokens = num(18)
	l.ReasoningTokens = num(19)
	l.Upstream = str(20)
	switch v := r.vals[21].(type) {
	case bool:
		l.Unpriced = v
	case int64:
		if v != 0 && v != 1 && err == nil {
			err = fmt.Errorf("column unpriced holds %d, not 0 or 1", v)
		}
		l.Unpriced = v == 1
	default:
		if err == nil {
			err = fmt.Errorf("column unpriced holds %s, not a boolean", describe(v))
		}
	}
	if err != nil {
		return err
	}
	l.Chain, err = parseChain(chain, l.Chain[:0])
	return err
}

// parseChain reads the chain column (encodeChain's JSON array) and insists
// it is byte for byte what encodeChain writes, so no edit goes unseen.
func parseChain(s string, dst []string) ([]string, error) {
	if ids, ok := parsePlainChain(s, dst); ok {
		return ids, nil
	}
	var ids []string
	if err := json.Unmarshal([]byte(s), &ids); err != nil {
		return nil, fmt.Errorf("column chain holds %q, not a JSON array of agent IDs", s)
	}
	if encodeChain(ids) != s {
		return nil, fmt.Errorf("column chain holds %q, not in the form Caracal writes (%s)", s, encodeChain(ids))
	}
	return append(dst, ids...), nil
}

// parsePlainChain parses the common chain of IDs with only printable ASCII
// that JSON does not escape, without encoding/json: verification reads a
// million of them. It reports false for anything else, which parseChain
// then reads the slow, general way.
func parsePlainChain(s string, dst []string) ([]string, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return dst, true
	}
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := 1
		for end < len(body) && body[end] != '"' {
			c := body[end]
			// encoding/json escapes these, so the canonical form never has them raw.
			if c < 0x20 || c > 0x7e || c == '\\' || c == '<' || c == '>' || c == '&' {
				return nil, false
			}
			end++
		}
		if end == len(body) {
			return nil, false
		}
		dst = append(dst, body[1:end])
		body = body[end+1:]
		if body == "" {
			return dst, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("a %d-byte blob", len(v))
	case string:
		return fmt.Sprintf("text %q", v)
	default:
		return fmt.Sprintf("%v (%T)", v, v)
	}
}

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

// ScanLeaves implements merkle.LeafScanner over the leaves table joined to
// the events table, reading every column exactly as stored.
func (s *Store) ScanLeaves(ctx context.Context, from, to int64, fn func(*merkle.LeafRecord) error) error {
	if s.dialect.Name() == "sqlite" {
		return s.scanLeavesPacked(ctx, from, to, fn)
	}
	return s.scanLeaves(ctx, from, to, fn)
}

func (s *Store) scanLeaves(ctx context.Context, from, to int64, fn func(*merkle.LeafRecord) error) error {
	query := `SELECT l.seq, l.event_id, l.leaf_hash, ` + leafColumns + ` FROM leaves l LEFT JOIN events e ON e.id = l.event_id WHERE l.seq >= ?`
	args := []driver.NamedValue{{Ordinal: 1, Value: from}}
	if to >= 0 {
		query += ` AND l.seq < ?`
		args = append(args, driver.NamedValue{Ordinal: 2, Value: to})
	}
	query = s.q(query + ` ORDER BY l.seq`)
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return s.wrap(fmt.Errorf("read leaves: %w", err))
	}
	defer conn.Close()
	// Full verification reads every row of the ledger; going to the driver
	// directly skips database/sql's per-column conversion and locking,
	// which is a large share of the cost at 25 columns a row.
	var fnErr error
	err = conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return errors.New("driver cannot query")
		}
		rows, err := qc.QueryContext(ctx, query, args)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			rec  merkle.LeafRecord
			lr   leafRow
			vals [3 + nLeafColumns]driver.Value
		)
		for {
			if err := rows.Next(vals[:]); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			seq, ok1 := vals[0].(int64)
			id, ok2 := vals[1].(string)
			h, ok3 := vals[2].([]byte)
			if !ok1 || !ok2 || !ok3 {
				return fmt.Errorf("leaf row %v: seq, event_id or leaf_hash has an unexpected type", vals[0])
			}
			rec.Seq, rec.EventID, rec.LeafHash = seq, id, h
			for i := range lr.vals {
				lr.vals[i] = vals[3+i]
			}
			rec.Missing, rec.Err = lr.missing(), nil
			if !rec.Missing {
				rec.Err = lr.leaf(&rec.Leaf)
			}
			if err := fn(&rec); err != nil {
				fnErr = err
				return err
			}
		}
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.wrap(fmt.Errorf("read leaves: %w", err))
	}
	return nil
}

// ScanHashes implements merkle.HashStore.
func (s *Store) ScanHashes(ctx context.Context, from, to int64, fn func(idx int64, hash []byte) error) error {
	if to < 0 {
		to = math.MaxInt64
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT idx, hash FROM merkle_hashes WHERE idx >= ? AND idx < ? ORDER BY idx`), from, to)
	if err != nil {
		return s.wrap(fmt.Errorf("read stored hashes: %w", err))
	}
	defer rows.Close()
	var (
		idx int64
		h   sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&idx, &h); err != nil {
			return s.wrap(fmt.Errorf("read stored hashes: %w", err))
		}
		if err := fn(idx, h); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(fmt.Errorf("read stored hashes: %w", err))
	}
	return nil
}

// ScanCheckpoints implements merkle.CheckpointScanner.
func (s *Store) ScanCheckpoints(ctx context.Context, fn func(*merkle.CheckpointRecord) error) error {
	return s.Checkpoints(ctx, func(c ledger.Checkpoint) error {
		return fn(&merkle.CheckpointRecord{Size: c.Size, Root: c.Root, Note: c.Note, KeyID: c.KeyID})
	})
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

// AddSigningKey implements ledger.Merkle.
func (s *Store) AddSigningKey(ctx context.Context, k ledger.SigningKey) error {
	if k.ID == "" || k.PublicKey == "" {
		return fmt.Errorf("add signing key: empty id or public key: %w", ledger.ErrInvalid)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO signing_keys (id, name, public_key, created_ns, retired_ns) VALUES (?, ?, ?, ?, ?)`),
		k.ID, k.Name, k.PublicKey, toNS(k.CreatedAt), toNullNS(k.RetiredAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return errorf(ledger.ErrConflict, "signing key %s is already registered", k.ID)
		}
		return s.wrap(fmt.Errorf("add signing key: %w", err))
	}
	return nil
}

// RetireSigningKey implements ledger.Merkle. The key stays in the table so
// the checkpoints it signed still verify.
func (s *Store) RetireSigningKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE signing_keys SET retired_ns = ? WHERE id = ? AND retired_ns IS NULL`), toNS(at), id)
	if err != nil {
		return s.wrap(fmt.Errorf("retire signing key: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var x int
		if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT 1 FROM signing_keys WHERE id = ?`), id).Scan(&x); errors.Is(err, sql.ErrNoRows) {
			return errorf(ledger.ErrNotFound, "signing key %s not found", id)
		}
		return errorf(ledger.ErrConflict, "signing key %s is already retired", id)
	}
	return nil
}

// SigningKeys implements ledger.Merkle, oldest first.
func (s *Store) SigningKeys(ctx context.Context) ([]ledger.SigningKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, name, public_key, created_ns, retired_ns FROM signing_keys ORDER BY created_ns, id`)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
	}
	defer rows.Close()
	var out []ledger.SigningKey
	for rows.Next() {
		var k ledger.SigningKey
		var created int64
		var retired sql.NullInt64
		if err := rows.Scan(&k.ID, &k.Name, &k.PublicKey, &created, &retired); err != nil {
			return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
		}
		k.CreatedAt, k.RetiredAt = fromNS(created), fromNullNS(retired)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("read signing keys: %w", err))
	}
	return out, nil
}

// packedLeafColumns is leafColumns joined by NUL characters into one text
// value. SQLite (as compiled for Go) pays a mutex round trip per column
// read, which makes the 22 separate columns the bulk of full
// verification's cost; one column instead cuts a third of it.
var packedLeafColumns = strings.ReplaceAll(leafColumns, ",", " || char(0) ||")

// scanLeavesPacked is ScanLeaves for SQLite: rows are read as one packed
// text value each, by several workers over consecutive seq ranges, and
// handed to fn in seq order. A row the packed form cannot represent
// unambiguously (a NUL inside a value) or whose numbers do not parse is
// read again column by column, so its report is exactly the strict one.
//
// Reading by text form means a value whose storage type was changed
// without changing its text (the integer 5 put into a text column as '5')
// reads as the same value and hashes the same: it is the same value.
func (s *Store) scanLeavesPacked(ctx context.Context, from, to int64, fn func(*merkle.LeafRecord) error) error {
	end := to
	if end < 0 {
		n, err := s.TreeSize(ctx)
		if err != nil {
			return err
		}
		end = n
	}
	const chunk = 16384
	type span struct{ lo, hi int64 } // hi < 0: unbounded
	var spans []span
	for lo := from; lo < end; lo += chunk {
		spans = append(spans, span{lo, min(lo+chunk, end)})
	}
	if to < 0 {
		// Leaves appended since TreeSize was read.
		spans = append(spans, span{max(from, end), -1})
	}
	workers := min(max(runtime.GOMAXPROCS(0), 1), 4, len(spans))
	if workers == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		recs []merkle.LeafRecord
		err  error
	}
	outs := make([]chan result, workers)
	for w := range outs {
		outs[w] = make(chan result, 1)
		go func(w int) {
			defer close(outs[w])
			for k := w; k < len(spans); k += workers {
				recs, err := s.readPackedSpan(ctx, spans[k].lo, spans[k].hi)
				select {
				case outs[w] <- result{recs, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}(w)
	}
	for k := range spans {
		r, ok := <-outs[k%workers]
		if !ok {
			return ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		for i := range r.recs {
			if err := fn(&r.recs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) readPackedSpan(ctx context.Context, lo, hi int64) ([]merkle.LeafRecord, error) {
	query := `SELECT l.seq, l.event_id, l.leaf_hash, ` + packedLeafColumns + ` FROM leaves l LEFT JOIN events e ON e.id = l.event_id WHERE l.seq >= ?`
	args := []any{lo}
	if hi >= 0 {
		query += ` AND l.seq < ?`
		args = append(args, hi)
	}
	rows, err := s.rdb.QueryContext(ctx, query+` ORDER BY l.seq`, args...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("read leaves: %w", err))
	}
	defer rows.Close()
	var recs []merkle.LeafRecord
	if hi >= 0 {
		recs = make([]merkle.LeafRecord, 0, hi-lo)
	}
	var packed sql.NullString
	for rows.Next() {
		recs = append(recs, merkle.LeafRecord{})
		rec := &recs[len(recs)-1]
		if err := rows.Scan(&rec.Seq, &rec.EventID, &rec.LeafHash, &packed); err != nil {
			return nil, s.wrap(fmt.Errorf("read leaves: %w", err))
		}
		if !packed.Valid {
			rec.Missing = true
			continue
		}
		if unpackLeaf(packed.String, &rec.Leaf) {
			continue
		}
		// Not representable packed: read this row the strict way.
		seq := rec.Seq
		if err := s.scanLeaves(ctx, seq, seq+1, func(r *merkle.LeafRecord) error {
			*rec = *r
			rec.Leaf.Chain = append([]string(nil), r.Leaf.Chain...)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("read leaves: %w", err))
	}
	return recs, nil
}

// unpackLeaf reads a packedLeafColumns value into l. It reports false when
// the value does not have exactly one field per column, or a number or the
// chain is not in the form Caracal writes.
func unpackLeaf(p string, l *merkle.Leaf) bool {
	var f [nLeafColumns]string
	for i := range nLeafColumns - 1 {
		j := strings.IndexByte(p, 0)
		if j < 0 {
			return false
		}
		f[i], p = p[:j], p[j+1:]
	}
	if strings.IndexByte(p, 0) >= 0 {
		return false
	}
	f[nLeafColumns-1] = p
	var nums [8]int64
	for k, i := range [...]int{1, 9, 15, 16, 17, 18, 19, 21} {
		n, ok := parseCanonicalInt(f[i])
		if !ok {
			return false
		}
		nums[k] = n
	}
	if nums[7] != 0 && nums[7] != 1 {
		return false
	}
	chain, ok := parsePlainChain(f[4], nil)
	if !ok {
		return false
	}
	*l = merkle.Leaf{
		ID: f[0], TimeNS: nums[0], AgentID: f[2], AgentName: f[3], Chain: chain,
		Resource: f[5], Operation: f[6], Quantity: f[7], Unit: f[8], AmountNanos: nums[1],
		Currency: f[10], RequestID: f[11], Outcome: f[12], Code: f[13], Reason: f[14],
		InputTokens: nums[2], OutputTokens: nums[3], CachedTokens: nums[4], CacheWriteTokens: nums[5], ReasoningTokens: nums[6],
		Upstream: f[20], Unpriced: nums[7] == 1,
	}
	return true
}

// parseCanonicalInt parses a decimal integer as SQLite prints one: no sign
// but '-', no leading zeros, no "-0".
func parseCanonicalInt(s string) (int64, bool) {
	if s == "" || (s[0] == '0' && len(s) > 1) || s == "-" || strings.HasPrefix(s, "-0") {
		return 0, false
	}
	if len(s) < 19 {
		var n int64
		neg := s[0] == '-'
		d := s
		if neg {
			d = s[1:]
		}
		for i := 0; i < len(d); i++ {
			c := d[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
