package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// budgetJSON is one row of `caracal budget status -o json`.
type budgetJSON struct {
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
	PercentUsed json.RawMessage `json:"percent_used"`
}

// TestCLIBudgetStatusWhileCallOpen holds a reservation open through the
// enforcement engine of another process (this test) on the same SQLite
// file, and checks that the binary's budget status reports
// remaining = limit − spent − reserved for the agent's and its parent's
// budgets, and that the held amount goes away once the call is released.
func TestCLIBudgetStatusWhileCallOpen(t *testing.T) {
	u := newCLIUser(t, "sqlite")
	u.ok("init")
	u.ok("agent", "register", "--name", "team", "--owner", "ops")
	u.ok("agent", "register", "--name", "bot", "--owner", "ops", "--parent", "team")
	var teamPolicy, botPolicy struct {
		ID string `json:"id"`
	}
	u.json(&teamPolicy, "policy", "create", "--agent", "team", "--limit", "20", "--window", "monthly", "--currency", "usd")
	u.json(&botPolicy, "policy", "create", "--agent", "bot", "--limit", "5", "--window", "daily", "--window-type", "rolling")

	st := u.openLedger()
	ctx := context.Background()
	bot, err := st.GetAgent(ctx, "bot")
	if err != nil {
		t.Fatal(err)
	}
	reserve := func(amount string) string {
		id := uuid.NewString()
		d, err := st.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: bot.ID, Resource: "llm:openai/gpt-4o",
			Operation: "chat.completions", Amount: money.MustParse(amount)})
		if err != nil || !d.Allow {
			t.Fatalf("reserve %s: %+v %v", amount, d, err)
		}
		return id
	}
	done := reserve("0.75")
	if _, err := st.Settle(ctx, ledger.SettleRequest{RequestID: done, Amount: money.MustParse("0.5"), Outcome: policy.OutcomeCharged}); err != nil {
		t.Fatal(err)
	}
	held := reserve("1.25") // a call in flight

	check := func(reserved string, want map[string][3]string) {
		t.Helper()
		var rows []budgetJSON
		u.json(&rows, "budget", "status", "--agent", "bot")
		if len(rows) != 2 {
			t.Fatalf("budget status --agent bot: %d rows, want 2: %+v", len(rows), rows)
		}
		for _, r := range rows {
			w, ok := want[r.PolicyID]
			if !ok {
				t.Fatalf("unexpected policy %s", r.PolicyID)
			}
			lim, sp, res, rem := money.MustParse(r.Limit), money.MustParse(r.Spent), money.MustParse(r.Reserved), money.MustParse(r.Remaining)
			if r.Spent != "0.50" || r.Reserved != reserved || rem != lim-sp-res || r.Remaining != w[0] || string(r.PercentUsed) != w[1] ||
				r.Limit != w[2] || r.Currency != "USD" {
				t.Errorf("policy %s: %+v (percent %s); want spent 0.50 reserved %s remaining %s = limit %s - spent - reserved, percent %s",
					r.PolicyID, r, r.PercentUsed, reserved, w[0], w[2], w[1])
			}
		}
	}
	check("1.25", map[string][3]string{
		botPolicy.ID:  {"3.25", "35.00", "5.00"},
		teamPolicy.ID: {"18.25", "8.75", "20.00"},
	})
	table := u.ok("budget", "status")
	for _, want := range []string{"RESERVED", "1.25", "18.25", "monthly (calendar)", "daily (rolling 24h)"} {
		if !strings.Contains(table, want) {
			t.Errorf("budget status table lacks %q:\n%s", want, table)
		}
	}
	if _, err := st.Release(ctx, held, "client went away"); err != nil {
		t.Fatal(err)
	}
	check("0.00", map[string][3]string{
		botPolicy.ID:  {"4.50", "10.00", "5.00"},
		teamPolicy.ID: {"19.50", "2.50", "20.00"},
	})
}

// TestCLILedgerTailFollow runs `caracal ledger tail -f` and writes events
// from other processes: this test's engine commits them and `caracal merkle
// integrate` adds them to the tree. Each shows on tail's output.
func TestCLILedgerTailFollow(t *testing.T) {
	u := newCLIUser(t, "sqlite")
	u.ok("init")
	u.ok("agent", "register", "--name", "bot", "--owner", "ops")
	st := u.openLedger()
	ctx := context.Background()
	bot, err := st.GetAgent(ctx, "bot")
	if err != nil {
		t.Fatal(err)
	}
	charge := func(resource string) {
		t.Helper()
		id := uuid.NewString()
		if d, err := st.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: bot.ID, Resource: resource, Amount: money.MustParse("0.01"), AllowUnbudgeted: true}); err != nil || !d.Allow {
			t.Fatalf("reserve: %+v %v", d, err)
		}
		if _, err := st.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: money.MustParse("0.01"), Outcome: policy.OutcomeCharged}); err != nil {
			t.Fatal(err)
		}
	}
	charge("mcp:fs/before")
	u.ok("merkle", "integrate")

	cmd := exec.Command(binary, "ledger", "tail", "-f", "-n", "1", "-o", "json")
	cmd.Env = u.env
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	waitOutput := func(what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !strings.Contains(out.String(), what) {
			select {
			case err := <-exited:
				t.Fatalf("ledger tail -f exited (%v) before printing %s:\n%s\n%s", err, what, out.String(), errOut.String())
			case <-deadline:
				t.Fatalf("ledger tail -f did not print %s:\n%s\n%s", what, out.String(), errOut.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitOutput("mcp:fs/before") // running, and has printed the last event

	charge("mcp:fs/after")
	u.ok("merkle", "integrate")
	waitOutput("mcp:fs/after")

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("ledger tail -f after SIGINT: %v\n%s", err, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ledger tail -f did not stop on SIGINT")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("tail -f printed %d lines, want 2:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"mcp:fs/before", "mcp:fs/after"} {
		var ev struct {
			Seq      int64  `json:"seq"`
			Resource string `json:"resource"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil || ev.Resource != want || ev.Seq != int64(i) {
			t.Errorf("line %d: %+v %v; want %s at seq %d", i, ev, err, want, i)
		}
	}
}

// TestProxyBudgetStatusWhileStreamOpen holds an LLM call open through
// `caracal proxy` (a stream whose chunks the fake provider spaces out) and
// checks that `caracal budget status`, another process, sees the call's
// reservation and remaining = limit − spent − reserved, then the settled
// charge once the stream ends.
func TestProxyBudgetStatusWhileStreamOpen(t *testing.T) {
	e := newProxyEnv(t, "5")
	status := func() budgetJSON {
		t.Helper()
		var rows []budgetJSON
		if err := json.Unmarshal([]byte(e.caracal("budget", "status", "--agent", "bot", "-o", "json")), &rows); err != nil || len(rows) != 1 {
			t.Fatalf("budget status: %+v %v", rows, err)
		}
		r := rows[0]
		lim, sp, res, rem := money.MustParse(r.Limit), money.MustParse(r.Spent), money.MustParse(r.Reserved), money.MustParse(r.Remaining)
		if rem != lim-sp-res || r.Limit != "5.00" || r.Window != "total" || r.WindowStart != nil || r.ResetsAt != nil {
			t.Fatalf("budget status row %+v: remaining is not limit - spent - reserved", r)
		}
		return r
	}
	if r := status(); r.Spent != "0.00" || r.Reserved != "0.00" || string(r.PercentUsed) != "0.00" {
		t.Fatalf("before any call: %+v", r)
	}

	body := `{"model":"gpt-4o","max_tokens":1000,"stream":true,"messages":[{"role":"user","content":"hello"}]}`
	req, err := http.NewRequest(http.MethodPost, e.url+"/openai/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Fake-Chunk-Delay", "2s") // the stream stays open for several seconds
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	held := status()
	if held.Spent != "0.00" || money.MustParse(held.Reserved) <= 0 {
		t.Fatalf("while the stream is open: %+v, want nothing spent and the worst case reserved", held)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The proxy settles after relaying the last byte; wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := status()
		if r.Reserved == "0.00" {
			if sp := money.MustParse(r.Spent); sp <= 0 || sp > money.MustParse(held.Reserved) {
				t.Errorf("after the stream: spent %s, want a charge within the %s reserved", r.Spent, held.Reserved)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reservation was never settled: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
