package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
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
	now := opts.Now()
	st, err := ledger.StatusOfMerkle(ctx, m, now)
	if err != nil {
		return err
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
		pending = fmt.Sprintf("%d (oldest queued %s ago)", st.Pending, roundAge(now.Sub(*st.OldestPending)))
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
		return printJSON(opts.IO.Out, ledger.ViewCheckpoint(cp))
	}
	_, err = io.WriteString(opts.IO.Out, cp.Note)
	return err
}

// ---- prove

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
