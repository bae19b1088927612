// Package priced is an example MCP server, written with mcp-go, that
// declares the price of each of its tools in _meta["dev.caracal/price"].
// Caracal uses those prices only when the operator marks the upstream
// trusted (`caracal mcp --trusted`, or `trusted: true` in mcp.upstreams),
// and the operator's pricebook always wins.
//
// examples/priced-server serves it on stdio; `caracal quickstart` runs it
// behind the proxy (through the hidden `caracal quickstart example-server`),
// which is why it lives under internal/ rather than examples/.
package priced

import (
	"context"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// priceMetaKey is the _meta key under which a tool declares its price.
const priceMetaKey = "dev.caracal/price"

// priced attaches a declared price to a tool.
func priced(t mcp.Tool, price map[string]any) mcp.Tool {
	t.Meta = mcp.NewMetaFromMap(map[string]any{priceMetaKey: price})
	return t
}

// NewServer returns the "weather" server: forecast and history declare
// prices (history also per day asked for), ping declares none.
func NewServer() *server.MCPServer {
	s := server.NewMCPServer("weather", "1.0.0", server.WithToolCapabilities(false))

	s.AddTool(priced(mcp.NewTool("forecast",
		mcp.WithDescription("Tomorrow's forecast for a city"),
		mcp.WithString("city", mcp.Required(), mcp.Description("City name")),
	), map[string]any{"price": "0.002", "currency": "USD"}),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			city := req.GetString("city", "")
			if city == "" {
				return mcp.NewToolResultError("city is required"), nil
			}
			return mcp.NewToolResultText(fmt.Sprintf("%s tomorrow: 21°C, light wind, no rain.", city)), nil
		})

	s.AddTool(priced(mcp.NewTool("history",
		mcp.WithDescription("Daily temperatures of the past days"),
		mcp.WithString("city", mcp.Required()),
		mcp.WithNumber("days", mcp.Description("How many days (1-30)")),
	), map[string]any{"price": "0.001", "currency": "USD", "per_unit": map[string]any{"path": "days", "price": "0.0005"}}),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			days := int(req.GetFloat("days", 7))
			if days < 1 || days > 30 {
				return mcp.NewToolResultError("days must be between 1 and 30"), nil
			}
			temps := make([]string, days)
			for i := range temps {
				temps[i] = fmt.Sprintf("%d°C", 15+i%7)
			}
			return mcp.NewToolResultText(req.GetString("city", "") + ": " + strings.Join(temps, ", ")), nil
		})

	s.AddTool(mcp.NewTool("ping", mcp.WithDescription("Free: declares no price")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("pong"), nil
		})

	return s
}
