package interpose

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Observer is told of every decision the engine takes, in every mode (MCP,
// LLM, HTTP), so logging and metrics hang off one place. Observe is called
// synchronously after the decision, on the caller's goroutine: it must be
// quick and safe for concurrent use, and must not keep ctx.
type Observer interface {
	Observe(ctx context.Context, r Record)
}

// Observers calls each of its members in turn.
type Observers []Observer

// Observe implements Observer.
func (obs Observers) Observe(ctx context.Context, r Record) {
	for _, o := range obs {
		o.Observe(ctx, r)
	}
}

// Decision outcomes a Record reports.
const (
	Allowed     = "allowed"     // Begin admitted the call and reserved Amount
	Denied      = "denied"      // Begin refused the call; Code says why
	Settled     = "settled"     // Settle charged Amount
	Released    = "released"    // Release freed the reservation; nothing charged
	Unconfirmed = "unconfirmed" // Unconfirmed (or the expiry sweep) charged Amount, outcome unknown
)

// CodeError is a Record's Code when the store failed to record a
// settlement, release or unconfirmed charge (Err holds the error).
const CodeError = "error"

// CodeExpired is the Code of the Record the expiry sweep reports: Count
// reservations were settled as unconfirmed, with no detail per call.
const CodeExpired = "expired"

// Record describes one decision.
type Record struct {
	// Outcome is one of Allowed, Denied, Settled, Released, Unconfirmed.
	Outcome string
	// Code is the decision code for Allowed and Denied (policy.Code); for
	// the finishing outcomes the ledger event's outcome (charged, refunded,
	// unconfirmed), CodeError when the store failed, or CodeExpired.
	Code string
	// Kind is the resource's mode: mcp, llm or http (its prefix).
	Kind      string
	RequestID string
	AgentID   string
	// AgentName is the agent's name, when it could be resolved.
	AgentName string
	Resource  string
	// Amount is what was reserved (Allowed), quoted (Denied) or charged.
	Amount   money.Amount
	Currency string
	// Duration is how long the engine took to decide or record.
	Duration time.Duration
	// Upstream is how long the call was out between admission and the
	// finishing decision (Settled, Released and Unconfirmed only).
	Upstream time.Duration
	// Count is the number of reservations a CodeExpired record settled.
	Count int
	// Err is the store's error when Code is CodeError.
	Err error
	// Reason and PolicyID are the decision's (Allowed and Denied only):
	// why a call was refused, and the policy that refused it, if any.
	Reason   string
	PolicyID string
}

// ticketObs is what a Ticket carries for the finishing Record.
type ticketObs struct {
	agentID, agentName, resource string
	admitted                     time.Time
}

// Kind is the mode a resource belongs to: the text before its first colon
// (mcp, llm, http), or "other".
func Kind(resource string) string {
	k, _, ok := strings.Cut(resource, ":")
	switch {
	case ok && (k == "mcp" || k == "llm" || k == "http"):
		return k
	}
	return "other"
}

// Begin prices and reserves a call; see begin. The Observer, if any, is
// told of the decision.
func (e *Engine) Begin(ctx context.Context, c Call) (*Ticket, policy.Decision) {
	if e.opts.Observer == nil {
		return e.begin(ctx, c)
	}
	if c.RequestID == "" {
		// Named here rather than in begin so that a denial's Record has it.
		c.RequestID = ledger.NewRequestID()
	}
	start := time.Now()
	t, d := e.begin(ctx, c)
	dur := time.Since(start)
	r := Record{
		Code: string(d.Code), Kind: Kind(c.Resource), AgentID: c.AgentID,
		AgentName: e.agentName(ctx, c.AgentID, d.Code != policy.CodeUnavailable), Resource: c.Resource, Duration: dur,
		RequestID: c.RequestID, Amount: d.Price, Currency: d.Currency,
		Reason: d.Reason, PolicyID: d.PolicyID,
	}
	if t != nil {
		r.Outcome, r.RequestID, r.Amount, r.Currency = Allowed, t.RequestID, t.Reserved, t.Quote.Currency
		t.obs = ticketObs{agentID: c.AgentID, agentName: r.AgentName, resource: c.Resource, admitted: start.Add(dur)}
	} else {
		r.Outcome = Denied
	}
	e.opts.Observer.Observe(ctx, r)
	return t, d
}

// Settle charges the call and records the event; see settle.
func (e *Engine) Settle(ctx context.Context, t *Ticket, r Result) (ledger.Event, error) {
	start := time.Now()
	ev, err := e.settle(ctx, t, r)
	e.observeFinish(ctx, Settled, t, start, ev, err)
	return ev, err
}

// Release frees the reservation of a call that never ran upstream; see
// release.
func (e *Engine) Release(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	start := time.Now()
	ev, err := e.release(ctx, t, reason)
	e.observeFinish(ctx, Released, t, start, ev, err)
	return ev, err
}

// Unconfirmed settles a call whose outcome is unknown as a charge of the
// reserved amount; see unconfirmed.
func (e *Engine) Unconfirmed(ctx context.Context, t *Ticket, reason string) (ledger.Event, error) {
	start := time.Now()
	ev, err := e.unconfirmed(ctx, t, reason)
	e.observeFinish(ctx, Unconfirmed, t, start, ev, err)
	return ev, err
}

// Sweep settles every expired reservation once and returns how many it
// settled; see sweep.
func (e *Engine) Sweep(ctx context.Context) int {
	start := time.Now()
	n := e.sweep(ctx)
	if n > 0 && e.opts.Observer != nil {
		e.opts.Observer.Observe(ctx, Record{Outcome: Unconfirmed, Code: CodeExpired, Kind: "other", Count: n, Duration: time.Since(start)})
	}
	return n
}

func (e *Engine) observeFinish(ctx context.Context, outcome string, t *Ticket, start time.Time, ev ledger.Event, err error) {
	if e.opts.Observer == nil || t == nil {
		return
	}
	r := Record{
		Outcome: outcome, RequestID: t.RequestID, AgentID: t.obs.agentID, AgentName: t.obs.agentName,
		Resource: t.obs.resource, Kind: Kind(t.obs.resource), Duration: time.Since(start),
		Amount: ev.Amount, Currency: ev.Currency, Code: string(ev.Outcome),
	}
	if ev.Code != "" {
		// A charge above its reservation is flagged on the event: show
		// that, not a plain "charged", in the log and metrics.
		r.Code = string(ev.Code)
	}
	if !t.obs.admitted.IsZero() {
		r.Upstream = start.Sub(t.obs.admitted)
	}
	if err != nil {
		r.Code, r.Err, r.Amount, r.Currency = CodeError, err, 0, t.Quote.Currency
	}
	if r.Currency == "" {
		r.Currency = t.Quote.Currency
	}
	if r.AgentName == "" {
		r.AgentName = ev.AgentName
	}
	e.opts.Observer.Observe(ctx, r)
}

// nameCache maps agent IDs to names for Records, so log lines and metrics
// name agents without a store read per call. Entries live nameTTL, so a
// renamed agent shows its new name soon; the map is emptied when it grows
// past nameCacheMax, which bounds memory without bookkeeping.
type nameCache struct {
	mu sync.Mutex
	m  map[string]nameEntry
}

type nameEntry struct {
	name string
	at   time.Time
}

const (
	nameTTL      = time.Minute
	nameCacheMax = 10000
	// nameLookupTimeout bounds the one store read for an unknown agent, so
	// a slow store does not hold a denial's answer for long.
	nameLookupTimeout = 2 * time.Second
)

// agentName returns id's name, reading the store when it is not cached
// and read is true; "" if the agent cannot be read (the Record still
// carries the ID). An unknown agent is cached as "" too, so a stream of
// calls for it costs one read a minute; a failed read is not cached.
func (e *Engine) agentName(ctx context.Context, id string, read bool) string {
	if id == "" {
		return ""
	}
	now := time.Now()
	c := &e.names
	c.mu.Lock()
	if en, ok := c.m[id]; ok && now.Sub(en.at) < nameTTL {
		c.mu.Unlock()
		return en.name
	}
	c.mu.Unlock()
	if !read {
		return ""
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nameLookupTimeout)
	defer cancel()
	a, err := e.opts.Store.GetAgent(lctx, id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		a = policy.Agent{}
	case err != nil:
		return ""
	case a.ID != id:
		// id named another agent by its name: not an agent ID.
		a = policy.Agent{}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= nameCacheMax {
		c.m = map[string]nameEntry{}
	}
	c.m[id] = nameEntry{name: a.Name, at: now}
	c.mu.Unlock()
	return a.Name
}
