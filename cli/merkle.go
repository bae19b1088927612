package cli

import "github.com/spf13/cobra"

func newMerkleCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "merkle", Short: "not yet available"}
}
