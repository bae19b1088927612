package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/caracal-dev/caracal/merkle"
)

// ScanLeaves implements merkle.LeafScanner over the leaves table joined to
// the events table, reading every column exactly as stored.
func (s *Store) ScanLeaves(ctx context.Context, from, to int64, fn func(*merkle.LeafRecord) error) error {
	if s.packedLeafColumns != "" {
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

// scanLeavesPacked is ScanLeaves where the dialect packs columns: rows are read as one packed
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
	query := `SELECT l.seq, l.event_id, l.leaf_hash, ` + s.packedLeafColumns + ` FROM leaves l LEFT JOIN events e ON e.id = l.event_id WHERE l.seq >= ?`
	args := []any{lo}
	if hi >= 0 {
		query += ` AND l.seq < ?`
		args = append(args, hi)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(query+` ORDER BY l.seq`), args...)
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
