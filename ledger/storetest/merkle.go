package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

func testMerkle(t *testing.T, newStore Factory) {
	t.Run("IntegrateBatches", func(t *testing.T) { testIntegrateBatches(t, newStore) })
	t.Run("ProofsAndLeaves", func(t *testing.T) { testMerkleProofs(t, newStore) })
	t.Run("AppendOnlyTriggers", func(t *testing.T) { testAppendOnly(t, newStore) })
	t.Run("Tamper", func(t *testing.T) { testTamper(t, newStore) })
	t.Run("KeyRotation", func(t *testing.T) { testKeyRotation(t, newStore) })
	t.Run("FailedBatchWritesNothing", func(t *testing.T) { testFailedBatch(t, newStore) })
	t.Run("Integrator", func(t *testing.T) { testIntegrator(t, newStore) })
	t.Run("ConcurrentIntegrators", func(t *testing.T) { testConcurrentIntegrators(t, newStore) })
}

func testIntegrateBatches(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")

	cp, ok, err := s.Integrate(ctx, 4, sign)
	if err != nil || !ok || cp.Size != 0 || string(cp.Root) != string(merkle.EmptyRoot[:]) {
		t.Fatalf("first Integrate on an empty ledger = %+v, %v, %v; want the empty-tree checkpoint", cp, ok, err)
	}
	if _, ok, _ := s.Integrate(ctx, 4, sign); ok {
		t.Fatal("Integrate with nothing queued reported work")
	}
	d.InsertEvents(t, 0, 10)
	if n, oldest, err := s.PendingEvents(ctx); err != nil || n != 10 || oldest.IsZero() {
		t.Fatalf("PendingEvents = %d, %v, %v", n, oldest, err)
	}
	cps := integrateAll(t, s, sign, 4)
	if len(cps) != 3 || cps[0].Size != 4 || cps[1].Size != 8 || cps[2].Size != 10 {
		t.Fatalf("checkpoints = %+v, want sizes 4, 8, 10", cps)
	}
	if n, _, _ := s.PendingEvents(ctx); n != 0 {
		t.Fatalf("%d events still pending", n)
	}
	if n, err := s.TreeSize(ctx); err != nil || n != 10 {
		t.Fatalf("TreeSize = %d, %v", n, err)
	}
	latest, err := s.LatestCheckpoint(ctx)
	if err != nil || latest.Size != 10 || latest.KeyID != sign.KeyID() {
		t.Fatalf("LatestCheckpoint = %+v, %v", latest, err)
	}
	if at, err := s.CheckpointAt(ctx, 8); err != nil || at.Note != cps[1].Note {
		t.Fatalf("CheckpointAt(8) = %+v, %v", at, err)
	}
	if _, err := s.CheckpointAt(ctx, 9); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("CheckpointAt(9) = %v, want ErrNotFound", err)
	}
	var sizes []int64
	if err := s.Checkpoints(ctx, func(c ledger.Checkpoint) error { sizes = append(sizes, c.Size); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[0 4 8 10]" {
		t.Fatalf("Checkpoints sizes = %v", sizes)
	}

	// The stored tree is exactly the RFC 6962 tree of LeafOf(event) for
	// the events in seq order, built independently here.
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	var seqs []int64
	err = s.EventsBySeq(ctx, 0, 10, func(e ledger.Event) error {
		seqs = append(seqs, e.Seq)
		l := ledger.LeafOf(e)
		hs, err := tlog.StoredHashes(e.Seq, l.Encode(), r)
		hashes = append(hashes, hs...)
		return err
	})
	if err != nil || len(seqs) != 10 || seqs[0] != 0 || seqs[9] != 9 {
		t.Fatalf("EventsBySeq = %v, %v", seqs, err)
	}
	want, _ := tlog.TreeHash(10, r)
	if string(latest.Root) != string(want[:]) {
		t.Fatalf("stored root %x, rebuilt from EventsBySeq %x", latest.Root, want[:])
	}
	idx := []int64{0, 1, 2, 3, 4, 5, 7, 12, 15}
	got, err := s.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range idx {
		if got[i] != hashes[x] {
			t.Fatalf("ReadHashes[%d] = %x, want %x", x, got[i], hashes[x][:])
		}
	}
	if _, err := s.ReadHashes(ctx, []int64{999}); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("ReadHashes(999) = %v, want ErrNotFound", err)
	}
	rep, err := verifyFull(t, s)
	if err != nil || rep.Size != 10 || rep.Checkpoints != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	ring, _ := ledger.KeyRing(ctx, s, false)
	if _, err := ledger.VerifyLatest(ctx, s, ring); err != nil {
		t.Fatalf("VerifyLatest: %v", err)
	}
}

func testMerkleProofs(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")
	d.InsertEvents(t, 0, 13)
	integrateAll(t, s, sign, 5) // checkpoints 5, 10, 13
	ring, _ := ledger.KeyRing(ctx, s, false)
	for seq := range int64(13) {
		for _, size := range []int64{-1, 10} {
			if size >= 0 && seq >= size {
				continue
			}
			p, err := ledger.ProveInclusion(ctx, s, seq, size)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d): %v", seq, size, err)
			}
			if _, l, err := p.Verify(ring); err != nil || l.ID != d.EventIDAt(t, seq) {
				t.Fatalf("inclusion proof of seq %d in %d: %v (leaf %q)", seq, size, err, l.ID)
			}
		}
		// The leaf read raw from the row equals LeafOf of the Event read
		// through the Events API: both paths describe the same event.
		id := d.EventIDAt(t, seq)
		seqOf, err := s.SeqOf(ctx, id)
		if err != nil || seqOf != seq {
			t.Fatalf("SeqOf(%s) = %d, %v", id, seqOf, err)
		}
		p, _ := ledger.ProveInclusion(ctx, s, seq, -1)
		var fromEvent merkle.Leaf
		_ = s.EventsBySeq(ctx, seq, seq+1, func(e ledger.Event) error { fromEvent = ledger.LeafOf(e); return nil })
		if h := fromEvent.Hash(); fmt.Sprintf("%x", h[:]) != p.LeafHash {
			t.Fatalf("seq %d: LeafOf(event) hashes to %x, the stored leaf to %s", seq, h[:], p.LeafHash)
		}
	}
	if _, err := ledger.ProveInclusion(ctx, s, 12, 10); err == nil {
		t.Fatal("proved seq 12 in a tree of 10")
	}
	for _, tt := range []struct{ from, to int64 }{{5, 10}, {5, -1}, {10, 13}, {13, 13}} {
		p, err := ledger.ProveConsistency(ctx, s, tt.from, tt.to)
		if err != nil {
			t.Fatalf("ProveConsistency(%d, %d): %v", tt.from, tt.to, err)
		}
		if _, _, err := p.Verify(ring); err != nil {
			t.Fatalf("consistency %d → %d: %v", tt.from, tt.to, err)
		}
	}
	if _, err := ledger.ProveConsistency(ctx, s, 7, -1); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("consistency from a size with no checkpoint: %v", err)
	}
	if _, err := s.SeqOf(ctx, "no-such-event"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("SeqOf(unknown) = %v", err)
	}
}

func testAppendOnly(t *testing.T, newStore Factory) {
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")
	d.InsertEvents(t, 0, 3)
	integrateAll(t, s, sign, 10)
	for _, q := range []string{
		`UPDATE events SET amount_nanos = 0`,
		`DELETE FROM events`,
		`UPDATE leaves SET seq = seq + 100`,
		`DELETE FROM leaves`,
		`UPDATE merkle_hashes SET hash = hash`,
		`DELETE FROM merkle_hashes`,
		`UPDATE checkpoints SET note = ''`,
		`DELETE FROM checkpoints`,
	} {
		_, err := d.DB.Exec(q)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want an append-only refusal", q, err)
		}
	}
	if d.Postgres {
		if _, err := d.DB.Exec(`TRUNCATE events CASCADE`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("TRUNCATE events: err = %v, want an append-only refusal", err)
		}
	}
	if _, err := verifyFull(t, s); err != nil {
		t.Fatalf("ledger damaged by refused statements: %v", err)
	}
}

type tamper struct {
	name   string
	edit   func(t *testing.T, s ledger.Store, d MerkleDB, sign *merkle.Signer)
	seq    int64 // -1: a checkpoint is named instead
	cpSize int64
	msg    string
}

func testTamper(t *testing.T, newStore Factory) {
	ctx := context.Background()
	tests := []tamper{
		{"amount edited", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			d.Exec(t, `UPDATE events SET amount_nanos = amount_nanos + 1 WHERE id = ?`, d.EventIDAt(t, 41))
		}, 41, -1, "leaf hash mismatch: the row was changed"},
		{"reason edited", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			d.Exec(t, `UPDATE events SET reason = 'refund' WHERE id = ?`, d.EventIDAt(t, 3))
		}, 3, -1, "leaf hash mismatch"},
		{"chain rewritten", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			d.Exec(t, `UPDATE events SET chain = '[ "agent-1","agent-0"]' WHERE id = ?`, d.EventIDAt(t, 7))
		}, 7, -1, "not in the form Caracal writes"},
		{"event deleted", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			id := d.EventIDAt(t, 20)
			d.Exec(t, `DELETE FROM leaves WHERE seq = 20`)
			d.Exec(t, `DELETE FROM events WHERE id = ?`, id)
		}, 20, -1, "leaf row missing (the next row is seq 21): the event was deleted"},
		{"two events swapped", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			d.Exec(t, `UPDATE leaves SET seq = -1 WHERE seq = 10`)
			d.Exec(t, `UPDATE leaves SET seq = 10 WHERE seq = 11`)
			d.Exec(t, `UPDATE leaves SET seq = 11 WHERE seq = -1`)
		}, 10, -1, "events were reordered"},
		{"tail truncated", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			var ids []any
			rows, err := d.DB.Query(`SELECT event_id FROM leaves WHERE seq >= 55`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				rows.Scan(&id)
				ids = append(ids, id)
			}
			rows.Close()
			d.Exec(t, `DELETE FROM leaves WHERE seq >= 55`)
			d.Exec(t, `DELETE FROM merkle_hashes WHERE idx >= ?`, tlog.StoredHashCount(55))
			for _, id := range ids {
				d.Exec(t, `DELETE FROM events WHERE id = ?`, id)
			}
		}, -1, 56, "ledger has 55 events but checkpoint size 56 covers more: events were deleted or truncated"},
		{"stored tree hash edited", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			d.Exec(t, `UPDATE merkle_hashes SET hash = ? WHERE idx = ?`, make([]byte, 32), tlog.StoredHashIndex(2, 3))
		}, 15, -1, "merkle_hashes was changed"},
		{"checkpoint signature altered", func(t *testing.T, s ledger.Store, d MerkleDB, _ *merkle.Signer) {
			cp, err := s.CheckpointAt(context.Background(), 21)
			if err != nil {
				t.Fatal(err)
			}
			b := []byte(cp.Note)
			b[len(b)-10] ^= 1
			d.Exec(t, `UPDATE checkpoints SET note = ? WHERE size = 21`, string(b))
		}, -1, 21, "signature does not verify"},
		{"checkpoint from a forked history", func(t *testing.T, s ledger.Store, d MerkleDB, sign *merkle.Signer) {
			// The same key signs a tree whose last event differs: a fork.
			var hashes []tlog.Hash
			r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
				out := make([]tlog.Hash, len(idx))
				for i, x := range idx {
					out[i] = hashes[x]
				}
				return out, nil
			})
			err := s.EventsBySeq(context.Background(), 0, 28, func(e ledger.Event) error {
				l := ledger.LeafOf(e)
				if e.Seq == 27 {
					l.AmountNanos = 1
				}
				hs, err := tlog.StoredHashes(e.Seq, l.Encode(), r)
				hashes = append(hashes, hs...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			root, _ := tlog.TreeHash(28, r)
			note, _ := sign.Sign(28, root)
			d.Exec(t, `UPDATE checkpoints SET root = ?, note = ? WHERE size = 28`, root[:], string(note))
		}, -1, 28, "forked history"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			d := OpenMerkleDB(t, s)
			sign := NewSigner(t, s, "example.com/caracal")
			if _, _, err := s.Integrate(ctx, 7, sign); err != nil {
				t.Fatal(err)
			}
			d.InsertEvents(t, 0, 60)
			integrateAll(t, s, sign, 7) // checkpoints 0, 7, 14, …, 56, 60
			if _, err := verifyFull(t, s); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			d.DisableAppendOnly(t)
			tt.edit(t, s, d, sign)
			_, err := verifyFull(t, s)
			var ve *merkle.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("verify after %s = %v, want a VerifyError", tt.name, err)
			}
			if ve.Seq != tt.seq || ve.CheckpointSize != tt.cpSize || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("verify = %q (seq %d, checkpoint %d); want seq %d, checkpoint %d, containing %q",
					err, ve.Seq, ve.CheckpointSize, tt.seq, tt.cpSize, tt.msg)
			}
			if tt.seq >= 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("event seq %d", tt.seq)) {
				t.Fatalf("message %q does not start by naming event seq %d", err, tt.seq)
			}
		})
	}
}

func testKeyRotation(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	old := NewSigner(t, s, "example.com/caracal")
	d.InsertEvents(t, 0, 20)
	integrateAll(t, s, old, 6)

	cur := NewSigner(t, s, "example.com/caracal")
	if err := s.RetireSigningKey(ctx, old.KeyID(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireSigningKey(ctx, old.KeyID(), time.Now()); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("retiring twice: %v, want ErrConflict", err)
	}
	if err := s.RetireSigningKey(ctx, "nope+00000000", time.Now()); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("retiring an unknown key: %v, want ErrNotFound", err)
	}
	d.InsertEvents(t, 20, 5)
	if _, _, err := s.Integrate(ctx, 100, old); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("Integrate with a retired key: %v", err)
	}
	integrateAll(t, s, cur, 100)
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].RetiredAt == nil || keys[1].RetiredAt != nil {
		t.Fatalf("SigningKeys = %+v, %v", keys, err)
	}
	if err := s.AddSigningKey(ctx, keys[1]); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("adding a key twice: %v, want ErrConflict", err)
	}
	var byKey = map[string]int{}
	_ = s.Checkpoints(ctx, func(c ledger.Checkpoint) error { byKey[c.KeyID]++; return nil })
	if byKey[old.KeyID()] != 4 || byKey[cur.KeyID()] != 1 {
		t.Fatalf("checkpoints by key = %v", byKey)
	}
	if rep, err := verifyFull(t, s); err != nil || rep.Size != 25 {
		t.Fatalf("verify after rotation = %+v, %v", rep, err)
	}
	// Only the new key trusted: the old checkpoints are named.
	ring, _ := ledger.KeyRing(ctx, s, true, cur.VerifierKey())
	_, err = merkle.Verify(ctx, ledger.VerifySource(s), merkle.VerifyOptions{Keys: ring})
	var ve *merkle.VerifyError
	if !errors.As(err, &ve) || ve.CheckpointSize != 6 {
		t.Fatalf("verify trusting only the new key = %v, want checkpoint size 6 named", err)
	}
	unregistered, _, _ := merkle.GenerateKey("example.com/caracal")
	us, _ := merkle.NewSigner(unregistered)
	d.InsertEvents(t, 25, 1)
	if _, _, err := s.Integrate(ctx, 100, us); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("Integrate with an unregistered key: %v", err)
	}
}

type failingSigner struct{ ledger.Signer }

func (failingSigner) Sign(int64, [32]byte) ([]byte, error) {
	return nil, errors.New("signer unavailable")
}

func testFailedBatch(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")
	d.InsertEvents(t, 0, 5)
	integrateAll(t, s, sign, 100)
	d.InsertEvents(t, 5, 5)
	if _, _, err := s.Integrate(ctx, 100, failingSigner{sign}); err == nil {
		t.Fatal("Integrate with a failing signer succeeded")
	}
	// The failed batch left no leaves, hashes or queue deletions behind.
	if n, _ := s.TreeSize(ctx); n != 5 {
		t.Fatalf("tree size after a failed batch = %d, want 5", n)
	}
	if n, _, _ := s.PendingEvents(ctx); n != 5 {
		t.Fatalf("pending after a failed batch = %d, want 5", n)
	}
	integrateAll(t, s, sign, 100)
	if rep, err := verifyFull(t, s); err != nil || rep.Size != 10 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}

func testIntegrator(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")
	var mu sync.Mutex
	var seen []int64
	in := ledger.StartIntegrator(ctx, s, sign, ledger.IntegratorConfig{Interval: 5 * time.Millisecond, Batch: 7,
		OnCheckpoint: func(c ledger.Checkpoint) { mu.Lock(); seen = append(seen, c.Size); mu.Unlock() }})
	d.InsertEvents(t, 0, 30)
	cp, err := in.Flush(ctx)
	if err != nil || cp.Size != 30 {
		t.Fatalf("Flush = %+v, %v", cp, err)
	}
	d.InsertEvents(t, 30, 3)
	if err := in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.TreeSize(ctx); n != 33 {
		t.Fatalf("tree size after Stop = %d, want 33", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != 33 {
		t.Fatalf("OnCheckpoint saw %v", seen)
	}
	if _, err := verifyFull(t, s); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentIntegrators runs two integrators against one store while
// events are written, as two proxy processes sharing PostgreSQL would:
// every event gets exactly one leaf and the tree verifies.
func testConcurrentIntegrators(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t)
	d := OpenMerkleDB(t, s)
	sign := NewSigner(t, s, "example.com/caracal")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := s.Integrate(ctx, 13, sign); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 10 {
		if err := d.insertEvents(ctx, i*20, 20, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Integrate: %v", err)
	}
	integrateAll(t, s, sign, 1000)
	if rep, err := verifyFull(t, s); err != nil || rep.Size != 200 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}
