// Package ledger is Caracal's system of record: agents, keys, policies, the
// pricebook, reservations, the append-only event ledger and the Merkle
// hashes and checkpoints over it.
//
// Store is implemented by ledger/sqlite (the embedded default) and
// ledger/postgres; both share the SQL in ledger/sqlstore and pass the same
// conformance suite in ledger/storetest.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/merkle"
	"github.com/caracal-dev/caracal/policy"
)

// Errors a Store returns, wrapped with detail. Test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict is a uniqueness or state conflict: a duplicate agent
	// name, a parent cycle, a key already revoked.
	ErrConflict = errors.New("conflict")
	// ErrInvalid is input the store refuses (a missing parent, a bad field).
	ErrInvalid = errors.New("invalid")
	// ErrSchemaOutdated means the database schema is older than this binary:
	// it must be migrated up. (How is the front end's to say; the library
	// names no command.)
	ErrSchemaOutdated = errors.New("database schema is older than this binary")
	// ErrUnavailable means the database could not be reached.
	ErrUnavailable = errors.New("store unavailable")
	// ErrTreeDamaged means the stored Merkle tree is inconsistent (hashes
	// missing or extra); the log needs a full verification.
	ErrTreeDamaged = errors.New("the stored Merkle tree is damaged")
)

// Store is the whole system of record. Every method is safe for concurrent
// use, and on PostgreSQL across processes.
type Store interface {
	Agents
	Policies
	Delegations
	Pricebook
	Enforcer
	Events
	Merkle
	Admin
	AdminTokens
	Alerts
	Close() error
}

// NewAgent is the input to CreateAgent.
type NewAgent struct {
	// Name must pass policy.ValidateAgentName.
	Name     string
	Owner    string
	ParentID string // optional; must exist
	Metadata map[string]string
	// MaxDepth is the most agents the new agent's chain may hold, the root
	// and the new agent included (configuration delegation.max_depth); a
	// longer chain is refused with a *ChainDepthError. Zero means only the
	// store's own cap.
	MaxDepth int
}

// Agents manages agents and their API keys.
type Agents interface {
	CreateAgent(ctx context.Context, a NewAgent) (policy.Agent, error)
	// GetAgent finds an agent by ID or by name.
	GetAgent(ctx context.Context, idOrName string) (policy.Agent, error)
	ListAgents(ctx context.Context) ([]policy.Agent, error)
	SetAgentStatus(ctx context.Context, id string, s policy.AgentStatus) (policy.Agent, error)
	// SetAgentParent changes an agent's parent; it refuses cycles with ErrConflict.
	SetAgentParent(ctx context.Context, id, parentID string) (policy.Agent, error)
	// Chain returns the agent and its ancestors, the agent first.
	Chain(ctx context.Context, agentID string) ([]policy.Agent, error)

	// CreateKey stores a key's SHA-256 hash. The secret itself never reaches the store.
	CreateKey(ctx context.Context, agentID string, hash []byte, prefix string, expiresAt *time.Time) (policy.APIKey, error)
	RevokeKey(ctx context.Context, keyID string) (policy.APIKey, error)
	ListKeys(ctx context.Context, agentID string) ([]policy.APIKey, error)
	// KeyByHash returns the key with this hash and its agent, or ErrNotFound.
	// Expiry and revocation are the caller's to judge.
	KeyByHash(ctx context.Context, hash []byte) (policy.APIKey, policy.Agent, error)
}

// NewPolicy is the input to CreatePolicy and UpdatePolicy.
type NewPolicy struct {
	AgentID       string
	Limit         money.Amount
	Currency      string
	Window        policy.Window
	WindowType    policy.WindowType
	Timezone      string
	Allow         []string
	DelegatedFrom string
}

// Policies manages versioned budgets.
type Policies interface {
	CreatePolicy(ctx context.Context, p NewPolicy) (policy.Policy, error)
	// UpdatePolicy writes version n+1 of the policy; usage carries over.
	UpdatePolicy(ctx context.Context, id string, p NewPolicy) (policy.Policy, error)
	DeactivatePolicy(ctx context.Context, id string) (policy.Policy, error)
	GetPolicy(ctx context.Context, id string) (policy.Policy, error)
	// ListPolicies lists the policies of an agent, or of every agent when
	// agentID is empty; inactive ones only when includeInactive.
	ListPolicies(ctx context.Context, agentID string, includeInactive bool) ([]policy.Policy, error)
	// PolicyHistory returns every version, oldest first.
	PolicyHistory(ctx context.Context, id string) ([]policy.Policy, error)
}

// NewDelegation is the input to CreateDelegation.
type NewDelegation struct {
	// Parent and Child are agent IDs or names.
	Parent string
	Child  string
	// Policy is the child's budget. Its AgentID and DelegatedFrom are
	// ignored: the store sets them to the child and the parent.
	Policy NewPolicy
	// MaxDepth is the most agents a chain may hold, the root included
	// (configuration delegation.max_depth). Zero means only the store's
	// own cap.
	MaxDepth int
}

// Delegations carves child budgets out of a parent's. These are the entry
// points every front end (CLI, HTTP API) uses: each runs as one
// transaction, serialised with every other change to the agent hierarchy,
// so nothing is ever half-written and no two concurrent delegations can
// together make a cycle or an overlong chain.
type Delegations interface {
	// CreateDelegation makes the child a child of the parent (if it has no
	// parent yet) and gives it a budget delegated from the parent. It
	// refuses, writing nothing:
	//   - a child delegating to itself (ErrDelegateToSelf, an ErrInvalid);
	//   - a child that already has another parent, or is an ancestor of the
	//     parent (ErrConflict);
	//   - a chain that would hold more than MaxDepth agents
	//     (*ChainDepthError, an ErrConflict);
	//   - a limit above any active parent policy's limit in the same window
	//     and currency, which could never be spent (ErrOverParentLimit, an
	//     ErrInvalid).
	CreateDelegation(ctx context.Context, d NewDelegation) (policy.Policy, error)
	// RevokeDelegation writes a new version of the delegated policy with a
	// limit of zero: the child may spend nothing more under it, and the
	// delegation stays on record. A policy that is not a delegation is
	// ErrNotDelegation (an ErrInvalid); one already revoked or inactive is
	// ErrConflict.
	RevokeDelegation(ctx context.Context, policyID string) (policy.Policy, error)
}

// Delegation refusals. Each also matches ErrInvalid with errors.Is.
var (
	ErrDelegateToSelf  = errkind.New(ErrInvalid, "an agent cannot delegate to itself")
	ErrOverParentLimit = errkind.New(ErrInvalid, "limit exceeds the parent's limit")
	ErrNotDelegation   = errkind.New(ErrInvalid, "policy is not a delegation")
)

// ChainDepthError refuses a parent link that would make a delegation chain
// longer than the limit asked for. It matches ErrConflict: whether a link
// is too deep depends on the hierarchy as it stands.
type ChainDepthError struct {
	// Agents is how many agents the chain would hold.
	Agents int
	// Path names the chain root first, as "root → … → agent", ending with
	// "…" when the agent's own descendants lengthen it further.
	Path string
	// Max is the limit that was asked for.
	Max int
}

func (e *ChainDepthError) Error() string {
	return fmt.Sprintf("the chain would hold %d agents (%s), more than the maximum depth of %d", e.Agents, e.Path, e.Max)
}

// Unwrap makes the error match ErrConflict.
func (e *ChainDepthError) Unwrap() error { return ErrConflict }

// Pricebook manages operator price rules.
type Pricebook interface {
	// SetPrice creates or replaces the rule for r.Resource.
	SetPrice(ctx context.Context, r policy.PriceRule) (policy.PriceRule, error)
	GetPrice(ctx context.Context, resource string) (policy.PriceRule, error)
	DeletePrice(ctx context.Context, resource string) error
	ListPrices(ctx context.Context) ([]policy.PriceRule, error)
	// ImportPrices sets every rule in one transaction: all or nothing.
	ImportPrices(ctx context.Context, rules []policy.PriceRule) error
}

// NewRequestID returns a new request ID for a call that has none: a
// version 7 UUID, which begins with its creation time. Reservations are
// keyed by request ID, so time-ordered IDs make that index grow at its
// right edge and the calls of one commit share its last page, where
// random IDs would each write a page of their own.
func NewRequestID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// ReserveRequest asks to reserve Amount for one call.
type ReserveRequest struct {
	RequestID string // unique per call
	AgentID   string
	Resource  string
	Operation string // e.g. "tools/call", "chat.completions"
	Upstream  string
	Amount    money.Amount
	Currency  string
	Unpriced  bool
	Quantity  string // decimal, optional
	Unit      string // optional
	// AllowUnbudgeted allows a call when no active policy applies to the
	// agent or any ancestor; false refuses it with code no_budget.
	AllowUnbudgeted bool
	// TTL is how long the reservation may stay open before the expiry
	// sweep settles it as unconfirmed.
	TTL time.Duration
	Now time.Time // zero means time.Now()
}

// Reservation is an open or finished hold on budget.
type Reservation struct {
	RequestID string       `json:"request_id"`
	AgentID   string       `json:"agent_id"`
	Chain     []string     `json:"chain"`
	Resource  string       `json:"resource"`
	Operation string       `json:"operation"`
	Upstream  string       `json:"upstream,omitempty"`
	Amount    money.Amount `json:"amount"`
	Currency  string       `json:"currency"`
	Status    string       `json:"status"` // open, settled, released, expired
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// SettleRequest finishes a reservation.
type SettleRequest struct {
	RequestID string
	Amount    money.Amount
	Outcome   policy.Outcome // charged or unconfirmed
	Tokens    policy.Tokens
	Quantity  string
	Unit      string
	Reason    string
	Now       time.Time
	// Code is recorded on the event: policy.CodeUsageOverrun when the
	// amount exceeds the reservation, else empty.
	Code policy.Code
	// Background says no one waits on this settlement (the caller has
	// already answered), so the store may hold its write for up to a
	// millisecond to share a commit with the next reservation. It is as
	// durable as any other once Settle returns.
	Background bool
}

// Enforcer is atomic check-and-reserve and exactly-once settlement.
type Enforcer interface {
	// Reserve decides with policy.Decide over the agent's whole chain and,
	// if allowed, reserves the amount on every policy, in one atomic step.
	// A denial is recorded as a ledger event and returned as a Decision,
	// not an error; err is only for store failures.
	Reserve(ctx context.Context, r ReserveRequest) (policy.Decision, error)
	// Settle replaces the reservation with the actual amount and records
	// the event. Settling a request again returns the first event.
	Settle(ctx context.Context, r SettleRequest) (Event, error)
	// Release frees a reservation whose call never ran, recording a
	// refunded event of amount zero. Releasing again returns the first event.
	Release(ctx context.Context, requestID, reason string) (Event, error)
	// ExpireReservations settles every open reservation past its expiry
	// as an unconfirmed charge of the reserved amount.
	ExpireReservations(ctx context.Context, now time.Time) (int, error)
	GetReservation(ctx context.Context, requestID string) (Reservation, error)
	// Usage returns every active policy on the agent's chain with its usage at now.
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
	// RecordDenial records a denial decided outside Reserve (for example
	// an unpriced resource under strict pricing) as a denied event of
	// amount zero, so the audit trail shows every decision. It reserves
	// nothing.
	RecordDenial(ctx context.Context, r ReserveRequest, d policy.Decision) (Event, error)
}

// Event is one immutable ledger entry.
type Event struct {
	// Seq is the Merkle leaf index, or -1 until the event is integrated.
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	Time      time.Time      `json:"time"`
	AgentID   string         `json:"agent_id"`
	AgentName string         `json:"agent_name"`
	Chain     []string       `json:"chain"` // agent IDs, the agent first
	Resource  string         `json:"resource"`
	Operation string         `json:"operation"`
	Quantity  string         `json:"quantity,omitempty"`
	Unit      string         `json:"unit,omitempty"`
	Amount    money.Amount   `json:"amount"`
	Currency  string         `json:"currency"`
	RequestID string         `json:"request_id"`
	Outcome   policy.Outcome `json:"outcome"`
	Code      policy.Code    `json:"code,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Tokens    policy.Tokens  `json:"tokens"`
	Upstream  string         `json:"upstream,omitempty"`
	Unpriced  bool           `json:"unpriced,omitempty"`
}

// EventFilter selects events. Zero fields do not filter.
type EventFilter struct {
	AgentIDs []string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	Resource string    // glob
	Outcome  policy.Outcome
	Limit    int
	// NewestFirst reverses the order, so that Limit keeps the newest events.
	NewestFirst bool
	// Integrated selects only events already in the Merkle tree, with seq
	// ≥ FromSeq, in seq order. Seq order is commit order on every backend,
	// so a reader that remembers the last seq it saw misses nothing.
	Integrated bool
	FromSeq    int64
	// BeforeID selects only events appended before the event with this ID
	// (in ledger order), so that a reader paging newest-first resumes
	// after the last event it saw. An unknown ID selects nothing.
	BeforeID string
}

// SummaryBy is a summary's grouping.
type SummaryBy string

// Groupings.
const (
	ByResource SummaryBy = "resource"
	ByAgent    SummaryBy = "agent"
	ByDay      SummaryBy = "day"
)

// SummaryRow is one group of a summary.
type SummaryRow struct {
	Key      string       `json:"key"`
	Events   int64        `json:"events"`
	Charged  money.Amount `json:"charged"`
	Denied   int64        `json:"denied"`
	Currency string       `json:"currency"`
	// Unpriced counts the group's events on resources no price rule
	// priced (charged the default price, or refused for it).
	Unpriced int64 `json:"unpriced"`
}

// Events reads the ledger.
type Events interface {
	GetEvent(ctx context.Context, id string) (Event, error)
	// QueryEvents calls fn for each matching event in ledger order,
	// streaming: memory does not grow with the ledger.
	QueryEvents(ctx context.Context, f EventFilter, fn func(Event) error) error
	// CountEvents counts the matching events, ignoring f.Limit.
	CountEvents(ctx context.Context, f EventFilter) (int64, error)
	Summary(ctx context.Context, f EventFilter, by SummaryBy) ([]SummaryRow, error)
}

// Checkpoint is a signed tree head as stored: one type with the row
// merkle verification reads, so no copy sits between them.
type Checkpoint = merkle.CheckpointRecord

// SigningKey is a checkpoint signing key's public half as stored.
type SigningKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	PublicKey string     `json:"public_key"` // note verifier key
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// Merkle is the storage side of the Merkle log. The algorithms live in
// package merkle.
type Merkle interface {
	// Integrate sequences up to max committed, not-yet-sequenced events,
	// stores their leaf and tree hashes and a checkpoint signed by sign,
	// all in one transaction, and returns the new checkpoint. With nothing
	// to integrate it returns the latest checkpoint and integrated=false.
	Integrate(ctx context.Context, max int, sign Signer) (cp Checkpoint, integrated bool, err error)
	TreeSize(ctx context.Context) (int64, error)
	// ReadHashes reads stored hashes by tlog storage index.
	ReadHashes(ctx context.Context, indexes []int64) ([][32]byte, error)
	// EventsBySeq calls fn for events with seq in [from, to) in seq order.
	EventsBySeq(ctx context.Context, from, to int64, fn func(Event) error) error
	// LeafAt returns the canonical leaf bytes of the event at seq, read
	// from its columns exactly as stored, so that an edit which survives
	// conversion to an Event (a non-canonical chain column) still changes
	// the leaf.
	LeafAt(ctx context.Context, seq int64) ([]byte, error)
	// SeqOf returns the leaf index of an integrated event; an event not
	// integrated yet is ErrNotFound, saying so.
	SeqOf(ctx context.Context, eventID string) (int64, error)
	LatestCheckpoint(ctx context.Context) (Checkpoint, error)
	Checkpoints(ctx context.Context, fn func(Checkpoint) error) error
	CheckpointAt(ctx context.Context, size int64) (Checkpoint, error)
	PendingEvents(ctx context.Context) (count int64, oldest time.Time, err error)
	AddSigningKey(ctx context.Context, k SigningKey) error
	RetireSigningKey(ctx context.Context, id string, at time.Time) error
	SigningKeys(ctx context.Context) ([]SigningKey, error)
}

// Signer signs a checkpoint body; it is implemented in package merkle.
type Signer interface {
	KeyID() string
	// Sign returns the signed note for a tree of size with root.
	Sign(size int64, root [32]byte) (note []byte, err error)
}

// Status describes the database.
type Status struct {
	Backend       string           `json:"backend"` // sqlite or postgres
	Location      string           `json:"location"`
	SchemaVersion int64            `json:"schema_version"`
	LatestVersion int64            `json:"latest_version"`
	Rows          map[string]int64 `json:"rows"`
}

// AdminToken describes a token that authenticates an operator of the
// admin API (`caracal serve`). The secret is never stored; only its hash.
type AdminToken struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"` // first characters of the secret, for recognition
	ReadOnly  bool       `json:"read_only"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// AdminTokens manages admin API tokens.
type AdminTokens interface {
	// CreateAdminToken stores a token's SHA-256 hash under a unique name
	// (ErrConflict if the name is taken).
	CreateAdminToken(ctx context.Context, name string, hash []byte, prefix string, readOnly bool) (AdminToken, error)
	// RevokeAdminToken revokes the token with this ID or name; revoking
	// twice is ErrConflict.
	RevokeAdminToken(ctx context.Context, idOrName string) (AdminToken, error)
	// ListAdminTokens lists every token, revoked ones included, oldest first.
	ListAdminTokens(ctx context.Context) ([]AdminToken, error)
	// AdminTokenByHash returns the token with this hash, or ErrNotFound.
	// Revocation is the caller's to judge.
	AdminTokenByHash(ctx context.Context, hash []byte) (AdminToken, error)
}

// Admin is database housekeeping.
type Admin interface {
	Status(ctx context.Context) (Status, error)
	Ping(ctx context.Context) error
}
