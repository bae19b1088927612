// Package middleware meters the tools of a Go MCP server built with mcp-go
// in-process: every tool call is priced, checked and reserved through the
// same pipeline `caracal mcp` uses, before the tool's handler runs, and
// settled after it.
//
//	s := server.NewMCPServer("weather", "1.0",
//		server.WithToolHandlerMiddleware(middleware.New(opts)),
//		server.WithToolFilter(middleware.ToolFilter(opts)))
//
// The rules are those of the proxy (docs/mcp.md): a refused call gets a
// CallToolResult with isError and the decision in structuredContent and
// _meta["dev.caracal/decision"] and the handler never runs; a result with
// isError is still charged; a handler that returns an error (a JSON-RPC
// error for the client) releases the reservation; a handler that panics
// settles as unconfirmed.
package middleware

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/mcp/metering"
	"github.com/caracal-dev/caracal/policy"
)

// Options configure the middleware.
type Options struct {
	// Meter is the budget side; *interpose.Engine satisfies it.
	Meter interpose.Meter
	// Server names the server in resources: mcp:<Server>/<tool>.
	Server string
	// Agent returns the ID of the agent a call is charged to, for example
	// from the context or the request's HTTP headers.
	Agent  func(ctx context.Context, req mcp.CallToolRequest) (string, error)
	Logger *slog.Logger
}

// PriceMetaKey and DecisionMetaKey are the _meta keys Caracal writes.
const (
	PriceMetaKey    = metering.PriceMetaKey
	DecisionMetaKey = metering.DecisionMetaKey
)

// FixedAgent charges every call to one agent ID.
func FixedAgent(id string) func(context.Context, mcp.CallToolRequest) (string, error) {
	return func(context.Context, mcp.CallToolRequest) (string, error) { return id, nil }
}

func (o Options) log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// New returns the metering tool-handler middleware: each call goes
// through interpose.Do, with the handler as the metered function.
func New(o Options) server.ToolHandlerMiddleware {
	return func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			agent, err := o.Agent(ctx, req)
			if err != nil {
				return refusal("", policy.Decision{Code: policy.CodeUnknownAgent, Reason: err.Error()}), nil
			}
			resource := metering.Resource(o.Server, req.Params.Name)
			args := []byte(req.Params.RawArguments)
			if len(args) == 0 && req.Params.Arguments != nil {
				args, _ = json.Marshal(req.Params.Arguments)
			}
			var res *mcp.CallToolResult
			var handlerErr error
			ran := false
			dec, err := interpose.Do(ctx, o.Meter, o.log(), interpose.Call{
				AgentID: agent, Resource: resource, Operation: "tools/call", Upstream: o.Server, Arguments: args,
			}, func(ctx context.Context) (interpose.Result, error) {
				ran = true
				res, handlerErr = next(ctx, req)
				if handlerErr != nil {
					return interpose.Result{}, handlerErr
				}
				return interpose.Result{ToolError: res != nil && res.IsError}, nil
			})
			switch {
			case !ran:
				return refusal(resource, dec), nil
			case handlerErr != nil:
				// A JSON-RPC error for the client: nothing was spent.
				return res, handlerErr
			case err != nil:
				// The tool ran; the expiry sweep settles it as unconfirmed.
				o.log().Error("settle failed", "resource", resource, "err", err)
			}
			return res, nil
		}
	}
}

// refusal is the CallToolResult for a refused call, as the relay writes it.
func refusal(resource string, dec policy.Decision) *mcp.CallToolResult {
	raw := json.RawMessage(metering.RefusalResult(resource, dec))
	r, err := mcp.ParseCallToolResult(&raw)
	if err != nil {
		// metering writes a result with content; this cannot happen.
		panic(fmt.Sprintf("middleware: parse a refusal: %v", err))
	}
	return r
}

// ToolFilter hides tools outside the agent's allowlist from tools/list and
// adds each tool's price to its _meta. ctxAgent returns the agent listing;
// on any error no tool is shown (fail closed).
func ToolFilter(o Options, ctxAgent func(ctx context.Context) (string, error)) server.ToolFilterFunc {
	return func(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
		agent, err := ctxAgent(ctx)
		if err != nil {
			o.log().Warn("tools/list: no agent", "err", err)
			return nil
		}
		allowed, err := o.Meter.Allowlist(ctx, agent)
		if err != nil {
			o.log().Error("tools/list: allowlist unavailable", "err", err)
			return nil
		}
		out := make([]mcp.Tool, 0, len(tools))
		for _, t := range tools {
			resource := metering.Resource(o.Server, t.Name)
			if !allowed(resource) {
				continue
			}
			q, err := o.Meter.Quote(ctx, resource, nil, nil)
			if err != nil {
				// The store's error stays in the log: it can name the database.
				o.log().Error("tools/list: pricing a tool failed", "resource", resource, "err", err)
			}
			// Through JSON, so that _meta holds plain values.
			b, _ := json.Marshal(metering.NewPriceMeta(q, err))
			var price map[string]any
			_ = json.Unmarshal(b, &price)
			meta := &mcp.Meta{AdditionalFields: map[string]any{}}
			if t.Meta != nil {
				meta.ProgressToken = t.Meta.ProgressToken
				for k, v := range t.Meta.AdditionalFields {
					meta.AdditionalFields[k] = v
				}
			}
			meta.AdditionalFields[PriceMetaKey] = price
			t.Meta = meta
			out = append(out, t)
		}
		return out
	}
}
