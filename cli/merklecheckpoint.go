package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/ledger"
)

type merkleCheckpointListOptions struct {
	IO     *IOStreams
	Store  func(context.Context) (ledger.Merkle, error)
	Output string
}

func newMerkleCheckpointListCmd(f *Factory) *cobra.Command {
	opts := &merkleCheckpointListOptions{IO: f.IO, Store: func(ctx context.Context) (ledger.Merkle, error) { return merkleStore(ctx, f) }}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every stored checkpoint, oldest first",
		Example: `  caracal merkle checkpoint list
  caracal merkle checkpoint list -o json | jq -r '.[-1].note'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMerkleCheckpointList(cmd.Context(), opts) },
	}
	addOutputFlag(cmd, &opts.Output, false)
	return cmd
}

func runMerkleCheckpointList(ctx context.Context, opts *merkleCheckpointListOptions) error {
	m, err := opts.Store(ctx)
	if err != nil {
		return err
	}
	cps := []ledger.CheckpointView{}
	if err := m.Checkpoints(ctx, func(cp ledger.Checkpoint) error {
		cps = append(cps, ledger.ViewCheckpoint(cp))
		return nil
	}); err != nil {
		return fmt.Errorf("list checkpoints: %w", err)
	}
	rows := make([][]string, 0, len(cps))
	for _, cp := range cps {
		rows = append(rows, []string{strconv.FormatInt(cp.Size, 10), formatTime(cp.CreatedAt), cp.KeyID, cp.Root})
	}
	return printRows(opts.IO.Out, opts.Output, cps, []string{"size", "created", "key", "root"}, rows)
}
