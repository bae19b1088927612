package merkle

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"
)

// hashReader adapts a HashStore to tlog.HashReader.
func hashReader(ctx context.Context, hs HashStore) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := hs.ReadHashes(ctx, idx)
		if err != nil {
			return nil, err
		}
		out := make([]tlog.Hash, len(hs))
		for i, h := range hs {
			out[i] = h
		}
		return out, nil
	})
}

// HashReader adapts a HashStore to tlog.HashReader for use with ctx.
func HashReader(ctx context.Context, hs HashStore) tlog.HashReader { return hashReader(ctx, hs) }

type hashItem struct {
	idx int64
	h   tlog.Hash
	ok  bool // the stored value was 32 bytes
}

const streamBatch = 4096

// hashStream is the stored hashes, read ahead in batches by a goroutine.
type hashStream struct {
	ch   chan []hashItem
	free chan []hashItem
	cur  []hashItem
	pos  int
	err  error
	done bool
}

func newHashStream(ctx context.Context, g *errgroup.Group, hs HashStore, to int64) *hashStream {
	s := &hashStream{ch: make(chan []hashItem, 4), free: make(chan []hashItem, 6)}
	g.Go(func() error {
		defer close(s.ch)
		batch := make([]hashItem, 0, streamBatch)
		send := func() error {
			select {
			case s.ch <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case batch = <-s.free:
				batch = batch[:0]
			default:
				batch = make([]hashItem, 0, streamBatch)
			}
			return nil
		}
		err := hs.ScanHashes(ctx, 0, to, func(idx int64, h []byte) error {
			it := hashItem{idx: idx, ok: len(h) == tlog.HashSize}
			copy(it.h[:], h)
			batch = append(batch, it)
			if len(batch) == streamBatch {
				return send()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = send()
		}
		if err != nil {
			// Set before close(s.ch), so the reader sees it once the channel is drained.
			s.err = fmt.Errorf("read stored hashes: %w", err)
		}
		return s.err
	})
	return s
}

func (s *hashStream) next() (hashItem, bool) {
	for s.pos >= len(s.cur) {
		if s.done {
			return hashItem{}, false
		}
		if s.cur != nil {
			select {
			case s.free <- s.cur:
			default:
			}
		}
		b, ok := <-s.ch
		if !ok {
			s.done, s.cur = true, nil
			return hashItem{}, false
		}
		s.cur, s.pos = b, 0
	}
	it := s.cur[s.pos]
	s.pos++
	return it, true
}

// checkpointStream is the stored checkpoints, read ahead by a goroutine.
type checkpointStream struct {
	ch   chan *CheckpointRecord
	cur  *CheckpointRecord
	err  error
	done bool
}

func newCheckpointStream(ctx context.Context, g *errgroup.Group, cs CheckpointScanner, maxSize int64) *checkpointStream {
	s := &checkpointStream{ch: make(chan *CheckpointRecord, 256)}
	g.Go(func() error {
		defer close(s.ch)
		err := cs.ScanCheckpoints(ctx, func(cp *CheckpointRecord) error {
			if maxSize > 0 && cp.Size > maxSize {
				return nil
			}
			c := *cp
			select {
			case s.ch <- &c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil {
			// Set before close(s.ch), so the reader sees it once the channel is drained.
			s.err = fmt.Errorf("read checkpoints: %w", err)
		}
		return s.err
	})
	return s
}

func (s *checkpointStream) peek() (*CheckpointRecord, bool) {
	if s.cur == nil && !s.done {
		c, ok := <-s.ch
		if ok {
			s.cur = c
		} else {
			s.done = true
		}
	}
	return s.cur, s.cur != nil
}

func (s *checkpointStream) pop() { s.cur = nil }
