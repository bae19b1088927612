package cli

import "github.com/spf13/cobra"

func newMCPCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "mcp", Short: "not yet available"}
}
