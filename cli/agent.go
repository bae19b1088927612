package cli

import "github.com/spf13/cobra"

func newAgentCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "agent", Short: "not yet available"}
}
