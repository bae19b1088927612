package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/signingkey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

func newMerkleCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "merkle",
		Short: "Inspect, prove and verify the tamper-evident ledger",
		Long: `Every ledger event is a leaf of an RFC 6962 Merkle tree; signed checkpoints
(C2SP tlog-checkpoint notes, Ed25519) commit to the tree's size and root.
Anyone holding a checkpoint and the public key (caracal keys export-public)
can check that an event is in the ledger and that the ledger only grew.
The leaf and proof formats are documented in docs/ledger-format.md.`,
		Args: noArgs,
	}
	cmd.AddCommand(
		newMerkleStatusCmd(f),
		newMerkleCheckpointCmd(f),
		newMerkleProveCmd(f),
		newMerkleConsistencyCmd(f),
		newMerkleVerifyCmd(f),
		newMerkleVerifyProofCmd(f),
		newMerkleIntegrateCmd(f),
	)
	return cmd
}

// merkleStore opens the configured store's Merkle side.
func merkleStore(ctx context.Context, f *Factory) (ledger.Merkle, error) {
	return f.Store(ctx)
}

// ---- status

type merkleStatusOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Now    func() time.Time
	Output string
}

// merkleStatus is `caracal merkle status -o json`.
type merkleStatus struct {
	TreeSize      int64              `json:"tree_size"`
	Checkpoint    *checkpointSummary `json:"checkpoint"` // null before the first integration
	Pending       int64              `json:"pending_events"`
	OldestPending *time.Time         `json:"oldest_pending,omitempty"`
	LagSeconds    float64            `json:"lag_seconds"` // age of the oldest pending event; 0 when none
}

type checkpointSummary struct {
	Size       int64     `json:"size"`
	Root       string    `json:"root"` // hex
	KeyID      string    `json:"key_id"`
	CreatedAt  time.Time `json:"created_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

func newMerkleStatusCmd(f *Factory) *cobra.Command {
	opts := &merkleStatusOptions{IO: f.IO, Now: f.now, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the tree size, latest checkpoint and integration lag",
		Example: `  caracal merkle status
  caracal merkle status -o json | jq .lag_seconds`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMerkleStatus(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runMerkleStatus(ctx context.Context, opts *merkleStatusOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	var st merkleStatus
	if st.TreeSize, err = m.TreeSize(ctx); err != nil {
		return err
	}
	now := opts.Now()
	cp, err := m.LatestCheckpoint(ctx)
	switch {
	case err == nil:
		st.Checkpoint = &checkpointSummary{Size: cp.Size, Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, CreatedAt: cp.CreatedAt, AgeSeconds: now.Sub(cp.CreatedAt).Seconds()}
	case !errors.Is(err, ledger.ErrNotFound):
		return err
	}
	var oldest time.Time
	if st.Pending, oldest, err = m.PendingEvents(ctx); err != nil {
		return err
	}
	if st.Pending > 0 {
		st.OldestPending = &oldest
		st.LagSeconds = max(0, now.Sub(oldest).Seconds())
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, st)
	}
	cpLine, root := "none yet (no integrator has run)", "-"
	if c := st.Checkpoint; c != nil {
		cpLine = fmt.Sprintf("size %d, signed by %s at %s (%s ago)", c.Size, c.KeyID, formatTime(c.CreatedAt), roundAge(now.Sub(c.CreatedAt)))
		root = c.Root
	}
	pending := "0"
	if st.Pending > 0 {
		pending = fmt.Sprintf("%d (oldest queued %s ago)", st.Pending, roundAge(now.Sub(oldest)))
	}
	return printKV(opts.IO.Out,
		[2]string{"Tree size", fmt.Sprint(st.TreeSize)},
		[2]string{"Root", root},
		[2]string{"Latest checkpoint", cpLine},
		[2]string{"Pending events", pending},
	)
}

func roundAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// ---- checkpoint

type merkleCheckpointOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Size   int64
	Output string
}

func newMerkleCheckpointCmd(f *Factory) *cobra.Command {
	opts := &merkleCheckpointOptions{IO: f.IO, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint, verbatim",
		Long: `Checkpoint prints a signed checkpoint exactly as stored: a C2SP
tlog-checkpoint body (origin, tree size, base64 root) followed by its Ed25519
note signature. Keep copies: a checkpoint held outside the database is what
proves later that the ledger was not rewritten.`,
		Example: `  caracal merkle checkpoint > checkpoint-$(date +%F).txt
  caracal merkle checkpoint --size 1200`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := treeSizeFlag(cmd, "size", opts.Size); err != nil {
				return err
			}
			return runMerkleCheckpoint(cmd.Context(), opts)
		},
	}
	cmd.Flags().Int64Var(&opts.Size, "size", -1, "the checkpoint of this tree size instead of the latest")
	addOutputFlag(cmd, &opts.Output, false)
	cmd.AddCommand(newMerkleCheckpointListCmd(f))
	return cmd
}

// treeSizeFlag refuses a negative tree size given for flag name; its
// default -1 (not given) means the latest checkpoint.
func treeSizeFlag(cmd *cobra.Command, name string, v int64) error {
	if cmd.Flags().Changed(name) && v < 0 {
		return Usagef("--%s %d: must be 0 or more", name, v)
	}
	return nil
}

func runMerkleCheckpoint(ctx context.Context, opts *merkleCheckpointOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	var cp ledger.Checkpoint
	if opts.Size >= 0 {
		cp, err = m.CheckpointAt(ctx, opts.Size)
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("--size %d: no checkpoint of that size (see caracal merkle status)", opts.Size)
		}
	} else {
		cp, err = m.LatestCheckpoint(ctx)
		if errors.Is(err, ledger.ErrNotFound) {
			return errors.New("no checkpoint yet: the ledger has not been integrated (run caracal merkle integrate)")
		}
	}
	if err != nil {
		return err
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, toCheckpointJSON(cp))
	}
	_, err = io.WriteString(opts.IO.Out, cp.Note)
	return err
}

// ---- prove

type merkleProveOptions struct {
	IO      *IOStreams
	Store   func(context.Context) (ledger.Merkle, error)
	EventID string
	Seq     int64
	Size    int64
}

func newMerkleProveCmd(f *Factory) *cobra.Command {
	opts := &merkleProveOptions{IO: f.IO, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "prove (--event ID | --seq N) [--size S]",
		Short: "Print an inclusion proof for one event, as JSON",
		Long: `Prove prints the proof that one ledger event is in the tree committed to
by a signed checkpoint (the latest, or the one of --size S). The JSON format
is documented in docs/ledger-format.md; caracal merkle verify-proof, or any
RFC 6962 verifier, checks it without the database.`,
		Example: `  caracal merkle prove --event 0b5f7c1e-8d4a-4f2b-9e61-3a7d2c9b1f00 > proof.json
  caracal merkle prove --seq 41 --size 120
  caracal merkle verify-proof proof.json --key "$(caracal keys export-public)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("event") == cmd.Flags().Changed("seq") {
				return Usagef("give exactly one of --event or --seq")
			}
			if !cmd.Flags().Changed("seq") {
				opts.Seq = -1
			} else if opts.Seq < 0 {
				return Usagef("--seq %d: must be 0 or more", opts.Seq)
			}
			if err := treeSizeFlag(cmd, "size", opts.Size); err != nil {
				return err
			}
			return runMerkleProve(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.EventID, "event", "", "the event's ID")
	cmd.Flags().Int64Var(&opts.Seq, "seq", -1, "the event's sequence number (leaf index)")
	cmd.Flags().Int64Var(&opts.Size, "size", -1, "prove against the checkpoint of this tree size (default: the latest)")
	return cmd
}

func runMerkleProve(ctx context.Context, opts *merkleProveOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	seq := opts.Seq
	if opts.EventID != "" {
		if seq, err = m.SeqOf(ctx, opts.EventID); err != nil {
			if errors.Is(err, ledger.ErrNotFound) {
				return fmt.Errorf("--event: %w", err) // the store's message names the event
			}
			return err
		}
	}
	if opts.Size >= 0 {
		if _, err := m.CheckpointAt(ctx, opts.Size); errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("--size %d: no checkpoint of that size (see caracal merkle status)", opts.Size)
		}
	}
	p, err := ledger.ProveInclusion(ctx, m, seq, opts.Size)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) && opts.Seq >= 0 {
			return fmt.Errorf("--seq %d: no event at that position in the tree of the checkpoint (see caracal merkle status)", seq)
		}
		return err
	}
	return printJSON(opts.IO.Out, p)
}

// ---- consistency

type merkleConsistencyOptions struct {
	IO       *IOStreams
	Store    func(context.Context) (ledger.Merkle, error)
	From, To int64
}

func newMerkleConsistencyCmd(f *Factory) *cobra.Command {
	opts := &merkleConsistencyOptions{IO: f.IO, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "consistency --from N [--to M]",
		Short: "Print a consistency proof between two checkpoints, as JSON",
		Long: `Consistency prints the proof that the tree of the checkpoint of size --to
(default: the latest) extends the tree of the checkpoint of size --from
without changing it: the ledger only grew. Both signed checkpoints are in
the JSON, documented in docs/ledger-format.md.`,
		Example: `  caracal merkle consistency --from 1200 > consistency.json
  caracal merkle consistency --from 1200 --to 5000
  caracal merkle verify-proof consistency.json --key caracal.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("from") {
				return Usagef("--from is required")
			}
			if opts.From < 0 {
				return Usagef("--from %d: must be 0 or more", opts.From)
			}
			if err := treeSizeFlag(cmd, "to", opts.To); err != nil {
				return err
			}
			if cmd.Flags().Changed("to") && opts.From > opts.To {
				return Usagef("--from %d: must not be more than --to %d", opts.From, opts.To)
			}
			return runMerkleConsistency(cmd.Context(), opts)
		},
	}
	cmd.Flags().Int64Var(&opts.From, "from", -1, "size of the older checkpoint")
	cmd.Flags().Int64Var(&opts.To, "to", -1, "size of the newer checkpoint (default: the latest)")
	return cmd
}

func runMerkleConsistency(ctx context.Context, opts *merkleConsistencyOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	for _, s := range []struct {
		flag string
		size int64
	}{{"--from", opts.From}, {"--to", opts.To}} {
		if s.size < 0 {
			continue
		}
		if _, err := m.CheckpointAt(ctx, s.size); errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("%s %d: no checkpoint of that size (see caracal merkle status)", s.flag, s.size)
		} else if err != nil {
			return err
		}
	}
	p, err := ledger.ProveConsistency(ctx, m, opts.From, opts.To)
	if err != nil {
		if errors.Is(err, ledger.ErrInvalid) {
			return fmt.Errorf("--from %d: %w", opts.From, err)
		}
		return err
	}
	return printJSON(opts.IO.Out, p)
}

// ---- verify

type merkleVerifyOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Full   bool
	Keys   []string // trusted public keys; empty trusts the database's key table
	Output string
}

// verifyResult is `caracal merkle verify -o json`.
type verifyResult struct {
	OK             bool   `json:"ok"`
	Full           bool   `json:"full"`
	Size           int64  `json:"size"`           // events checked (full) or checkpoint size
	Root           string `json:"root,omitempty"` // hex
	Checkpoints    int64  `json:"checkpoints"`
	Error          string `json:"error,omitempty"`
	Seq            *int64 `json:"seq,omitempty"`             // the first bad event
	CheckpointSize *int64 `json:"checkpoint_size,omitempty"` // the first bad checkpoint
}

func newMerkleVerifyCmd(f *Factory) *cobra.Command {
	opts := &merkleVerifyOptions{IO: f.IO, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "verify [--full]",
		Short: "Verify the ledger against its signed checkpoints",
		Long: `Verify checks the latest checkpoint: its signature, that its root is the
stored tree's root, and that it extends the checkpoint before it.

With --full it recomputes every leaf from the ledger rows as stored, rebuilds
every stored tree hash, checks every checkpoint's signature (with the key
that checkpoint records, so checkpoints signed before a key rotation still
verify) and root, and proves consistency between consecutive checkpoints.

Verification stops at the first event or checkpoint that does not match,
names it, and exits 1. Signatures are checked with the public keys in the
database; pass --key (repeatable) to trust only keys you hold yourself.`,
		Example: `  caracal merkle verify
  caracal merkle verify --full
  caracal merkle verify --full --key ~/caracal.pub -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMerkleVerify(cmd.Context(), opts) },
	}
	cmd.Flags().BoolVar(&opts.Full, "full", false, "recompute and check every event, hash and checkpoint")
	cmd.Flags().StringArrayVar(&opts.Keys, "key", nil, "trust only this public key (a note verifier key or a file holding one); repeatable")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runMerkleVerify(ctx context.Context, opts *merkleVerifyOptions) error {
	trusted := make([]string, 0, len(opts.Keys))
	for _, k := range opts.Keys {
		vk, err := signingkey.ReadPublicKey(k)
		if err != nil {
			return Usagef("--key: %v", err)
		}
		trusted = append(trusted, vk)
	}
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	ring, err := ledger.KeyRing(ctx, m, len(trusted) > 0, trusted...)
	if err != nil {
		return err
	}
	res := verifyResult{Full: opts.Full}
	var verr error
	if opts.Full {
		total, err := ledger.VerifySize(ctx, m)
		if err != nil {
			return err
		}
		vo := merkle.VerifyOptions{Keys: ring, Size: total}
		if opts.IO.Terminal {
			vo.ProgressEvery = 1 << 14
			vo.Progress = progressBar(opts.IO.ErrOut, total, time.Now())
		}
		rep, err := merkle.Verify(ctx, ledger.VerifySource(m), vo)
		if opts.IO.Terminal {
			fmt.Fprint(opts.IO.ErrOut, "\r\033[K")
		}
		verr = err
		if err == nil {
			res.Size, res.Root, res.Checkpoints = rep.Size, hex.EncodeToString(rep.Root[:]), rep.Checkpoints
		}
	} else {
		cp, err := ledger.VerifyLatest(ctx, m, ring)
		if errors.Is(err, ledger.ErrNotFound) && cp.Note == "" {
			return errors.New("no checkpoint yet: nothing to verify (run caracal merkle integrate)")
		}
		verr = err
		res.Size, res.Root, res.Checkpoints = cp.Size, hex.EncodeToString(cp.Root), 1
	}
	var ve *merkle.VerifyError
	if verr != nil && !errors.As(verr, &ve) {
		return verr // not a verdict: the store failed
	}
	res.OK = verr == nil
	if ve != nil {
		res.Error, res.Size, res.Root, res.Checkpoints = ve.Error(), 0, "", 0
		if ve.Seq >= 0 {
			res.Seq = &ve.Seq
		}
		if ve.CheckpointSize >= 0 {
			res.CheckpointSize = &ve.CheckpointSize
		}
	}
	if opts.Output == FormatJSON {
		if err := printJSON(opts.IO.Out, res); err != nil {
			return err
		}
		if !res.OK {
			return &SilentExit{Code: 1}
		}
		return nil
	}
	if !res.OK {
		return fmt.Errorf("verification failed: %w", verr)
	}
	if opts.Full {
		fmt.Fprintf(opts.IO.Out, "OK: %s, %s verified; root %s\n", plural(res.Size, "event"), plural(res.Checkpoints, "checkpoint"), res.Root)
	} else {
		fmt.Fprintf(opts.IO.Out, "OK: checkpoint size %d verified against the stored tree; root %s\n", res.Size, res.Root)
		fmt.Fprintln(opts.IO.Out, "Checked: the latest checkpoint's signature, its root against the stored tree hashes, and its consistency with the checkpoint before it.")
		fmt.Fprintln(opts.IO.Out, "Checkpoints consistent; events not re-hashed: use --full to re-hash every event and check every checkpoint.")
	}
	return nil
}

// progressBar returns a merkle.VerifyOptions.Progress that redraws one
// line on w.
func progressBar(w io.Writer, total int64, start time.Time) func(int64) {
	return func(done int64) {
		pct := 100.0
		if total > 0 {
			pct = float64(done) * 100 / float64(total)
		}
		const width = 30
		n := min(width, int(pct*width/100))
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < n {
				bar[i] = '='
			}
		}
		rate := float64(done) / max(time.Since(start).Seconds(), 1e-3)
		fmt.Fprintf(w, "\r[%s] %5.1f%%  %d/%d events  %.0f/s", bar, pct, done, total, rate)
	}
}

// ---- verify-proof

type merkleVerifyProofOptions struct {
	IO     *IOStreams
	File   string
	Keys   []string
	Output string
}

// proofVerified is `merkle verify-proof -o json` for a proof that verifies
// (one that does not is an error, exit 1).
type proofVerified struct {
	Kind      string `json:"kind"` // inclusion or consistency
	Origin    string `json:"origin"`
	Size      int64  `json:"size"`
	Root      string `json:"root"`                 // hex
	LeafIndex *int64 `json:"leaf_index,omitempty"` // inclusion
	EventID   string `json:"event_id,omitempty"`   // inclusion, when the proof carries the event
	OldSize   *int64 `json:"old_size,omitempty"`   // consistency
}

func newMerkleVerifyProofCmd(f *Factory) *cobra.Command {
	opts := &merkleVerifyProofOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --key PUBLIC_KEY",
		Short: "Check an inclusion or consistency proof offline",
		Long: `Verify-proof checks a proof printed by caracal merkle prove or caracal merkle
consistency, with no database: the checkpoint's signature with the given
public key, and the proof against the checkpoint's root. FILE may be - for
standard input. PUBLIC_KEY is a note verifier key (name+hash+base64, as
printed by caracal keys export-public) or a file holding one.`,
		Example: `  caracal merkle verify-proof proof.json --key caracal.pub
  caracal merkle prove --seq 41 | caracal merkle verify-proof - --key "caracal/host+1a2b3c4d+AX…"`,
		Args: exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if len(opts.Keys) == 0 {
				return Usagef("--key is required: the public key the checkpoint must be signed with")
			}
			return runMerkleVerifyProof(opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.Keys, "key", nil, "public key (or a file holding it) to check the checkpoint signature with; repeatable")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runMerkleVerifyProof(opts *merkleVerifyProofOptions) error {
	ring := merkle.KeyRing{}
	for _, k := range opts.Keys {
		vk, err := signingkey.ReadPublicKey(k)
		if err != nil {
			return Usagef("--key: %v", err)
		}
		if err := ring.Add(vk); err != nil {
			return Usagef("--key: %v", err)
		}
	}
	var data []byte
	var err error
	if opts.File == "-" {
		data, err = io.ReadAll(opts.IO.In)
	} else {
		data, err = os.ReadFile(opts.File)
	}
	if err != nil {
		return fmt.Errorf("read proof: %w", err)
	}
	doc, err := merkle.ParseProof(data)
	if err != nil {
		// A file that is not a proof is a malformed argument, like an
		// invalid pricebook file; a proof that does not verify is not.
		return Usagef("%s: %w", opts.File, err)
	}
	switch p := doc.(type) {
	case *merkle.InclusionProof:
		cp, leaf, err := p.Verify(ring)
		if err != nil {
			return fmt.Errorf("proof does not verify: %w", err)
		}
		if opts.Output == FormatJSON {
			return printJSON(opts.IO.Out, proofVerified{Kind: "inclusion", Origin: cp.Origin, Size: cp.Size,
				Root: hex.EncodeToString(cp.Root[:]), LeafIndex: &p.LeafIndex, EventID: leaf.ID})
		}
		what := fmt.Sprintf("leaf %d", p.LeafIndex)
		if leaf.ID != "" {
			what = fmt.Sprintf("event %s (seq %d, %s %s, %s)", leaf.ID, p.LeafIndex, formatNanos(leaf.AmountNanos), leaf.Currency, leaf.Outcome)
		}
		fmt.Fprintf(opts.IO.Out, "OK: %s is in the tree of size %d of log %q (root %x)\n", what, cp.Size, cp.Origin, cp.Root[:])
	case *merkle.ConsistencyProof:
		old, cur, err := p.Verify(ring)
		if err != nil {
			return fmt.Errorf("proof does not verify: %w", err)
		}
		if opts.Output == FormatJSON {
			return printJSON(opts.IO.Out, proofVerified{Kind: "consistency", Origin: cur.Origin, Size: cur.Size,
				Root: hex.EncodeToString(cur.Root[:]), OldSize: &old.Size})
		}
		fmt.Fprintf(opts.IO.Out, "OK: the tree of size %d of log %q extends the tree of size %d unchanged\n", cur.Size, cur.Origin, old.Size)
	}
	return nil
}

// formatNanos prints an int64 nano-unit amount as a decimal string
// without going through floating point.
func formatNanos(n int64) string {
	neg := n < 0
	u := uint64(n)
	if neg {
		u = -u
	}
	s := fmt.Sprintf("%d.%09d", u/1e9, u%1e9)
	for s[len(s)-1] == '0' && s[len(s)-2] != '.' {
		s = s[:len(s)-1]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ---- integrate

type merkleIntegrateOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Home   func() (string, error)
	Batch  int
	Output string
}

func newMerkleIntegrateCmd(f *Factory) *cobra.Command {
	opts := &merkleIntegrateOptions{IO: f.IO, Home: f.Home, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:   "integrate",
		Short: "Put every queued event into the tree and sign a checkpoint now",
		Long: `Integrate does at once what caracal mcp and caracal proxy do in the
background every 200 ms: it gives every committed event not yet in the tree
a leaf, stores the tree hashes and signs a checkpoint, in one transaction
per batch. It is safe to run beside a serving process.`,
		Example: `  caracal merkle integrate
  caracal merkle integrate --batch 50000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Batch <= 0 {
				return Usagef("--batch %d: must be positive", opts.Batch)
			}
			return runMerkleIntegrate(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVar(&opts.Batch, "batch", ledger.DefaultIntegrateBatch, "events per transaction")
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runMerkleIntegrate(ctx context.Context, opts *merkleIntegrateOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	home, err := opts.Home()
	if err != nil {
		return err
	}
	sign, err := ledger.LoadSigner(ctx, m, home)
	if err != nil {
		return err
	}
	before, err := m.TreeSize(ctx)
	if err != nil {
		return err
	}
	in := ledger.NewIntegrator(m, sign, ledger.IntegratorConfig{Batch: opts.Batch, Logger: slog.New(slog.DiscardHandler)})
	cp, err := in.Flush(ctx)
	if err != nil {
		return err
	}
	if opts.Output == FormatJSON {
		return printJSON(opts.IO.Out, struct {
			Integrated int64  `json:"integrated"`
			Size       int64  `json:"size"`
			Root       string `json:"root"`
			KeyID      string `json:"key_id"`
		}{cp.Size - before, cp.Size, hex.EncodeToString(cp.Root), cp.KeyID})
	}
	fmt.Fprintf(opts.IO.Out, "Integrated %s; checkpoint size %d signed by %s\n", plural(cp.Size-before, "event"), cp.Size, cp.KeyID)
	return nil
}
