package cli

import "github.com/spf13/cobra"

func newDBCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "db", Short: "not yet available"}
}
