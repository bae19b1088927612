// Command priced-server serves the example MCP server of package
// internal/priced on stdio: a "weather" server whose tools declare their
// prices in _meta["dev.caracal/price"]. The server lives under internal/
// because the caracal binary serves it too (`caracal quickstart`), and no
// production package imports examples/.
//
//	caracal mcp --agent demo --name weather --trusted -- go run ./examples/priced-server
package main

import (
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/internal/priced"
)

func main() {
	if err := server.ServeStdio(priced.NewServer()); err != nil {
		fmt.Fprintln(os.Stderr, "priced-server:", err)
		os.Exit(1)
	}
}
