package merkle

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Proof format identifiers, the "format" member of every proof document.
const (
	InclusionFormat   = "caracal-inclusion-proof/v1"
	ConsistencyFormat = "caracal-consistency-proof/v1"
)

// InclusionProof shows that one leaf is in the tree a signed checkpoint
// commits to. Hashes are lowercase hex; Proof is the RFC 6962 audit path
// from the leaf upward, as RFC 9162 §2.1.3 defines it.
type InclusionProof struct {
	Format     string   `json:"format"`
	LeafIndex  int64    `json:"leaf_index"`
	TreeSize   int64    `json:"tree_size"`
	LeafHash   string   `json:"leaf_hash"`
	Leaf       string   `json:"leaf,omitempty"` // the canonical leaf bytes, hex
	EventID    string   `json:"event_id,omitempty"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"` // the signed note, verbatim
}

// ConsistencyProof shows that the tree of NewSize extends the tree of
// OldSize, both committed to by signed checkpoints.
type ConsistencyProof struct {
	Format        string   `json:"format"`
	OldSize       int64    `json:"old_size"`
	NewSize       int64    `json:"new_size"`
	Proof         []string `json:"proof"`
	OldCheckpoint string   `json:"old_checkpoint"`
	NewCheckpoint string   `json:"new_checkpoint"`
}

// ProveInclusion builds the inclusion proof of leaf index in the tree of
// the checkpoint cpNote (of size size), reading stored hashes from r.
func ProveInclusion(index, size int64, leaf []byte, cpNote string, r tlog.HashReader) (*InclusionProof, error) {
	p, err := tlog.ProveRecord(size, index, r)
	if err != nil {
		return nil, fmt.Errorf("prove leaf %d in tree of size %d: %w", index, size, err)
	}
	h := tlog.RecordHash(leaf)
	out := &InclusionProof{
		Format: InclusionFormat, LeafIndex: index, TreeSize: size,
		LeafHash: hex.EncodeToString(h[:]), Leaf: hex.EncodeToString(leaf),
		Proof: hexHashes(p), Checkpoint: cpNote,
	}
	if l, err := DecodeLeaf(leaf); err == nil {
		out.EventID = l.ID
	}
	return out, nil
}

// ProveConsistency builds the consistency proof between two checkpoints.
func ProveConsistency(oldSize, newSize int64, oldNote, newNote string, r tlog.HashReader) (*ConsistencyProof, error) {
	out := &ConsistencyProof{Format: ConsistencyFormat, OldSize: oldSize, NewSize: newSize, Proof: []string{}, OldCheckpoint: oldNote, NewCheckpoint: newNote}
	if oldSize > newSize {
		return nil, fmt.Errorf("old size %d is larger than new size %d", oldSize, newSize)
	}
	// An empty tree is a prefix of every tree; RFC 9162 needs no hashes then.
	if oldSize == 0 || oldSize == newSize {
		return out, nil
	}
	p, err := tlog.ProveTree(newSize, oldSize, r)
	if err != nil {
		return nil, fmt.Errorf("prove consistency %d → %d: %w", oldSize, newSize, err)
	}
	out.Proof = hexHashes(p)
	return out, nil
}

// Verify checks the proof offline: the checkpoint's signature with ring,
// its size, the leaf bytes against the leaf hash when present, and the
// audit path against the checkpoint's root. It returns the checkpoint and
// the decoded leaf (zero when the proof carries no leaf bytes).
func (p *InclusionProof) Verify(ring KeyRing) (Checkpoint, Leaf, error) {
	if p.Format != InclusionFormat {
		return Checkpoint{}, Leaf{}, fmt.Errorf("format %q: want %q", p.Format, InclusionFormat)
	}
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), ring, "")
	if err != nil {
		return Checkpoint{}, Leaf{}, fmt.Errorf("checkpoint: %w", err)
	}
	if cp.Size != p.TreeSize {
		return cp, Leaf{}, fmt.Errorf("tree_size %d but the checkpoint is for size %d", p.TreeSize, cp.Size)
	}
	if p.LeafIndex < 0 || p.LeafIndex >= p.TreeSize {
		return cp, Leaf{}, fmt.Errorf("leaf_index %d is outside a tree of size %d", p.LeafIndex, p.TreeSize)
	}
	lh, err := parseHash(p.LeafHash)
	if err != nil {
		return cp, Leaf{}, fmt.Errorf("leaf_hash: %w", err)
	}
	var leaf Leaf
	if p.Leaf != "" {
		b, err := hex.DecodeString(p.Leaf)
		if err != nil {
			return cp, Leaf{}, fmt.Errorf("leaf: %w", err)
		}
		if tlog.RecordHash(b) != lh {
			return cp, Leaf{}, errors.New("leaf bytes do not hash to leaf_hash")
		}
		if leaf, err = DecodeLeaf(b); err != nil {
			return cp, Leaf{}, fmt.Errorf("leaf: %w", err)
		}
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return cp, Leaf{}, fmt.Errorf("proof: %w", err)
	}
	if err := tlog.CheckRecord(proof, p.TreeSize, cp.Root, p.LeafIndex, lh); err != nil {
		return cp, Leaf{}, fmt.Errorf("leaf %d is not in the tree of size %d with root %x: the proof does not verify", p.LeafIndex, p.TreeSize, cp.Root[:])
	}
	return cp, leaf, nil
}

// Verify checks both checkpoints' signatures with ring and the proof that
// the newer tree extends the older. It returns both checkpoints.
func (p *ConsistencyProof) Verify(ring KeyRing) (old, cur Checkpoint, err error) {
	if p.Format != ConsistencyFormat {
		return old, cur, fmt.Errorf("format %q: want %q", p.Format, ConsistencyFormat)
	}
	if old, err = OpenCheckpoint([]byte(p.OldCheckpoint), ring, ""); err != nil {
		return old, cur, fmt.Errorf("old_checkpoint: %w", err)
	}
	if cur, err = OpenCheckpoint([]byte(p.NewCheckpoint), ring, ""); err != nil {
		return old, cur, fmt.Errorf("new_checkpoint: %w", err)
	}
	if old.Size != p.OldSize || cur.Size != p.NewSize {
		return old, cur, fmt.Errorf("sizes %d → %d do not match the checkpoints' %d → %d", p.OldSize, p.NewSize, old.Size, cur.Size)
	}
	if old.Origin != cur.Origin {
		return old, cur, fmt.Errorf("checkpoints come from different logs: %q and %q", old.Origin, cur.Origin)
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return old, cur, fmt.Errorf("proof: %w", err)
	}
	if err := CheckConsistency(proof, old.Size, old.Root, cur.Size, cur.Root); err != nil {
		return old, cur, err
	}
	return old, cur, nil
}

// CheckConsistency verifies an RFC 6962 consistency proof, including the
// cases tlog leaves to the caller (an empty old tree, equal sizes).
func CheckConsistency(proof []tlog.Hash, oldSize int64, oldRoot tlog.Hash, newSize int64, newRoot tlog.Hash) error {
	fail := fmt.Errorf("the tree of size %d (root %x) is not a prefix of the tree of size %d (root %x): the proof does not verify", oldSize, oldRoot[:], newSize, newRoot[:])
	switch {
	case oldSize < 0 || oldSize > newSize:
		return fmt.Errorf("old size %d is not within [0, %d]", oldSize, newSize)
	case oldSize == 0:
		if oldRoot != EmptyRoot || len(proof) != 0 {
			return fail
		}
		return nil
	case oldSize == newSize:
		if oldRoot != newRoot || len(proof) != 0 {
			return fail
		}
		return nil
	}
	if err := tlog.CheckTree(proof, newSize, newRoot, oldSize, oldRoot); err != nil {
		return fail
	}
	return nil
}

// EmptyRoot is the root of the empty tree, SHA-256 of nothing.
var EmptyRoot = tlog.Hash{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

// ParseProof decodes a proof document of either kind, by its format member.
func ParseProof(b []byte) (any, error) {
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("not a proof document: %w", err)
	}
	var v any
	switch head.Format {
	case InclusionFormat:
		v = &InclusionProof{}
	case ConsistencyFormat:
		v = &ConsistencyProof{}
	default:
		return nil, fmt.Errorf("unknown proof format %q: want %q or %q", head.Format, InclusionFormat, ConsistencyFormat)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Format, err)
	}
	return v, nil
}

func hexHashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("%q is not a 32-byte hex hash", s)
	}
	copy(h[:], b)
	return h, nil
}

func parseHashes(ss []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		h, err := parseHash(s)
		if err != nil {
			return nil, fmt.Errorf("hash %d: %w", i, err)
		}
		out[i] = h
	}
	return out, nil
}
