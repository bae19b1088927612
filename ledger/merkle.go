package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/internal/signingkey"
	"github.com/caracal-dev/caracal/merkle"
)

// LeafOf converts an event to its Merkle leaf (see docs/ledger-format.md).
func LeafOf(e Event) merkle.Leaf {
	chain := e.Chain
	if chain == nil {
		chain = []string{}
	}
	return merkle.Leaf{
		ID: e.ID, TimeNS: e.Time.UnixNano(), AgentID: e.AgentID, AgentName: e.AgentName, Chain: chain,
		Resource: e.Resource, Operation: e.Operation, Quantity: e.Quantity, Unit: e.Unit,
		AmountNanos: int64(e.Amount), Currency: e.Currency, RequestID: e.RequestID,
		Outcome: string(e.Outcome), Code: string(e.Code), Reason: e.Reason,
		InputTokens: e.Tokens.Input, OutputTokens: e.Tokens.Output, CachedTokens: e.Tokens.CachedRead,
		CacheWriteTokens: e.Tokens.CacheWrite, ReasoningTokens: e.Tokens.Reasoning,
		Upstream: e.Upstream, Unpriced: e.Unpriced,
	}
}

// VerifySource returns what merkle.Verify reads for m: m itself when it
// implements merkle.Source (the SQL store does), else an adapter over the
// Merkle interface.
func VerifySource(m Merkle) merkle.Source {
	if s, ok := m.(merkle.Source); ok {
		return s
	}
	return merkleAdapter{m}
}

type merkleAdapter struct{ m Merkle }

func (a merkleAdapter) ScanLeaves(ctx context.Context, from, to int64, fn func(*merkle.LeafRecord) error) error {
	var rec merkle.LeafRecord
	if to < 0 {
		to = math.MaxInt64
	}
	return a.m.EventsBySeq(ctx, from, to, func(e Event) error {
		l := LeafOf(e)
		h := l.Hash()
		rec = merkle.LeafRecord{Seq: e.Seq, EventID: e.ID, LeafHash: h[:], Leaf: l}
		return fn(&rec)
	})
}

func (a merkleAdapter) ScanHashes(ctx context.Context, from, to int64, fn func(int64, []byte) error) error {
	n, err := a.m.TreeSize(ctx)
	if err != nil {
		return err
	}
	end := tlog.StoredHashCount(n)
	if to >= 0 {
		end = min(end, to)
	}
	for start := from; start < end; start += 4096 {
		idx := make([]int64, 0, 4096)
		for i := start; i < min(start+4096, end); i++ {
			idx = append(idx, i)
		}
		hs, err := a.m.ReadHashes(ctx, idx)
		if err != nil {
			return err
		}
		for i, h := range hs {
			if err := fn(idx[i], h[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a merkleAdapter) ReadHashes(ctx context.Context, idx []int64) ([][32]byte, error) {
	return a.m.ReadHashes(ctx, idx)
}

func (a merkleAdapter) ScanCheckpoints(ctx context.Context, fn func(*merkle.CheckpointRecord) error) error {
	return a.m.Checkpoints(ctx, func(c Checkpoint) error { return fn(&c) })
}

// KeyRing returns the public keys of every signing key the store knows,
// retired ones included, so checkpoints signed before a rotation verify.
// extra keys (verifier keys) are added; if trustedOnly, only extra keys
// are used, for an audit that does not trust the database's key table.
func KeyRing(ctx context.Context, m Merkle, trustedOnly bool, extra ...string) (merkle.KeyRing, error) {
	ring, err := merkle.NewKeyRing(extra...)
	if err != nil {
		return nil, err
	}
	if trustedOnly {
		return ring, nil
	}
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := ring.Add(k.PublicKey); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
		}
	}
	return ring, nil
}

// VerifyFull runs merkle.Verify over the whole ledger as of now: events
// integrated while it runs are left for the next verification.
func VerifyFull(ctx context.Context, m Merkle, ring merkle.KeyRing, progress func(done int64)) (merkle.Report, error) {
	size, err := VerifySize(ctx, m)
	if err != nil {
		return merkle.Report{}, err
	}
	return merkle.Verify(ctx, VerifySource(m), merkle.VerifyOptions{Keys: ring, Size: size, Progress: progress, ProgressEvery: 1 << 14})
}

// VerifySize is the size a full verification covers: the larger of the
// tree size and the latest checkpoint's size (see merkle.VerifyOptions.Size).
func VerifySize(ctx context.Context, m Merkle) (int64, error) {
	size, err := m.TreeSize(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := m.LatestCheckpoint(ctx)
	switch {
	case err == nil:
		size = max(size, cp.Size)
	case !errors.Is(err, ErrNotFound):
		return 0, err
	}
	return size, nil
}

// VerifyLatest is the quick check behind `caracal merkle verify`: the latest
// checkpoint's signature, its root against the stored tree, and its
// consistency with the checkpoint before it.
func VerifyLatest(ctx context.Context, m Merkle, ring merkle.KeyRing) (Checkpoint, error) {
	latest, err := m.LatestCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	size, err := m.TreeSize(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	if size < latest.Size {
		return latest, merkle.TruncatedError(size, latest.Size)
	}
	var prev *merkle.CheckpointRecord
	// The checkpoint before the latest; stores have no "previous" query,
	// and a scan stops early only at the latest, so remember the last seen.
	err = m.Checkpoints(ctx, func(c Checkpoint) error {
		if c.Size < latest.Size {
			prev = &c
		}
		return nil
	})
	if err != nil {
		return latest, err
	}
	return latest, merkle.VerifyCheckpoint(ctx, &latest, prev, VerifySource(m), ring)
}

// checkpointFor returns the checkpoint of size, or the latest when size < 0.
func checkpointFor(ctx context.Context, m Merkle, size int64) (Checkpoint, error) {
	if size < 0 {
		return m.LatestCheckpoint(ctx)
	}
	return m.CheckpointAt(ctx, size)
}

// ProveInclusion builds the inclusion proof of the event at seq in the
// tree of the checkpoint of size (the latest when size < 0).
func ProveInclusion(ctx context.Context, m Merkle, seq, size int64) (*merkle.InclusionProof, error) {
	cp, err := checkpointFor(ctx, m, size)
	if err != nil {
		return nil, err
	}
	if seq < 0 || seq >= cp.Size {
		return nil, fmt.Errorf("event seq %d is not in the tree of checkpoint size %d: %w", seq, cp.Size, ErrNotFound)
	}
	leaf, err := m.LeafAt(ctx, seq)
	if err != nil {
		return nil, err
	}
	return merkle.ProveInclusion(seq, cp.Size, leaf, cp.Note, merkle.HashReader(ctx, VerifySource(m)))
}

// ProveConsistency builds the consistency proof between the checkpoints of
// sizes from and to (the latest when to < 0).
func ProveConsistency(ctx context.Context, m Merkle, from, to int64) (*merkle.ConsistencyProof, error) {
	newer, err := checkpointFor(ctx, m, to)
	if err != nil {
		return nil, err
	}
	older, err := m.CheckpointAt(ctx, from)
	if err != nil {
		return nil, err
	}
	if older.Size > newer.Size {
		return nil, fmt.Errorf("checkpoint size %d is newer than size %d: %w", older.Size, newer.Size, ErrInvalid)
	}
	return merkle.ProveConsistency(older.Size, newer.Size, older.Note, newer.Note, merkle.HashReader(ctx, VerifySource(m)))
}

// DefaultOrigin is the log origin new keys get when none is configured,
// "caracal/<host>": a verifier must never confuse two logs, so the host
// name (lower case, runs of other characters turned into '-') is part of it.
func DefaultOrigin() string {
	h, err := os.Hostname()
	h = strings.Trim(originUnsafe.ReplaceAllString(strings.ToLower(h), "-"), "-")
	if err != nil || h == "" {
		h = "localhost"
	}
	return "caracal/" + h
}

var originUnsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

// Signing key errors. Test with errors.Is; front ends add how to fix them
// (generate a key, rotate, copy the key file).
var (
	// ErrNoSigningKey means no usable checkpoint signing key was found.
	ErrNoSigningKey = errors.New("no checkpoint signing key")
	// ErrSigningKeyFileMissing is ErrNoSigningKey when the database has an
	// active key but its private key file is not in the keys folder.
	ErrSigningKeyFileMissing = errkind.New(ErrNoSigningKey, "no checkpoint signing key file")
	// ErrSigningKeyActive is ErrConflict when a key would be generated
	// while another is active (rotate instead).
	ErrSigningKeyActive = errkind.New(ErrConflict, "signing key already active")
)

// LoadSigner returns the key that signs new checkpoints: the newest active
// key registered in the store whose private key file is in home's keys
// folder.
func LoadSigner(ctx context.Context, m Merkle, home string) (*merkle.Signer, error) {
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	var wanted []string
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		if k.RetiredAt != nil {
			continue
		}
		kf, err := signingkey.LoadKeyFile(signingkey.KeysDir(home) + string(os.PathSeparator) + k.Name + ".key")
		if errors.Is(err, os.ErrNotExist) {
			wanted = append(wanted, fmt.Sprintf("%s (%s.key)", k.ID, k.Name))
			continue
		}
		if err != nil {
			return nil, err
		}
		if kf.Signer.KeyID() != k.ID {
			return nil, fmt.Errorf("key file %s holds key %s, but the database registers %s under that name", kf.Path, kf.Signer.KeyID(), k.ID)
		}
		return kf.Signer, nil
	}
	if len(wanted) > 0 {
		return nil, errkind.Errorf(ErrSigningKeyFileMissing, "%v in %s: the database's active key is %s; copy its key file there", ErrNoSigningKey, signingkey.KeysDir(home), strings.Join(wanted, ", "))
	}
	return nil, ErrNoSigningKey
}

// SignerLoader returns a function that loads home's current signing key
// from m, for IntegratorConfig.ReloadSigner.
func SignerLoader(m Merkle, home string) func(context.Context) (Signer, error) {
	return func(ctx context.Context) (Signer, error) {
		s, err := LoadSigner(ctx, m, home)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// signingKeyOf describes a key file as the store records it.
func signingKeyOf(kf signingkey.KeyFile, at time.Time) SigningKey {
	return SigningKey{ID: kf.Signer.KeyID(), Name: kf.Name, PublicKey: kf.Signer.VerifierKey(), CreatedAt: at}
}

// GenerateSigningKey creates a key file in home and registers it in the
// store as the active signing key. It refuses if an active key already
// exists (rotate instead). An empty name gets the default "ledger-<hash>";
// an empty origin gets DefaultOrigin.
func GenerateSigningKey(ctx context.Context, m Merkle, home, name, origin string) (signingkey.KeyFile, error) {
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return signingkey.KeyFile{}, err
	}
	for _, k := range keys {
		if k.RetiredAt == nil {
			return signingkey.KeyFile{}, errkind.Errorf(ErrSigningKeyActive, "signing key %s is already active", k.ID)
		}
	}
	if origin == "" {
		origin = DefaultOrigin()
	}
	kf, err := signingkey.GenerateKeyFile(home, name, origin)
	if err != nil {
		return signingkey.KeyFile{}, err
	}
	if err := m.AddSigningKey(ctx, signingKeyOf(kf, time.Now().UTC())); err != nil {
		return signingkey.KeyFile{}, err
	}
	return kf, nil
}

// EnsureSigningKey is what `caracal init` calls: it returns the active
// signing key, registering an existing key file of home in a new database,
// or generating the first key when there is none.
func EnsureSigningKey(ctx context.Context, m Merkle, home, origin string) (kf signingkey.KeyFile, created bool, err error) {
	if s, err := LoadSigner(ctx, m, home); err == nil {
		return signingkey.KeyFile{Signer: s}, false, nil
	} else if !errors.Is(err, ErrNoSigningKey) {
		return signingkey.KeyFile{}, false, err
	}
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return signingkey.KeyFile{}, false, err
	}
	if len(keys) == 0 {
		files, err := signingkey.LoadKeyFiles(home)
		if err != nil {
			return signingkey.KeyFile{}, false, err
		}
		if len(files) > 0 {
			kf := files[len(files)-1]
			if err := m.AddSigningKey(ctx, signingKeyOf(kf, time.Now().UTC())); err != nil {
				return signingkey.KeyFile{}, false, err
			}
			return kf, false, nil
		}
	}
	kf, err = GenerateSigningKey(ctx, m, home, "", origin)
	return kf, err == nil, err
}

// RotateSigningKey creates a new key with the current key's origin,
// registers it, and retires the current one. Checkpoints keep the ID of the
// key that signed them, so older ones still verify.
func RotateSigningKey(ctx context.Context, m Merkle, home, name string) (newKey signingkey.KeyFile, retired []string, err error) {
	keys, err := m.SigningKeys(ctx)
	if err != nil {
		return signingkey.KeyFile{}, nil, err
	}
	origin := ""
	for _, k := range keys {
		if k.RetiredAt == nil {
			origin, _, _ = strings.Cut(k.ID, "+")
			retired = append(retired, k.ID)
		}
	}
	if origin == "" {
		return signingkey.KeyFile{}, nil, errkind.Errorf(ErrNoSigningKey, "%v to rotate", ErrNoSigningKey)
	}
	kf, err := signingkey.GenerateKeyFile(home, name, origin)
	if err != nil {
		return signingkey.KeyFile{}, nil, err
	}
	now := time.Now().UTC()
	// Register first: a crash between the two steps leaves two active keys,
	// and LoadSigner picks the newer, which is the intended end state.
	if err := m.AddSigningKey(ctx, signingKeyOf(kf, now)); err != nil {
		return signingkey.KeyFile{}, nil, err
	}
	for _, id := range retired {
		if err := m.RetireSigningKey(ctx, id, now); err != nil {
			return kf, nil, err
		}
	}
	return kf, retired, nil
}
