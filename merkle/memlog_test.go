package merkle

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memLog is an in-memory Source: what the SQL store keeps, in slices, so
// tests can build a ledger and then tamper with any part of it.
type memLog struct {
	leaves []LeafRecord
	hashes []tlog.Hash
	raw    map[int64][]byte // stored hash overrides, to store malformed values
	cps    []CheckpointRecord
}

func (m *memLog) readHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) append(t testing.TB, l Leaf) {
	t.Helper()
	n := int64(len(m.leaves))
	data := l.Encode()
	hs, err := tlog.StoredHashes(n, data, tlog.HashReaderFunc(m.readHashes))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int64(len(m.hashes)), tlog.StoredHashIndex(0, n); got != want {
		t.Fatalf("hash storage at %d, want %d", got, want)
	}
	m.hashes = append(m.hashes, hs...)
	lh := tlog.RecordHash(data)
	m.leaves = append(m.leaves, LeafRecord{Seq: n, EventID: l.ID, LeafHash: lh[:], Leaf: l})
}

func (m *memLog) checkpoint(t testing.TB, s *Signer) CheckpointRecord {
	t.Helper()
	n := int64(len(m.leaves))
	root, err := tlog.TreeHash(n, tlog.HashReaderFunc(m.readHashes))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.Sign(n, root)
	if err != nil {
		t.Fatal(err)
	}
	cp := CheckpointRecord{Size: n, Root: append([]byte(nil), root[:]...), Note: string(msg), KeyID: s.KeyID()}
	m.cps = append(m.cps, cp)
	return cp
}

func (m *memLog) ScanLeaves(ctx context.Context, from, to int64, fn func(*LeafRecord) error) error {
	var r LeafRecord
	for _, l := range m.leaves {
		if l.Seq < from || (to >= 0 && l.Seq >= to) {
			continue
		}
		r = l
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) ScanHashes(ctx context.Context, from, to int64, fn func(int64, []byte) error) error {
	end := int64(len(m.hashes))
	if to >= 0 {
		end = min(end, to)
	}
	for i := from; i < end; i++ {
		h := m.hashes[i][:]
		if b, ok := m.raw[i]; ok {
			h = b
		}
		if err := fn(i, h); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) ReadHashes(ctx context.Context, idx []int64) ([][32]byte, error) {
	hs, err := m.readHashes(idx)
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out, err
}

func (m *memLog) ScanCheckpoints(ctx context.Context, fn func(*CheckpointRecord) error) error {
	for i := range m.cps {
		c := m.cps[i]
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func testLeaf(i int) Leaf {
	return Leaf{
		ID:          fmt.Sprintf("ev-%04d", i),
		TimeNS:      1_764_140_400_000_000_000 + int64(i),
		AgentID:     "agent-1",
		AgentName:   "researcher",
		Chain:       []string{"agent-1", "agent-root"},
		Resource:    "mcp:fs/read_file",
		Operation:   "tools/call",
		AmountNanos: 1_000_000 * int64(i+1),
		Currency:    "USD",
		RequestID:   fmt.Sprintf("req-%04d", i),
		Outcome:     "charged",
	}
}

func newTestSigner(t testing.TB, origin string) *Signer {
	t.Helper()
	skey, _, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
