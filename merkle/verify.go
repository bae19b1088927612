package merkle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"
)

// LeafRecord is one leaf as stored: the leaves row joined to its event row.
type LeafRecord struct {
	Seq      int64
	EventID  string // from the leaves row
	LeafHash []byte // the leaves row's stored hash
	// Leaf is the event row read exactly as stored; valid unless Missing or Err.
	Leaf Leaf
	// Missing means the leaves row names an event that no longer exists.
	Missing bool
	// Err means the event row cannot be a leaf as written (for example a
	// column holds a value no Caracal writer produces).
	Err error
}

// CheckpointRecord is a stored checkpoint row; ledger.Checkpoint is the
// same type. Verification reads Size, Root, Note and KeyID; CreatedAt is
// when the row was written, outside what the signature covers.
type CheckpointRecord struct {
	Size      int64     `json:"size"`
	Root      []byte    `json:"root"`
	Note      string    `json:"note"` // the signed note, verbatim
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
}

// LeafScanner streams the stored leaves.
type LeafScanner interface {
	// ScanLeaves calls fn for every leaves row with from ≤ seq < to (no
	// upper bound when to < 0), in seq order. The record is reused between
	// calls.
	ScanLeaves(ctx context.Context, from, to int64, fn func(*LeafRecord) error) error
}

// HashStore reads stored tree hashes.
type HashStore interface {
	// ScanHashes calls fn for every stored hash with from ≤ index < to (no
	// upper bound when to < 0), in index order.
	ScanHashes(ctx context.Context, from, to int64, fn func(idx int64, hash []byte) error) error
	// ReadHashes returns the hashes at the given storage indexes.
	ReadHashes(ctx context.Context, indexes []int64) ([][32]byte, error)
}

// CheckpointScanner streams stored checkpoints.
type CheckpointScanner interface {
	// ScanCheckpoints calls fn for every checkpoint in size order.
	ScanCheckpoints(ctx context.Context, fn func(*CheckpointRecord) error) error
}

// Source is everything full verification reads.
type Source interface {
	LeafScanner
	HashStore
	CheckpointScanner
}

// VerifyError names the first thing that does not match: an event by its
// sequence number, a checkpoint by its size, or a stored hash by its index.
type VerifyError struct {
	Seq            int64 // -1 unless an event is named
	EventID        string
	CheckpointSize int64 // -1 unless a checkpoint is named
	Msg            string
	Err            error // an underlying cause, if any
}

func (e *VerifyError) Error() string {
	var b bytes.Buffer
	switch {
	case e.Seq >= 0 && e.EventID != "":
		fmt.Fprintf(&b, "event seq %d (id %s): ", e.Seq, e.EventID)
	case e.Seq >= 0:
		fmt.Fprintf(&b, "event seq %d: ", e.Seq)
	case e.CheckpointSize >= 0:
		fmt.Fprintf(&b, "checkpoint size %d: ", e.CheckpointSize)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *VerifyError) Unwrap() error { return e.Err }

func eventErr(seq int64, id, format string, a ...any) *VerifyError {
	return &VerifyError{Seq: seq, EventID: id, CheckpointSize: -1, Msg: fmt.Sprintf(format, a...)}
}

func checkpointErr(size int64, err error, format string, a ...any) *VerifyError {
	return &VerifyError{Seq: -1, CheckpointSize: size, Msg: fmt.Sprintf(format, a...), Err: err}
}

// TruncatedError reports a ledger of size events that a checkpoint of
// checkpointSize, larger, covers: events were deleted.
func TruncatedError(size, checkpointSize int64) *VerifyError {
	noun := "events"
	if size == 1 {
		noun = "event"
	}
	return checkpointErr(checkpointSize, nil, "ledger has %d %s but checkpoint size %d covers more: events were deleted or truncated", size, noun, checkpointSize)
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys verify checkpoint signatures, looked up by each checkpoint's key ID.
	Keys KeyRing
	// Size, when positive, bounds the verification to the tree of that
	// size (leaves, their stored hashes, checkpoints up to it), so a ledger
	// that grows during verification is checked as of one size. Callers
	// pass the larger of the tree size and the latest checkpoint's size,
	// so a truncated tree is still caught by the checkpoint beyond it.
	Size int64
	// Progress, if set, is called with the number of leaves checked so far
	// every ProgressEvery leaves and once at the end.
	Progress      func(done int64)
	ProgressEvery int64
}

// Report is what a successful verification covered.
type Report struct {
	Size        int64     `json:"size"`        // leaves checked
	Root        tlog.Hash `json:"root"`        // root of the tree rebuilt from the ledger
	Checkpoints int64     `json:"checkpoints"` // checkpoints checked
	Latest      int64     `json:"latest_checkpoint_size"`
}

// Verify recomputes every leaf from the stored event rows, rebuilds every
// stored tree hash and compares it with the stored one, checks every
// checkpoint's signature (with the key it records) and root, and proves
// consistency between consecutive checkpoints. It returns a *VerifyError
// naming the first event or checkpoint that does not match, in ledger order.
//
// Leaves, hashes and checkpoints are streamed side by side, so memory does
// not grow with the ledger; hashing and row decoding overlap on two cores.
func Verify(ctx context.Context, src Source, o VerifyOptions) (Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)

	leafEnd, hashEnd := int64(-1), int64(-1)
	if o.Size > 0 {
		leafEnd, hashEnd = o.Size, tlog.StoredHashCount(o.Size)
	}
	hashes := newHashStream(gctx, g, src, hashEnd)
	cps := newCheckpointStream(gctx, g, src, o.Size)

	v := &verifier{src: src, keys: o.Keys, hashes: hashes, cps: cps, prevSize: -1}
	every := o.ProgressEvery
	if every <= 0 {
		every = 1 << 16
	}
	var buf []byte
	err := src.ScanLeaves(gctx, 0, leafEnd, func(r *LeafRecord) error {
		if err := v.checkpointsAt(gctx); err != nil {
			return err
		}
		n := v.size
		if r.Seq != n {
			if r.Seq > n {
				return eventErr(n, "", "leaf row missing (the next row is seq %d): the event was deleted", r.Seq)
			}
			return eventErr(r.Seq, r.EventID, "leaf rows out of order after seq %d", n-1)
		}
		if r.Missing {
			return eventErr(n, r.EventID, "event row missing: the event was deleted")
		}
		if r.Err != nil {
			return eventErr(n, r.EventID, "%v: the row was changed", r.Err)
		}
		buf = AppendLeaf(buf[:0], &r.Leaf)
		h := tlog.RecordHash(buf)
		if err := v.addLeaf(n, r, h); err != nil {
			return err
		}
		if o.Progress != nil && v.size%every == 0 {
			o.Progress(v.size)
		}
		return nil
	})
	if err == nil {
		err = v.checkpointsAt(gctx)
	}
	if err == nil {
		err = v.finish()
	}
	cancel()
	// The producers stop on cancellation; only their real failures matter
	// when the scan itself succeeded.
	if gerr := g.Wait(); err == nil && gerr != nil && !errors.Is(gerr, context.Canceled) {
		err = gerr
	}
	if err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) && ctx.Err() == nil {
			err = fmt.Errorf("verify: %w", err)
		}
		return Report{}, err
	}
	if o.Progress != nil {
		o.Progress(v.size)
	}
	return Report{Size: v.size, Root: v.root(), Checkpoints: v.checked, Latest: v.prevSize}, nil
}

type verifier struct {
	src    Source
	keys   KeyRing
	hashes *hashStream
	cps    *checkpointStream

	size  int64
	stack []tlog.Hash // roots of the complete subtrees along the right edge
	emit  []tlog.Hash

	checked  int64
	prevSize int64
	prevRoot tlog.Hash
}

// addLeaf appends leaf n with hash h to the rebuilt tree and compares the
// stored hashes it completes (in tlog storage order) with the stored ones.
func (v *verifier) addLeaf(n int64, r *LeafRecord, h tlog.Hash) error {
	v.emit = append(v.emit[:0], h)
	for k := n; k&1 == 1; k >>= 1 {
		top := v.stack[len(v.stack)-1]
		v.stack = v.stack[:len(v.stack)-1]
		h = tlog.NodeHash(top, h)
		v.emit = append(v.emit, h)
	}
	v.stack = append(v.stack, h)
	base := tlog.StoredHashIndex(0, n)
	for level, want := range v.emit {
		idx := base + int64(level)
		got, ok := v.hashes.next()
		switch {
		case !ok && v.hashes.err != nil:
			return v.hashes.err
		case !ok || got.idx > idx:
			return eventErr(n, r.EventID, "stored tree hash %d (level %d) is missing: the tree was truncated", idx, level)
		case got.idx < idx:
			return eventErr(n, r.EventID, "stored tree hash %d precedes the leaf's hashes: merkle_hashes was changed", got.idx)
		case !got.ok:
			return eventErr(n, r.EventID, "stored tree hash %d is not 32 bytes: merkle_hashes was changed", idx)
		case level == 0 && got.h != want && equalHash(r.LeafHash, want):
			// The leaf row agrees with the event but not with the tree:
			// a whole event (with its leaf row) now sits where another was.
			return eventErr(n, r.EventID, "leaf hash mismatch: the tree holds a different event at this position: events were reordered or replaced (or merkle_hashes was changed)")
		case level == 0 && got.h != want:
			return eventErr(n, r.EventID, "leaf hash mismatch: the row was changed")
		case level == 0 && !equalHash(r.LeafHash, want):
			return eventErr(n, r.EventID, "leaves.leaf_hash %x does not match the event row: the leaf row was changed", r.LeafHash)
		case got.h != want:
			return eventErr(n, r.EventID, "stored tree hash %d (level %d) does not match the hash rebuilt from the ledger: merkle_hashes was changed", idx, level)
		}
	}
	v.size = n + 1
	return nil
}

func (v *verifier) root() tlog.Hash {
	if len(v.stack) == 0 {
		return EmptyRoot
	}
	h := v.stack[len(v.stack)-1]
	for i := len(v.stack) - 2; i >= 0; i-- {
		h = tlog.NodeHash(v.stack[i], h)
	}
	return h
}

// checkpointsAt checks every checkpoint whose size is the current tree size.
func (v *verifier) checkpointsAt(ctx context.Context) error {
	for {
		cp, ok := v.cps.peek()
		if !ok {
			return v.cps.err
		}
		if cp.Size > v.size {
			return nil
		}
		if cp.Size < v.size {
			// Sizes arrive in increasing order, so this can only be a size
			// the leaf scan skipped, which addLeaf already reported.
			return checkpointErr(cp.Size, nil, "checkpoint out of order")
		}
		if err := v.checkCheckpoint(ctx, cp, v.root()); err != nil {
			return err
		}
		v.cps.pop()
	}
}

func (v *verifier) checkCheckpoint(ctx context.Context, cp *CheckpointRecord, rebuilt tlog.Hash) error {
	c, err := CheckCheckpointRecord(cp, v.keys)
	if err != nil {
		return err
	}
	if c.Root != rebuilt {
		return checkpointErr(cp.Size, nil, "signed root %x does not match the root %x rebuilt from the ledger: the checkpoint is from a forked history, or events before it were changed", c.Root[:], rebuilt[:])
	}
	if v.prevSize >= 0 {
		if err := v.proveConsistency(ctx, cp.Size, c.Root); err != nil {
			return err
		}
	}
	v.prevSize, v.prevRoot = cp.Size, c.Root
	v.checked++
	return nil
}

func (v *verifier) proveConsistency(ctx context.Context, size int64, root tlog.Hash) error {
	var proof tlog.TreeProof
	if v.prevSize > 0 && v.prevSize < size {
		var err error
		proof, err = tlog.ProveTree(size, v.prevSize, hashReader(ctx, v.src))
		if err != nil {
			return checkpointErr(size, err, "cannot prove consistency with checkpoint size %d: %v", v.prevSize, err)
		}
	}
	if err := CheckConsistency(proof, v.prevSize, v.prevRoot, size, root); err != nil {
		return checkpointErr(size, err, "not consistent with checkpoint size %d: %v", v.prevSize, err)
	}
	return nil
}

func (v *verifier) finish() error {
	if cp, ok := v.cps.peek(); ok {
		return TruncatedError(v.size, cp.Size)
	}
	if v.cps.err != nil {
		return v.cps.err
	}
	got, ok := v.hashes.next()
	if ok {
		return &VerifyError{Seq: -1, CheckpointSize: -1, Msg: fmt.Sprintf("merkle_hashes holds hash %d beyond the %d leaves of the tree: leaves were deleted or truncated", got.idx, v.size)}
	}
	return v.hashes.err
}

// CheckCheckpointRecord verifies a stored checkpoint on its own: the note's
// signature with the key the row records, and that the row's size and root
// are the ones signed.
func CheckCheckpointRecord(cp *CheckpointRecord, keys KeyRing) (Checkpoint, error) {
	c, err := OpenCheckpoint([]byte(cp.Note), keys, cp.KeyID)
	if err != nil {
		return Checkpoint{}, checkpointErr(cp.Size, err, "%v", err)
	}
	if c.Size != cp.Size {
		return c, checkpointErr(cp.Size, nil, "the signed note is for size %d: the checkpoint row was changed", c.Size)
	}
	if !equalHash(cp.Root, c.Root) {
		return c, checkpointErr(cp.Size, nil, "stored root %x differs from the signed root %x: the checkpoint row was changed", cp.Root, c.Root[:])
	}
	return c, nil
}

// VerifyCheckpoint checks one stored checkpoint against the stored tree:
// its signature and that its root is the root the stored hashes give. If
// prev is not nil it also proves that prev's tree is a prefix of cp's.
// This is the quick check; Verify is the full one.
func VerifyCheckpoint(ctx context.Context, cp, prev *CheckpointRecord, hs HashStore, keys KeyRing) error {
	c, err := CheckCheckpointRecord(cp, keys)
	if err != nil {
		return err
	}
	r := hashReader(ctx, hs)
	root, err := tlog.TreeHash(c.Size, r)
	if err != nil {
		return checkpointErr(cp.Size, err, "cannot read the tree's hashes: %v", err)
	}
	if root != c.Root {
		return checkpointErr(cp.Size, nil, "signed root %x does not match the stored tree's root %x", c.Root[:], root[:])
	}
	if prev == nil {
		return nil
	}
	p, err := CheckCheckpointRecord(prev, keys)
	if err != nil {
		return err
	}
	var proof tlog.TreeProof
	if p.Size > 0 && p.Size < c.Size {
		if proof, err = tlog.ProveTree(c.Size, p.Size, r); err != nil {
			return checkpointErr(cp.Size, err, "cannot prove consistency with checkpoint size %d: %v", p.Size, err)
		}
	}
	if err := CheckConsistency(proof, p.Size, p.Root, c.Size, c.Root); err != nil {
		return checkpointErr(cp.Size, err, "not consistent with checkpoint size %d: %v", p.Size, err)
	}
	return nil
}
