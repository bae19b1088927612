package merkle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, the
// tree size and the RFC 6962 root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Format returns the checkpoint body: the origin line, the decimal size
// and the standard base64 root, each ending in a newline.
func (c Checkpoint) Format() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint parses a checkpoint body. Extension lines after the root
// are allowed by C2SP and ignored.
func ParseCheckpoint(body []byte) (Checkpoint, error) {
	lines := strings.SplitAfter(string(body), "\n")
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint: want at least origin, size and root lines")
	}
	for i := range 3 {
		if !strings.HasSuffix(lines[i], "\n") {
			return Checkpoint{}, errors.New("checkpoint: truncated")
		}
		lines[i] = strings.TrimSuffix(lines[i], "\n")
	}
	c := Checkpoint{Origin: lines[0]}
	if c.Origin == "" {
		return Checkpoint{}, errors.New("checkpoint: empty origin")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	c.Size = n
	// Strict: a root whose unused trailing bits are set would be a second
	// spelling of the same checkpoint, as a size with a leading zero would.
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	copy(c.Root[:], root)
	return c, nil
}

// KeyID is the identifier Caracal stores with each checkpoint: the signing
// key's name and its 32-bit note key hash in hex, as in "name+1a2b3c4d".
// It is also the prefix of the key's verifier key, so it names the key in
// the notation a C2SP verifier already uses.
func KeyID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// Signer signs checkpoints with an Ed25519 note key. The key's name is the
// log's origin, so every checkpoint it signs starts with that name. Signer
// implements ledger.Signer.
type Signer struct {
	ns   note.Signer
	vkey string
}

// NewSigner parses a note signer key ("PRIVATE+KEY+name+hash+…").
func NewSigner(skey string) (*Signer, error) {
	ns, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	// The verifier key is derived from the seed here because the note
	// package does not expose the public half of a Signer.
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	raw, _ := base64.StdEncoding.DecodeString(parts[4]) // validated by note.NewSigner
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(ns.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Signer{ns: ns, vkey: vkey}, nil
}

// GenerateKey makes a new Ed25519 note key pair named origin. skey is the
// secret signer key, vkey the public verifier key.
func GenerateKey(origin string) (skey, vkey string, err error) {
	if origin == "" || strings.ContainsAny(origin, "+ \t\n\r") {
		return "", "", fmt.Errorf("key name %q: must be non-empty without spaces or '+'", origin)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return skey, vkey, nil
}

// KeyID returns the key's identifier (see the KeyID function).
func (s *Signer) KeyID() string { return KeyID(s.ns.Name(), s.ns.KeyHash()) }

// Origin is the log origin the signer writes into checkpoints.
func (s *Signer) Origin() string { return s.ns.Name() }

// VerifierKey returns the public key in note verifier-key format.
func (s *Signer) VerifierKey() string { return s.vkey }

// Sign returns the signed note of the checkpoint for a tree of size with root.
func (s *Signer) Sign(size int64, root [32]byte) ([]byte, error) {
	c := Checkpoint{Origin: s.ns.Name(), Size: size, Root: root}
	msg, err := note.Sign(&note.Note{Text: string(c.Format())}, s.ns)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// KeyRing holds the public keys checkpoints are verified against, by key ID.
type KeyRing map[string]note.Verifier

// NewKeyRing parses verifier keys.
func NewKeyRing(vkeys ...string) (KeyRing, error) {
	r := KeyRing{}
	for _, k := range vkeys {
		if err := r.Add(k); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Add parses a verifier key and adds it.
func (r KeyRing) Add(vkey string) error {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return fmt.Errorf("public key %q: %w", vkey, err)
	}
	r[KeyID(v.Name(), v.KeyHash())] = v
	return nil
}

// ErrSignature is wrapped by every checkpoint signature failure.
var ErrSignature = errors.New("signature does not verify")

// OpenCheckpoint verifies the signed note msg with the key keyID from ring
// (any key of the ring when keyID is empty) and parses its checkpoint.
func OpenCheckpoint(msg []byte, ring KeyRing, keyID string) (Checkpoint, error) {
	var known []note.Verifier
	if keyID != "" {
		v, ok := ring[keyID]
		if !ok {
			return Checkpoint{}, fmt.Errorf("%w: signed by unknown key %s", ErrSignature, keyID)
		}
		known = append(known, v)
	} else {
		for _, v := range ring {
			known = append(known, v)
		}
	}
	n, err := note.Open(msg, note.VerifierList(known...))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w with key %s", ErrSignature, KeyID(invalid.Name, invalid.Hash))
		case errors.As(err, &unknown) && keyID != "":
			return Checkpoint{}, fmt.Errorf("%w with key %s", ErrSignature, keyID)
		case errors.As(err, &unknown):
			return Checkpoint{}, fmt.Errorf("%w with any given key", ErrSignature)
		default:
			return Checkpoint{}, fmt.Errorf("%w: %w", ErrSignature, err)
		}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != n.Sigs[0].Name {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q is not the signing key's name %q", c.Origin, n.Sigs[0].Name)
	}
	return c, nil
}

// equalHash compares a stored hash column with a computed hash.
func equalHash(b []byte, h tlog.Hash) bool { return bytes.Equal(b, h[:]) }
