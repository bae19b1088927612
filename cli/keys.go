package cli

import "github.com/spf13/cobra"

func newKeysCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "keys", Short: "not yet available"}
}
