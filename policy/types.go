// Package policy is Caracal's pure domain: agents, budgets, time windows,
// allowlists, price rules and the decision function. It touches no
// database and no network; the one thing it reads is the system's time zone
// database, through LoadLocation.
//
// # Windows
//
// Usage of a policy is kept in buckets: one per calendar window, one per
// minute for rolling windows, and a single bucket at the Unix epoch for a
// total window. BucketStart names the bucket a spend is recorded in;
// WindowStart says which buckets count at a given moment.
//
// Calendar windows are aligned to the clock in the policy's time zone
// (Policy.Timezone, an IANA name; empty means UTC):
//
//   - hourly: the start of the local clock hour containing t, at the UTC
//     offset in force at t. In a fall-back hour each of the two local
//     01:00–02:00 hours is its own window;
//   - daily: local midnight, so a 23-hour or 25-hour day across a DST change
//     is one window;
//   - weekly: local midnight of the Monday on or before t;
//   - monthly: local midnight of the 1st.
//
// Where a zone changes its offset at midnight itself, a day (and so a week
// or month) starts at its first instant: the moment of the change when
// midnight is skipped, the first midnight when it occurs twice.
//
// Rolling windows cover the trailing duration D ending now — 1 hour, 24
// hours, 7 days and 30 days for hourly, daily, weekly and monthly — at a
// granularity of one minute. A spend is recorded in the bucket of its minute
// (t truncated to the minute). At now, the buckets that count are the D/1min
// most recent ones, the current minute's included: those with
// start > now − D, where now is truncated to the minute. A spend therefore
// stops counting between D − 1 min and D after it happened: exactly when
// the minute that is D after its own minute begins. The rolling type has no
// meaning for a total window, which ignores it.
package policy

import (
	"time"

	"github.com/caracal-dev/caracal/internal/money"
)

// AgentStatus is whether an agent may spend.
type AgentStatus string

// Agent statuses.
const (
	StatusActive    AgentStatus = "active"
	StatusSuspended AgentStatus = "suspended"
)

// Agent is a principal that spends money. ParentID is empty for a root agent.
type Agent struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Owner     string            `json:"owner"`
	ParentID  string            `json:"parent_id,omitempty"`
	Status    AgentStatus       `json:"status"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// APIKey describes an agent key. The secret is never stored; only its hash.
type APIKey struct {
	ID        string     `json:"id"`
	AgentID   string     `json:"agent_id"`
	Prefix    string     `json:"prefix"` // first characters of the secret, for recognition
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Window is the period a budget limit applies to.
type Window string

// Windows.
const (
	WindowTotal   Window = "total"
	WindowHourly  Window = "hourly"
	WindowDaily   Window = "daily"
	WindowWeekly  Window = "weekly"
	WindowMonthly Window = "monthly"
)

// WindowType says how a window is placed in time.
type WindowType string

// Window types.
const (
	// Calendar windows are aligned to clock boundaries in the policy's time
	// zone: the day starts at local midnight, the week on Monday, the month
	// on the 1st.
	WindowCalendar WindowType = "calendar"
	// Rolling windows cover the trailing duration ending now, at a
	// granularity of one minute.
	WindowRolling WindowType = "rolling"
)

// Policy is one budget on one agent. Updating a policy writes a new Version
// with the same ID; usage carries over.
type Policy struct {
	ID         string       `json:"id"`
	AgentID    string       `json:"agent_id"`
	Version    int          `json:"version"`
	Limit      money.Amount `json:"limit"`
	Currency   string       `json:"currency"`
	Window     Window       `json:"window"`
	WindowType WindowType   `json:"window_type"`
	Timezone   string       `json:"timezone"` // IANA name; "UTC" by default
	Allow      []string     `json:"allow,omitempty"`
	Active     bool         `json:"active"`
	// DelegatedFrom is the parent agent's ID when this policy was carved
	// from a parent by a delegation.
	DelegatedFrom string    `json:"delegated_from,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// PerUnit prices a quantity read from a call's JSON arguments.
type PerUnit struct {
	Path  string       `json:"path" yaml:"path"` // gjson path into the arguments
	Price money.Amount `json:"price" yaml:"price"`
}

// PriceRule prices resources that match Resource, a pattern with `*` globs.
// Token prices are per million tokens. Zero fields price nothing.
type PriceRule struct {
	Resource              string       `json:"resource" yaml:"resource"`
	Currency              string       `json:"currency" yaml:"currency"`
	PerCall               money.Amount `json:"per_call" yaml:"per_call"`
	InputPerMillion       money.Amount `json:"input_per_million" yaml:"input_per_million"`
	OutputPerMillion      money.Amount `json:"output_per_million" yaml:"output_per_million"`
	CachedInputPerMillion money.Amount `json:"cached_input_per_million" yaml:"cached_input_per_million"`
	CacheWritePerMillion  money.Amount `json:"cache_write_per_million" yaml:"cache_write_per_million"`
	ReasoningPerMillion   money.Amount `json:"reasoning_per_million" yaml:"reasoning_per_million"`
	PerUnit               *PerUnit     `json:"per_unit,omitempty" yaml:"per_unit,omitempty"`
	// ChargeErrors says whether a tool result with isError: true is charged.
	// Nil means yes: the upstream ran.
	ChargeErrors *bool `json:"charge_errors,omitempty" yaml:"charge_errors,omitempty"`
	// ChargeRounds charges every round of a multi-round MCP tool call
	// (a result with resultType input_required) as a call of its own, for
	// servers that do paid work before asking for input. False: the rounds
	// are one call, charged once when it completes.
	ChargeRounds bool      `json:"charge_rounds,omitempty" yaml:"charge_rounds,omitempty"`
	UpdatedAt    time.Time `json:"updated_at" yaml:"-"`
}

// Tokens are the token counts of one LLM call.
type Tokens struct {
	Input      int64 `json:"input"`
	Output     int64 `json:"output"`
	CachedRead int64 `json:"cached_read"`
	CacheWrite int64 `json:"cache_write"`
	Reasoning  int64 `json:"reasoning"`
}

// Code is a machine-readable decision code.
type Code string

// Decision codes.
const (
	CodeAllowed        Code = "allowed"
	CodeBudgetExceeded Code = "budget_exceeded"
	CodeNotAllowed     Code = "not_allowed"
	CodeAgentSuspended Code = "agent_suspended"
	CodeUnpriced       Code = "unpriced"
	CodeUnavailable    Code = "unavailable"
	CodeUnknownAgent   Code = "unknown_agent"
	CodeNoPolicy       Code = "no_policy"
	CodeCurrency       Code = "currency_mismatch"
	// CodeUsageOverrun marks a charged event whose amount exceeds what was
	// reserved for the call: the upstream reported more usage than the
	// request's own bounds allow. It is not a decision code.
	CodeUsageOverrun Code = "usage_overrun"
	// CodeNoBudget refuses an agent with no active policy anywhere on its
	// chain, unless unbudgeted agents are allowed.
	CodeNoBudget Code = "no_budget"
	// CodeInvalidArguments refuses a call whose arguments cannot be priced,
	// such as a per-unit quantity that is not a non-negative number.
	CodeInvalidArguments Code = "invalid_arguments"
)

// Remaining is what one policy has left after a decision.
type Remaining struct {
	PolicyID  string       `json:"policy_id"`
	AgentID   string       `json:"agent_id"`
	AgentName string       `json:"agent_name,omitempty"`
	Window    Window       `json:"window"`
	Limit     money.Amount `json:"limit"`
	Spent     money.Amount `json:"spent"`
	Reserved  money.Amount `json:"reserved"`
	Remaining money.Amount `json:"remaining"`
	Currency  string       `json:"currency"`
}

// Decision is the verdict on one attempted spend.
type Decision struct {
	Allow     bool         `json:"allow"`
	Code      Code         `json:"code"`
	Reason    string       `json:"reason"`
	PolicyID  string       `json:"policy_id,omitempty"` // the policy that denied, if any
	Price     money.Amount `json:"price"`
	Currency  string       `json:"currency"`
	Remaining []Remaining  `json:"remaining,omitempty"`
}

// Outcome is how a ledger event ended.
type Outcome string

// Outcomes.
const (
	OutcomeCharged     Outcome = "charged"
	OutcomeDenied      Outcome = "denied"
	OutcomeUnconfirmed Outcome = "unconfirmed"
	OutcomeRefunded    Outcome = "refunded"
)
