package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// testStore opens the environment's store directly, as another process
// sharing the database would.
func testStore(t *testing.T, e *cliEnv) ledger.Store {
	t.Helper()
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Flags = GlobalFlags{Home: e.home, DatabaseURL: e.dbURL}
	t.Cleanup(f.Close)
	st, err := f.Store(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// budgetRow is the JSON of one budget status row, decoded loosely so the
// test sees exactly what was printed.
type budgetRow struct {
	Agent       string          `json:"agent"`
	AgentID     string          `json:"agent_id"`
	PolicyID    string          `json:"policy_id"`
	Window      string          `json:"window"`
	WindowType  string          `json:"window_type"`
	WindowStart *time.Time      `json:"window_start"`
	ResetsAt    *time.Time      `json:"resets_at"`
	Limit       string          `json:"limit"`
	Spent       string          `json:"spent"`
	Reserved    string          `json:"reserved"`
	Remaining   string          `json:"remaining"`
	Currency    string          `json:"currency"`
	Percent     json.RawMessage `json:"percent_used"`
}

func TestBudgetStatus(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	e.ok("init")
	e.ok("agent", "register", "--name", "parent", "--owner", "ops")
	e.ok("agent", "register", "--name", "kid", "--owner", "ops", "--parent", "parent")
	e.ok("agent", "register", "--name", "loner", "--owner", "ops")
	var pp, kp policy.Policy
	e.json(&pp, "policy", "create", "--agent", "parent", "--limit", "10", "--window", "daily", "--currency", "usd")
	e.json(&kp, "policy", "create", "--agent", "kid", "--limit", "5", "--window", "daily", "--window-type", "rolling")
	if pp.Currency != "USD" {
		t.Errorf("--currency usd stored as %q, want USD", pp.Currency)
	}

	st := testStore(t, e)
	ctx := context.Background()
	kid, err := st.GetAgent(ctx, "kid")
	if err != nil {
		t.Fatal(err)
	}
	reserve := func(id, amount string) {
		t.Helper()
		d, err := st.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: kid.ID, Resource: "mcp:x/y",
			Amount: money.MustParse(amount), Now: now})
		if err != nil || !d.Allow {
			t.Fatalf("reserve %s: %+v %v", amount, d, err)
		}
	}
	reserve("settled", "1.5")
	if _, err := st.Settle(ctx, ledger.SettleRequest{RequestID: "settled", Amount: money.MustParse("1.5"),
		Outcome: policy.OutcomeCharged, Now: now}); err != nil {
		t.Fatal(err)
	}
	reserve("open", "2") // held open: counts as reserved

	var raw []json.RawMessage
	e.json(&raw, "budget", "status", "--agent", "kid")
	if len(raw) != 2 {
		t.Fatalf("budget status --agent kid: %d rows, want 2", len(raw))
	}
	wantKeys(t, "calendar budget", raw[1], "agent", "agent_id", "policy_id", "window", "window_type", "window_start",
		"resets_at", "limit", "spent", "reserved", "remaining", "currency", "percent_used")
	wantKeys(t, "rolling budget", raw[0], "agent", "agent_id", "policy_id", "window", "window_type", "window_start",
		"limit", "spent", "reserved", "remaining", "currency", "percent_used")
	var rows []budgetRow
	e.json(&rows, "budget", "status", "--agent", "kid")
	for _, tc := range []struct {
		row                                              budgetRow
		agent, policyID, spent, reserved, remaining, pct string
	}{
		{rows[0], "kid", kp.ID, "1.50", "2.00", "1.50", "70.00"},
		{rows[1], "parent", pp.ID, "1.50", "2.00", "6.50", "35.00"},
	} {
		r := tc.row
		if r.Agent != tc.agent || r.PolicyID != tc.policyID || r.Spent != tc.spent || r.Reserved != tc.reserved ||
			r.Remaining != tc.remaining || string(r.Percent) != tc.pct || r.Currency != "USD" {
			t.Errorf("row %+v percent %s; want agent %s policy %s spent %s reserved %s remaining %s percent %s",
				r, r.Percent, tc.agent, tc.policyID, tc.spent, tc.reserved, tc.remaining, tc.pct)
		}
	}
	if r := rows[1]; r.WindowType != "calendar" || r.WindowStart == nil || !r.WindowStart.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) ||
		r.ResetsAt == nil || !r.ResetsAt.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("calendar window: %+v", r)
	}
	if r := rows[0]; r.WindowType != "rolling" || r.ResetsAt != nil || r.WindowStart == nil ||
		!r.WindowStart.Equal(now.Add(-24*time.Hour+time.Minute)) {
		t.Errorf("rolling window: %+v", r)
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string // policy IDs
	}{
		{"every agent, each policy once", nil, []string{kp.ID, pp.ID}},
		{"parent alone", []string{"--agent", "parent"}, []string{pp.ID}},
		{"parent and children", []string{"--agent", "parent", "--include-children"}, []string{pp.ID, kp.ID}},
		{"agent without budgets", []string{"--agent", "loner"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []budgetRow
			e.json(&got, append([]string{"budget", "status"}, tc.args...)...)
			var ids []string
			for _, r := range got {
				ids = append(ids, r.PolicyID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Errorf("policies %v, want %v", ids, tc.want)
			}
		})
	}

	table := e.ok("budget", "status", "--agent", "kid")
	for _, want := range []string{"REMAINING", "daily (rolling 24h)", "daily (calendar)", "2026-03-02T00:00:00Z", "6.50", "35.00%", "70.00%"} {
		if !strings.Contains(table, want) {
			t.Errorf("budget status table lacks %q:\n%s", want, table)
		}
	}
	var d struct {
		Budgets []budgetRow `json:"budgets"`
	}
	e.json(&d, "agent", "get", "kid")
	if len(d.Budgets) != 2 || d.Budgets[1].Remaining != "6.50" {
		t.Errorf("agent get budgets: %+v", d.Budgets)
	}
	if out := e.ok("agent", "get", "kid"); !strings.Contains(out, "Budgets") || !strings.Contains(out, "6.50") {
		t.Errorf("agent get table lacks the budgets:\n%s", out)
	}
	e.fails(2, "--include-children: requires --agent", "budget", "status", "--include-children")
	e.fails(1, `--agent: agent "ghost" not found`, "budget", "status", "--agent", "ghost")
}
