package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/signingkey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

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
