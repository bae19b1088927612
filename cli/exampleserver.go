package cli

import (
	"github.com/mark3labs/mcp-go/server"
	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/priced"
)

// newExampleServerCmd is `caracal quickstart example-server`: the priced
// example MCP server on stdio, the upstream quickstart puts behind the
// proxy. It lives in the binary so the demo needs no second program.
func newExampleServerCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "example-server",
		Short:  "Serve the priced example MCP server (internal/priced) on stdio",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return server.NewStdioServer(priced.NewServer()).Listen(cmd.Context(), f.IO.In, f.IO.Out)
		},
	}
}
