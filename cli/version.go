package cli

import "github.com/spf13/cobra"

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "not yet available"}
}
