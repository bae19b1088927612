package ledger

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/policy"
)

// This file holds the read views every front end (the CLI and the admin
// API) prints, so that each is computed in one place.

// EventCSVHeader is the column order of CSV ledger output; the names are
// the JSON field names, token counts flattened.
var EventCSVHeader = []string{"seq", "id", "time", "agent_id", "agent_name", "chain", "resource", "operation",
	"quantity", "unit", "amount", "currency", "request_id", "outcome", "code", "reason",
	"input_tokens", "output_tokens", "cached_read_tokens", "cache_write_tokens", "reasoning_tokens", "upstream", "unpriced"}

// EventCSVRow is ev as a CSV row in the order of EventCSVHeader.
func EventCSVRow(ev Event) []string {
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	return []string{i(ev.Seq), ev.ID, ev.Time.UTC().Format(time.RFC3339Nano), ev.AgentID, ev.AgentName,
		strings.Join(ev.Chain, " "), ev.Resource, ev.Operation, ev.Quantity, ev.Unit, ev.Amount.String(), ev.Currency,
		ev.RequestID, string(ev.Outcome), string(ev.Code), ev.Reason,
		i(ev.Tokens.Input), i(ev.Tokens.Output), i(ev.Tokens.CachedRead), i(ev.Tokens.CacheWrite), i(ev.Tokens.Reasoning),
		ev.Upstream, strconv.FormatBool(ev.Unpriced)}
}

// UsageReader reads the usage of the policies that bind an agent.
type UsageReader interface {
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
}

// Budgets returns the budgets that bind each agent of ids (its own
// policies, then its ancestors'), each policy once, in the order found:
// what `caracal budget status` prints. An agent removed meanwhile is
// skipped.
func Budgets(ctx context.Context, st UsageReader, now time.Time, ids []string) ([]policy.Budget, error) {
	out := []policy.Budget{}
	seen := map[string]bool{}
	for _, id := range ids {
		us, err := st.Usage(ctx, id, now)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // removed between listing and reading
			}
			return nil, fmt.Errorf("read usage of agent %s: %w", id, err)
		}
		for i := range us {
			if seen[us[i].Policy.ID] {
				continue
			}
			seen[us[i].Policy.ID] = true
			b, err := us[i].Budget(now)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// CheckpointView is one stored checkpoint as `merkle checkpoint -o json`
// and the API show it; Note is the signed note verbatim.
type CheckpointView struct {
	Size      int64     `json:"size"`
	Root      string    `json:"root"` // hex
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
	Note      string    `json:"note"`
}

// ViewCheckpoint is cp as a CheckpointView.
func ViewCheckpoint(cp Checkpoint) CheckpointView {
	return CheckpointView{Size: cp.Size, Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, CreatedAt: cp.CreatedAt, Note: cp.Note}
}

// MerkleStatus is `caracal merkle status -o json`.
type MerkleStatus struct {
	TreeSize      int64              `json:"tree_size"`
	Checkpoint    *CheckpointSummary `json:"checkpoint"` // null before the first integration
	Pending       int64              `json:"pending_events"`
	OldestPending *time.Time         `json:"oldest_pending,omitempty"`
	LagSeconds    float64            `json:"lag_seconds"` // age of the oldest pending event; 0 when none
}

// CheckpointSummary is the latest checkpoint in a MerkleStatus.
type CheckpointSummary struct {
	Size       int64     `json:"size"`
	Root       string    `json:"root"` // hex
	KeyID      string    `json:"key_id"`
	CreatedAt  time.Time `json:"created_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

// StatusOfMerkle reads the tree size, the latest checkpoint and the
// integration lag at now.
func StatusOfMerkle(ctx context.Context, m Merkle, now time.Time) (MerkleStatus, error) {
	var st MerkleStatus
	var err error
	if st.TreeSize, err = m.TreeSize(ctx); err != nil {
		return st, err
	}
	cp, err := m.LatestCheckpoint(ctx)
	switch {
	case err == nil:
		st.Checkpoint = &CheckpointSummary{Size: cp.Size, Root: hex.EncodeToString(cp.Root), KeyID: cp.KeyID, CreatedAt: cp.CreatedAt, AgeSeconds: now.Sub(cp.CreatedAt).Seconds()}
	case !errors.Is(err, ErrNotFound):
		return st, err
	}
	var oldest time.Time
	if st.Pending, oldest, err = m.PendingEvents(ctx); err != nil {
		return st, err
	}
	if st.Pending > 0 {
		st.OldestPending = &oldest
		st.LagSeconds = max(0, now.Sub(oldest).Seconds())
	}
	return st, nil
}

// DelegationView is one delegated policy as `delegation list` and the API
// show it.
type DelegationView struct {
	PolicyID   string            `json:"policy_id"`
	ParentID   string            `json:"parent_id"`
	Parent     string            `json:"parent"`
	ChildID    string            `json:"child_id"`
	Child      string            `json:"child"`
	Limit      string            `json:"limit"`
	Currency   string            `json:"currency"`
	Window     policy.Window     `json:"window"`
	WindowType policy.WindowType `json:"window_type"`
	Timezone   string            `json:"timezone"`
	Version    int               `json:"version"`
	// Status is active, revoked (limit set to zero) or inactive.
	Status string `json:"status"`
}

// ViewDelegation is the delegated policy p, from the agent named parent to
// the agent named child, as a DelegationView.
func ViewDelegation(p policy.Policy, parent, child string) DelegationView {
	status := "active"
	switch {
	case !p.Active:
		status = "inactive"
	case p.Limit == 0:
		status = "revoked"
	}
	return DelegationView{PolicyID: p.ID, ParentID: p.DelegatedFrom, Parent: parent, ChildID: p.AgentID, Child: child,
		Limit: p.Limit.String(), Currency: p.Currency, Window: p.Window, WindowType: p.WindowType,
		Timezone: p.Timezone, Version: p.Version, Status: status}
}
