package cli

import "github.com/spf13/cobra"

func newInitCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "init", Short: "not yet available"}
}
