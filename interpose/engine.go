// Package interpose is the enforcement pipeline shared by MCP mode and HTTP
// mode: identify → price → reserve → relay → settle → record. It also
// holds the HTTP reverse proxy for LLM APIs and its provider adapters.
package interpose

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/internal/errkind"
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
	// ChargeUnpricedLLM charges DefaultPrice for an LLM model (llm:…) no
	// rule prices; false refuses it with code unpriced. Other resources
	// are charged DefaultPrice unless Strict.
	ChargeUnpricedLLM bool
	// AllowUnbudgeted allows an agent with no active policy anywhere on
	// its chain (unmetered, but reserved and recorded); false refuses it
	// with code no_budget.
	AllowUnbudgeted bool
	// ReservationTTL is how long a reservation may stay open before the
	// sweep settles it as unconfirmed. Default 10 minutes.
	ReservationTTL time.Duration
	// SweepInterval is how often Run looks for expired reservations.
	// Default 5 seconds.
	SweepInterval time.Duration
	// PriceCacheTTL is how long the pricebook read from the store is reused
	// before it is read again. Default and maximum 1 second, so a price
	// change reaches every process within a second; negative disables the
	// cache.
	PriceCacheTTL time.Duration
	Logger        *slog.Logger
	// Observer, if set, is told of every decision (see observe.go).
	Observer Observer
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultReservationTTL = 10 * time.Minute
	DefaultSweepInterval  = 5 * time.Second
	MaxPriceCacheTTL      = time.Second
)

// Engine runs the enforcement pipeline. It is safe for concurrent use.
type Engine struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	prices    []policy.PriceRule
	pricesAt  time.Time
	pricesSet bool

	orphans orphans
	names   nameCache
}

// New returns an Engine.
func New(o Options) *Engine {
	if o.Currency == "" {
		o.Currency = money.DefaultCurrency
	}
	if o.ReservationTTL <= 0 {
		o.ReservationTTL = DefaultReservationTTL
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.PriceCacheTTL == 0 || o.PriceCacheTTL > MaxPriceCacheTTL {
		o.PriceCacheTTL = MaxPriceCacheTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Engine{opts: o, log: log}
}

// Authentication errors. Test with errors.Is.
var (
	ErrUnknownKey     = errors.New("unknown API key")
	ErrKeyRevoked     = errors.New("API key revoked")
	ErrKeyExpired     = errors.New("API key expired")
	ErrAgentSuspended = errors.New("agent is suspended")
)

// Authenticate resolves an agent API key (crk_…) to its agent. Unknown,
// expired and revoked keys and suspended agents are errors that say which
// (ErrUnknownKey, ErrKeyExpired, ErrKeyRevoked, ErrAgentSuspended); a store
// failure is returned wrapped.
//
// The key is looked up by its SHA-256 hash, so the secret never reaches
// the store and the lookup's timing depends only on the hash, which an
// attacker cannot steer; the stored prefix is then compared in constant
// time as a second check.
func (e *Engine) Authenticate(ctx context.Context, key string) (policy.Agent, error) {
	if !apikey.LooksValid(key) {
		return policy.Agent{}, ErrUnknownKey
	}
	k, a, err := e.opts.Store.KeyByHash(ctx, apikey.Hash(key))
	if errors.Is(err, ledger.ErrNotFound) {
		return policy.Agent{}, ErrUnknownKey
	}
	if err != nil {
		return policy.Agent{}, fmt.Errorf("authenticate: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(k.Prefix), []byte(key[:min(len(key), len(k.Prefix))])) != 1 {
		return policy.Agent{}, ErrUnknownKey
	}
	now := e.opts.Now()
	if k.RevokedAt != nil {
		return policy.Agent{}, ErrKeyRevoked
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return policy.Agent{}, ErrKeyExpired
	}
	if a.Status == policy.StatusSuspended {
		return policy.Agent{}, errkind.Errorf(ErrAgentSuspended, "agent %q is suspended", a.Name)
	}
	return a, nil
}

// Agent resolves an agent by name or ID.
func (e *Engine) Agent(ctx context.Context, nameOrID string) (policy.Agent, error) {
	a, err := e.opts.Store.GetAgent(ctx, nameOrID)
	if err != nil {
		return policy.Agent{}, fmt.Errorf("agent %q: %w", nameOrID, err)
	}
	return a, nil
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

// pricebook returns the store's price rules, reusing a copy read less than
// PriceCacheTTL ago.
func (e *Engine) pricebook(ctx context.Context) ([]policy.PriceRule, error) {
	if e.opts.PriceCacheTTL < 0 {
		return e.opts.Store.ListPrices(ctx)
	}
	now := time.Now()
	e.mu.Lock()
	if e.pricesSet && now.Sub(e.pricesAt) < e.opts.PriceCacheTTL {
		r := e.prices
		e.mu.Unlock()
		return r, nil
	}
	e.mu.Unlock()
	rules, err := e.opts.Store.ListPrices(ctx)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.prices, e.pricesAt, e.pricesSet = rules, now, true
	e.mu.Unlock()
	return rules, nil
}

// InvalidatePrices makes the next Quote read the pricebook from the store.
func (e *Engine) InvalidatePrices() {
	e.mu.Lock()
	e.pricesSet = false
	e.mu.Unlock()
}

// Quote prices a call on resource with JSON arguments args. declared is a
// price a trusted upstream declared for it (nil if none); the pricebook wins.
// A resource neither rule prices is quoted at DefaultPrice and marked
// Unpriced (Begin refuses it under Strict).
func (e *Engine) Quote(ctx context.Context, resource string, args []byte, declared *policy.PriceRule) (Quote, error) {
	rules, err := e.pricebook(ctx)
	if err != nil {
		return Quote{}, fmt.Errorf("read pricebook: %w", err)
	}
	rule, ok := policy.MatchRule(rules, resource)
	isDeclared := false
	if !ok && declared != nil {
		rule, ok, isDeclared = *declared, true, true
	}
	if !ok {
		return Quote{Price: e.opts.DefaultPrice, Currency: e.opts.Currency, Unpriced: true}, nil
	}
	price, err := policy.Cost(rule, args, policy.Tokens{})
	if err != nil {
		return Quote{}, fmt.Errorf("price %s: %w", resource, err)
	}
	cur := rule.Currency
	if cur == "" {
		cur = money.DefaultCurrency
	}
	return Quote{Price: price, Currency: cur, Rule: &rule, Declared: isDeclared}, nil
}

// Allowlist returns a function reporting whether agentID may use a resource
// under every allowlist on its chain, for filtering tools/list. The
// function reflects the policies active when Allowlist was called.
func (e *Engine) Allowlist(ctx context.Context, agentID string) (func(resource string) bool, error) {
	us, err := e.opts.Store.Usage(ctx, agentID, e.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("allowlist of %s: %w", agentID, err)
	}
	return func(resource string) bool {
		for _, u := range us {
			if !policy.Allows(u.Policy, resource) {
				return false
			}
		}
		return true
	}, nil
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
	// WorstCase explains Reserve, for the reason of a refusal it causes.
	// It is called only then: formatting the explanation for every
	// request cost an LLM request about 19 allocations it never used.
	WorstCase func() WorstCase
}

// Ticket is an admitted call holding a reservation. Exactly one of its
// finishing methods takes effect; later calls return the first result.
type Ticket struct {
	RequestID string
	Quote     Quote
	Reserved  money.Amount
	Decision  policy.Decision
	// args are the call's arguments, for pricing per-unit rules at settlement.
	args []byte
	obs  ticketObs
}

// unavailable is the fail-closed decision.
func unavailable(price money.Amount, currency, why string) policy.Decision {
	return policy.Decision{Code: policy.CodeUnavailable, Reason: "metering is unavailable: " + why, Price: price, Currency: currency}
}

// NewRequestID returns a new request ID, time-ordered as
// ledger.NewRequestID explains, for front ends that name a call before
// Begin does.
func NewRequestID() string { return ledger.NewRequestID() }

// Begin prices and reserves a call. It returns a Ticket when the call may
// proceed; otherwise nil and the denying Decision, already recorded in the
// ledger. Any store or evaluation error denies with code unavailable (fail
// closed), logged; an unknown agent denies with code unknown_agent. Begin
// never panics: a panic inside evaluation is recovered into an unavailable
// decision.
func (e *Engine) begin(ctx context.Context, c Call) (t *Ticket, d policy.Decision) {
	if c.RequestID == "" {
		c.RequestID = ledger.NewRequestID()
	}
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("metering panicked; call denied", "request_id", c.RequestID, "agent", c.AgentID, "resource", c.Resource, "panic", fmt.Sprint(p))
			t, d = nil, unavailable(0, e.opts.Currency, "internal error")
		}
	}()
	q, err := e.Quote(ctx, c.Resource, c.Arguments, c.Declared)
	if err != nil {
		if d, ok := invalidArguments(err, e.opts.Currency); ok {
			e.recordDenial(ctx, ledger.ReserveRequest{RequestID: c.RequestID, AgentID: c.AgentID, Resource: c.Resource,
				Operation: c.Operation, Upstream: c.Upstream, Currency: e.opts.Currency, Now: e.opts.Now()}, d)
			return nil, d
		}
		e.log.Error("pricing failed; call denied", "request_id", c.RequestID, "agent", c.AgentID, "resource", c.Resource, "err", err)
		return nil, unavailable(0, e.opts.Currency, "cannot price the call")
	}
	amount := q.Price
	if c.Reserve != nil {
		amount = *c.Reserve
	}
	if c.Quantity == "" && c.Unit == "" {
		c.Quantity, c.Unit = perUnitQuantity(q, c.Arguments)
	}
	req := ledger.ReserveRequest{
		RequestID: c.RequestID, AgentID: c.AgentID, Resource: c.Resource, Operation: c.Operation,
		Upstream: c.Upstream, Amount: amount, Currency: q.Currency, Unpriced: q.Unpriced,
		Quantity: c.Quantity, Unit: c.Unit, TTL: e.opts.ReservationTTL, Now: e.opts.Now(),
		AllowUnbudgeted: e.opts.AllowUnbudgeted,
	}
	if q.Unpriced {
		if d, refused := e.unpricedRefusal(c.Resource, q.Currency); refused {
			e.recordDenial(ctx, req, d)
			return nil, d
		}
	}
	d, err = e.opts.Store.Reserve(ctx, req)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, policy.Decision{Code: policy.CodeUnknownAgent, Reason: fmt.Sprintf("unknown agent %q", c.AgentID), Price: amount, Currency: q.Currency}
	}
	if err != nil {
		if ambiguous(err) {
			// The commit may have landed although it reported failure; the
			// call is refused, so whatever was reserved is released later.
			e.rememberOrphan(c.RequestID)
		}
		if ctx.Err() != nil {
			// The caller went away; nothing is wrong with the ledger.
			e.log.Info("call abandoned before its reservation", "request_id", c.RequestID, "agent", c.AgentID, "err", err)
			return nil, unavailable(amount, q.Currency, "the call was cancelled")
		}
		e.log.Error("reservation failed; call denied", "request_id", c.RequestID, "agent", c.AgentID, "resource", c.Resource, "err", err)
		return nil, unavailable(amount, q.Currency, "the ledger cannot be reached")
	}
	if !d.Allow {
		return nil, worstCaseReason(d, amount, q.Currency, c.WorstCase)
	}
	return &Ticket{RequestID: c.RequestID, Quote: q, Reserved: amount, Decision: d, args: c.Arguments}, d
}

// Result is how a relayed call ended.
type Result struct {
	// Background is true when the call's answer has already gone out, so
	// nothing waits on the settlement (ledger.SettleRequest.Background).
	Background bool
	// Amount overrides the charge; nil means the reserved price, or the
	// cost of Tokens under the rule when Tokens is set.
	Amount *money.Amount
	Tokens *policy.Tokens
	// ToolError is true for a tool result with isError: true; it is
	// charged unless the rule's ChargeErrors says otherwise.
	ToolError bool
	Quantity  string
	Unit      string
	// Note is recorded as the event's reason when the charge itself gives
	// none (an MCP call's "mrtr: 3 rounds").
	Note string
}

// charge works out what a finished call costs.
func (t *Ticket) charge(r Result) (money.Amount, string, error) {
	rule := t.Quote.Rule
	if r.ToolError && rule != nil && rule.ChargeErrors != nil && !*rule.ChargeErrors {
		return 0, "tool error not charged under the price rule", nil
	}
	switch {
	case r.Amount != nil:
		return *r.Amount, "", nil
	case r.Tokens != nil && rule != nil:
		c, err := policy.Cost(*rule, t.args, *r.Tokens)
		return c, "", err
	default:
		return t.Reserved, "", nil
	}
}

// Settle charges the call and records the event. The charge is r.Amount if
// set, else the cost of r.Tokens under the ticket's price rule, else the
// reserved amount; a tool error is charged zero when the rule's
// ChargeErrors is false.
func (e *Engine) settle(ctx context.Context, t *Ticket, r Result) (ledger.Event, error) {
	amount, reason, err := t.charge(r)
	if err != nil {
		// The call ran but cannot be priced: charge what was reserved.
		e.log.Error("pricing the result failed; charging the reservation", "request_id", t.RequestID, "err", err)
		amount, reason = t.Reserved, "result could not be priced: "+err.Error()
	}
	if reason == "" {
		reason = r.Note
	}
	sr := ledger.SettleRequest{
		RequestID: t.RequestID, Amount: amount, Outcome: policy.OutcomeCharged,
		Quantity: r.Quantity, Unit: r.Unit, Reason: reason, Now: e.opts.Now(),
		Background: r.Background,
	}
	if r.Tokens != nil {
		sr.Tokens = *r.Tokens
	}
	// The upstream bills what it reports, so an overrun is charged in
	// full; it is marked so the ledger shows that the reservation did not
	// bound it. This is the one place for every mode.
	overrun := amount > t.Reserved
	if overrun {
		sr.Code = policy.CodeUsageOverrun
	}
	ev, err := e.opts.Store.Settle(ctx, sr)
	if err != nil {
		return ledger.Event{}, fmt.Errorf("settle %s: %w", t.RequestID, err)
	}
	if overrun && ev.Code == policy.CodeUsageOverrun {
		e.log.Warn("usage overran the reservation; charged in full", "request_id", t.RequestID,
			"agent", ev.AgentName, "agent_id", ev.AgentID, "resource", ev.Resource,
			"reserved", t.Reserved.String(), "charged", ev.Amount.String(), "currency", ev.Currency)
	}
	return ev, nil
}

// Release frees the reservation of a call that never ran upstream.
func (e *Engine) release(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	ev, err := e.opts.Store.Release(ctx, t.RequestID, reason)
	if err != nil {
		return ledger.Event{}, fmt.Errorf("release %s: %w", t.RequestID, err)
	}
	return ev, nil
}

// Unconfirmed settles a call whose outcome is unknown (lost upstream,
// client gone) as a charge of the reserved amount marked unconfirmed.
func (e *Engine) unconfirmed(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	ev, err := e.opts.Store.Settle(ctx, ledger.SettleRequest{
		RequestID: t.RequestID, Amount: t.Reserved, Outcome: policy.OutcomeUnconfirmed, Reason: reason, Now: e.opts.Now(),
	})
	if err != nil {
		return ledger.Event{}, fmt.Errorf("settle %s as unconfirmed: %w", t.RequestID, err)
	}
	return ev, nil
}

// ErrDenied is returned by Do when the call was refused; the error's text
// is the decision's reason and the Decision says why in detail.
var ErrDenied = errors.New("call denied")

// Do meters fn with e: see the package function Do. It is the Go API for
// programs that meter their own spending without a proxy.
func (e *Engine) Do(ctx context.Context, c Call, fn func(ctx context.Context) (Result, error)) (policy.Decision, error) {
	return Do(ctx, e, e.log, c, fn)
}

// Run sweeps expired reservations every SweepInterval until ctx ends,
// settling each as an unconfirmed charge. A failed sweep is logged and
// retried at the next tick. It returns nil when ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	tk := time.NewTicker(e.opts.SweepInterval)
	defer tk.Stop()
	for {
		e.Sweep(ctx)
		select {
		case <-ctx.Done():
			e.releaseOnExit(ctx)
			return nil
		case <-tk.C:
		}
	}
}

// Sweep first releases the reservations of calls refused because their
// reservation reported failure (ReleaseOrphans), so those are never charged,
// then settles every expired reservation once and returns how many it
// settled; a store failure is logged.
func (e *Engine) sweep(ctx context.Context) int {
	e.ReleaseOrphans(ctx)
	n, err := e.opts.Store.ExpireReservations(ctx, e.opts.Now())
	if err != nil && ctx.Err() == nil {
		e.log.Error("expiry sweep failed", "err", err)
	}
	if n > 0 {
		e.log.Info("expired reservations settled as unconfirmed", "count", n)
	}
	return n
}
