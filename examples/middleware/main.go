// Command middleware is a Go MCP server that meters its own tools
// in-process with Caracal's mcp-go middleware: no proxy in between, the
// same budgets, pricebook and ledger.
//
//	caracal init
//	caracal agent register --name demo --owner you@example.com
//	caracal policy create --agent demo --limit 0.05
//	caracal pricebook set 'mcp:translator/*' --per-call 0.01
//	CARACAL_AGENT=demo go run ./examples/middleware   # speaks MCP on stdio
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger/sqlite"
	cmw "github.com/caracal-dev/caracal/mcp/middleware"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "middleware example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	home := os.Getenv("CARACAL_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		home = filepath.Join(h, ".caracal")
	}
	store, err := sqlite.Open(ctx, filepath.Join(home, "caracal.db"), sqlite.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	// Logs go to stderr: stdout carries the MCP messages.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	engine := interpose.New(interpose.Options{Store: store, Logger: log})
	agent, err := engine.Agent(ctx, os.Getenv("CARACAL_AGENT"))
	if err != nil {
		return fmt.Errorf("set CARACAL_AGENT to a registered agent: %w", err)
	}
	go func() { _ = engine.Run(ctx) }() // settles abandoned reservations

	opts := cmw.Options{Meter: engine, Server: "translator", Agent: cmw.FixedAgent(agent.ID), Logger: log}
	s := server.NewMCPServer("translator", "1.0.0",
		server.WithToolCapabilities(false),
		server.WithToolHandlerMiddleware(cmw.New(opts)),
		server.WithToolFilter(cmw.ToolFilter(opts, func(context.Context) (string, error) { return agent.ID, nil })),
	)
	s.AddTool(mcp.NewTool("shout",
		mcp.WithDescription("Upper-cases a text"),
		mcp.WithString("text", mcp.Required()),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(strings.ToUpper(req.GetString("text", ""))), nil
	})
	return server.ServeStdio(s)
}
