package cli

import "github.com/spf13/cobra"

func newDelegationCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "delegation", Short: "not yet available"}
}
