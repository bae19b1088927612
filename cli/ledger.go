package cli

import "github.com/spf13/cobra"

func newLedgerCmd(f *Factory) *cobra.Command {
	return &cobra.Command{Use: "ledger", Short: "not yet available"}
}
