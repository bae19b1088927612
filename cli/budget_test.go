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

func TestAgentKeyListAndRevokeByPrefix(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	e.ok("agent", "register", "--name", "bot", "--owner", "ops")
	e.ok("agent", "register", "--name", "kid", "--owner", "ops")
	var k1, k2 createdKey
	e.json(&k1, "agent", "key", "create", "--agent", "bot")
	e.json(&k2, "agent", "key", "create", "--agent", "kid")

	var all []policy.APIKey
	e.json(&all, "agent", "key", "list")
	if len(all) != 2 || all[0].ID != k1.ID || all[1].ID != k2.ID {
		t.Errorf("agent key list without --agent: %+v", all)
	}
	if out := e.ok("agent", "key", "list"); !strings.Contains(out, "AGENT") || !strings.Contains(out, "bot") || !strings.Contains(out, "kid") {
		t.Errorf("agent key list table:\n%s", out)
	}
	var one []policy.APIKey
	e.json(&one, "agent", "key", "list", "--agent", "kid")
	if len(one) != 1 || one[0].ID != k2.ID {
		t.Errorf("agent key list --agent kid: %+v", one)
	}

	// Key IDs are time-ordered UUIDs: two made together share a prefix.
	common := k1.ID[:4]
	if !strings.HasPrefix(k2.ID, common) {
		t.Fatalf("key IDs %s and %s do not share %q", k1.ID, k2.ID, common)
	}
	for _, tc := range []struct {
		name, ref string
		code      int
		want      []string
	}{
		{"ambiguous prefix lists candidates", common, 2, []string{`key prefix "` + common + `" is ambiguous`, k1.ID, k2.ID, "agent bot", "agent kid"}},
		{"too short", common[:3], 2, []string{"at least 4 characters"}},
		{"unknown", "ffffffff", 1, []string{`key "ffffffff" not found`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := e.run("agent", "key", "revoke", tc.ref)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %s", w, errOut)
				}
			}
		})
	}
	var rk policy.APIKey
	e.json(&rk, "agent", "key", "revoke", k2.Prefix) // the crk_ prefix a list shows
	if rk.ID != k2.ID || rk.RevokedAt == nil {
		t.Errorf("revoke by crk_ prefix: %+v", rk)
	}
	if out := e.ok("agent", "key", "revoke", k1.ID[:len(k1.ID)-6]); !strings.Contains(out, k1.ID) {
		t.Errorf("revoke by ID prefix: %q", out)
	}
}
