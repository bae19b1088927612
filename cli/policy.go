package cli

import "github.com/spf13/cobra"

func newPolicyCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "policy", Short: "not yet available"}
}
