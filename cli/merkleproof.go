package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/signingkey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/merkle"
)

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
