package cli

import "github.com/spf13/cobra"

func newQuickstartCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "quickstart", Short: "not yet available"}
}
