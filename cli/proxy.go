package cli

import "github.com/spf13/cobra"

func newProxyCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "proxy", Short: "not yet available"}
}
