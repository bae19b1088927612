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
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Meter is the budget side; *interpose.Engine satisfies it.
type Meter interface {
	Allowlist(ctx context.Context, agentID string) (func(resource string) bool, error)
	Quote(ctx context.Context, resource string, args []byte, declared *policy.PriceRule) (interpose.Quote, error)
	Begin(ctx context.Context, c interpose.Call) (*interpose.Ticket, policy.Decision)
	Settle(ctx context.Context, t *interpose.Ticket, r interpose.Result) (ledger.Event, error)
	Release(ctx context.Context, t *interpose.Ticket, reason string) (ledger.Event, error)
	Unconfirmed(ctx context.Context, t *interpose.Ticket, reason string) (ledger.Event, error)
}

var _ Meter = (*interpose.Engine)(nil)

// Options configure the middleware.
type Options struct {
	Meter Meter
	// Server names the server in resources: mcp:<Server>/<tool>.
	Server string
	// Agent returns the ID of the agent a call is charged to, for example
	// from the context or the request's HTTP headers.
	Agent  func(ctx context.Context, req mcp.CallToolRequest) (string, error)
	Logger *slog.Logger
}

// PriceMetaKey and DecisionMetaKey are the _meta keys Caracal writes.
const (
	PriceMetaKey    = "dev.caracal/price"
	DecisionMetaKey = "dev.caracal/decision"
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

// New returns the metering tool-handler middleware.
func New(o Options) server.ToolHandlerMiddleware {
	return func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
			agent, aerr := o.Agent(ctx, req)
			if aerr != nil {
				return refusal(policy.Decision{Code: policy.CodeUnknownAgent, Reason: aerr.Error()}, ""), nil
			}
			resource := "mcp:" + o.Server + "/" + req.Params.Name
			args := []byte(req.Params.RawArguments)
			if len(args) == 0 && req.Params.Arguments != nil {
				args, _ = json.Marshal(req.Params.Arguments)
			}
			ticket, dec := o.Meter.Begin(ctx, interpose.Call{
				AgentID: agent, Resource: resource, Operation: "tools/call", Upstream: o.Server, Arguments: args,
			})
			if ticket == nil {
				return refusal(dec, resource), nil
			}
			// The settlement must happen even if the caller's context ends.
			sctx := context.WithoutCancel(ctx)
			defer func() {
				if p := recover(); p != nil {
					if _, e := o.Meter.Unconfirmed(sctx, ticket, fmt.Sprintf("tool handler panicked: %v", p)); e != nil {
						o.log().Error("unconfirmed settlement failed", "request", ticket.RequestID, "err", e)
					}
					panic(p)
				}
			}()
			res, err = next(ctx, req)
			if err != nil {
				if _, e := o.Meter.Release(sctx, ticket, "tool handler returned an error: "+err.Error()); e != nil {
					o.log().Error("release failed", "request", ticket.RequestID, "err", e)
				}
				return res, err
			}
			toolErr := res != nil && res.IsError
			if _, e := o.Meter.Settle(sctx, ticket, interpose.Result{ToolError: toolErr}); e != nil {
				o.log().Error("settle failed", "request", ticket.RequestID, "err", e)
			}
			return res, nil
		}
	}
}

// refusal is the CallToolResult for a refused call.
func refusal(dec policy.Decision, resource string) *mcp.CallToolResult {
	reason := strings.TrimSpace(strings.ReplaceAll(dec.Reason, "\n", " "))
	if reason == "" {
		reason = string(dec.Code)
	}
	details := map[string]any{
		"code": dec.Code, "reason": reason, "resource": resource,
		"price": dec.Price, "currency": dec.Currency, "remaining": dec.Remaining,
	}
	if dec.Remaining == nil {
		details["remaining"] = []policy.Remaining{}
	}
	// Round-trip through JSON so structuredContent holds plain values.
	b, _ := json.Marshal(details)
	var plain map[string]any
	_ = json.Unmarshal(b, &plain)
	r := mcp.NewToolResultError(fmt.Sprintf("Caracal refused this call (%s): %s. This is a spending-policy decision, not a transient error; retrying will be refused too.", dec.Code, reason))
	r.StructuredContent = plain
	r.Meta = &mcp.Meta{AdditionalFields: map[string]any{DecisionMetaKey: plain}}
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
			resource := "mcp:" + o.Server + "/" + t.Name
			if !allowed(resource) {
				continue
			}
			price := map[string]any{"unpriced": true}
			if q, err := o.Meter.Quote(ctx, resource, nil, nil); err == nil {
				price = map[string]any{"price": q.Price.String(), "currency": q.Currency, "unpriced": q.Unpriced}
				if q.Rule != nil && q.Rule.PerUnit != nil {
					price["per_unit"] = map[string]any{"path": q.Rule.PerUnit.Path, "price": q.Rule.PerUnit.Price.String()}
				}
			}
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
