// Command priced-server serves the example MCP server of package
// examples/priced on stdio: a "weather" server whose tools declare their
// prices in _meta["dev.caracal/price"].
//
//	caracal mcp --agent demo --name weather --trusted -- go run ./examples/priced-server
package main

import (
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/examples/priced"
)

func main() {
	if err := server.ServeStdio(priced.NewServer()); err != nil {
		fmt.Fprintln(os.Stderr, "priced-server:", err)
		os.Exit(1)
	}
}
