package cli

import "github.com/spf13/cobra"

func newPricebookCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "pricebook", Short: "not yet available"}
}
