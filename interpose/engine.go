// Package interpose is the enforcement pipeline shared by MCP mode and HTTP
// mode: identify → price → reserve → relay → settle → record. It also
// holds the HTTP reverse proxy for LLM APIs and its provider adapters.
package interpose

import (
	"context"
	"log/slog"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Options configure an Engine.
type Options struct {
	Store ledger.Store
	// DefaultPrice is charged for an unpriced resource (recorded as unpriced).
	DefaultPrice money.Amount
	// Currency of DefaultPrice; USD if empty.
	Currency string
	// Strict refuses unpriced resources with code unpriced.
	Strict bool
	// ReservationTTL is how long a reservation may stay open before the
	// sweep settles it as unconfirmed. Default 10 minutes.
	ReservationTTL time.Duration
	Logger         *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Engine runs the enforcement pipeline. It is safe for concurrent use.
type Engine struct {
	opts Options
}

// New returns an Engine.
func New(o Options) *Engine {
	panic("interpose.New: not implemented yet")
}

// Authenticate resolves an agent API key (crk_…) to its agent. Unknown,
// expired and revoked keys and suspended agents are errors that say which.
func (e *Engine) Authenticate(ctx context.Context, key string) (policy.Agent, error) {
	panic("not implemented yet")
}

// Agent resolves an agent by name or ID.
func (e *Engine) Agent(ctx context.Context, nameOrID string) (policy.Agent, error) {
	panic("not implemented yet")
}

// Quote is what a call to a resource costs before it runs.
type Quote struct {
	Price    money.Amount      `json:"price"`
	Currency string            `json:"currency"`
	Rule     *policy.PriceRule `json:"rule,omitempty"`
	Unpriced bool              `json:"unpriced,omitempty"`
	// Declared is true when the price came from a trusted upstream's _meta.
	Declared bool `json:"declared,omitempty"`
}

// Quote prices a call on resource with JSON arguments args. declared is a
// price a trusted upstream declared for it (nil if none); the pricebook wins.
func (e *Engine) Quote(ctx context.Context, resource string, args []byte, declared *policy.PriceRule) (Quote, error) {
	panic("not implemented yet")
}

// Allowlist returns a function reporting whether agentID may use a resource
// under every allowlist on its chain, for filtering tools/list.
func (e *Engine) Allowlist(ctx context.Context, agentID string) (func(resource string) bool, error) {
	panic("not implemented yet")
}

// Call is one metered operation.
type Call struct {
	AgentID   string
	Resource  string // mcp:<server>/<tool>, llm:<provider>/<model>, http:<upstream>/<route>
	Operation string // tools/call, chat.completions, …
	Upstream  string
	Arguments []byte // JSON, for per-unit prices
	Declared  *policy.PriceRule
	// Reserve, if set, is the amount to reserve instead of the quoted price
	// (HTTP mode's worst case); the call settles later from real usage.
	Reserve  *money.Amount
	Quantity string
	Unit     string
	// RequestID identifies the call for exactly-once settlement; one is
	// generated if empty.
	RequestID string
}

// Ticket is an admitted call holding a reservation. Exactly one of its
// finishing methods takes effect; later calls return the first result.
type Ticket struct {
	RequestID string
	Quote     Quote
	Reserved  money.Amount
	Decision  policy.Decision
}

// Begin prices and reserves a call. It returns a Ticket when the call may
// proceed; otherwise nil and the denying Decision, already recorded in the
// ledger. Any store or evaluation error denies with code unavailable (fail
// closed).
func (e *Engine) Begin(ctx context.Context, c Call) (*Ticket, policy.Decision) {
	panic("not implemented yet")
}

// Result is how a relayed call ended.
type Result struct {
	// Amount overrides the charge; nil means the reserved price, or the
	// cost of Tokens under the rule when Tokens is set.
	Amount *money.Amount
	Tokens *policy.Tokens
	// ToolError is true for a tool result with isError: true; it is
	// charged unless the rule's ChargeErrors says otherwise.
	ToolError bool
	Quantity  string
	Unit      string
}

// Settle charges the call and records the event.
func (e *Engine) Settle(ctx context.Context, t *Ticket, r Result) (ledger.Event, error) {
	panic("not implemented yet")
}

// Release frees the reservation of a call that never ran upstream.
func (e *Engine) Release(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	panic("not implemented yet")
}

// Unconfirmed settles a call whose outcome is unknown (lost upstream,
// client gone) as a charge of the reserved amount marked unconfirmed.
func (e *Engine) Unconfirmed(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	panic("not implemented yet")
}

// Do meters fn: it begins the call, runs fn if admitted, and settles with
// fn's Result, releasing the reservation if fn returns an error. It is the
// Go API for programs that meter their own spending without a proxy.
func (e *Engine) Do(ctx context.Context, c Call, fn func(ctx context.Context) (Result, error)) (policy.Decision, error) {
	panic("not implemented yet")
}

// Run sweeps expired reservations until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	panic("not implemented yet")
}
