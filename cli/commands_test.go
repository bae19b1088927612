package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// jsonKeys returns the sorted top-level keys of a JSON object.
func jsonKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func wantKeys(t *testing.T, what string, raw json.RawMessage, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := jsonKeys(t, raw); !reflect.DeepEqual(got, want) {
		t.Errorf("%s JSON fields:\n got %v\nwant %v", what, got, want)
	}
}

// TestNewUserPath walks the path a new user takes, on both backends:
// init, register an agent, put a budget on it, import the example
// pricebook, then every list and get command in table and JSON form.
func TestNewUserPath(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			out := e.ok("init")
			for _, want := range []string{"Home:", e.home, "Schema:", "Signing key:"} {
				if !strings.Contains(out, want) {
					t.Errorf("init output lacks %q:\n%s", want, out)
				}
			}
			if hint := "Later commands use this database only with --database-url"; strings.Contains(out, hint) != (backend == "postgres") {
				t.Errorf("init on %s: hint %q shown = %v:\n%s", backend, hint, !(backend == "postgres"), out)
			}
			if st, err := os.Stat(e.home); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("home mode: %v %v", st.Mode(), err)
			}
			if st, err := os.Stat(filepath.Join(e.home, "config.yaml")); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("config.yaml: %v", err)
			}
			keys, _ := filepath.Glob(filepath.Join(e.home, "keys", "*.key"))
			if len(keys) != 1 {
				t.Errorf("signing keys after init: %v", keys)
			}
			// Init again changes nothing.
			var ir initResult
			e.json(&ir, "init")
			if ir.ConfigCreated || ir.KeyCreated || len(ir.Applied) != 0 {
				t.Errorf("second init: %+v", ir)
			}

			var raw json.RawMessage
			e.json(&raw, "agent", "register", "--name", "research-bot", "--owner", "alice@example.com", "--metadata", "team=ml")
			wantKeys(t, "agent", raw, "id", "name", "owner", "status", "metadata", "created_at")
			var bot policy.Agent
			if err := json.Unmarshal(raw, &bot); err != nil {
				t.Fatal(err)
			}
			if bot.Name != "research-bot" || bot.Owner != "alice@example.com" || bot.Status != policy.StatusActive || bot.Metadata["team"] != "ml" {
				t.Errorf("registered %+v", bot)
			}
			out = e.ok("agent", "register", "--name", "summariser", "--owner", "alice@example.com", "--parent", "research-bot")
			if !strings.Contains(out, "Parent:   research-bot") {
				t.Errorf("child register output:\n%s", out)
			}

			e.json(&raw, "policy", "create", "--agent", "research-bot", "--limit", "25", "--allow", "mcp:*", "--allow", "llm:openai/*")
			wantKeys(t, "policy", raw, "id", "agent_id", "version", "limit", "currency", "window", "window_type", "timezone", "allow", "active", "created_at")
			var pol policy.Policy
			if err := json.Unmarshal(raw, &pol); err != nil {
				t.Fatal(err)
			}
			if pol.AgentID != bot.ID || pol.Limit != money.MustParse("25") || pol.Currency != "USD" || pol.Window != policy.WindowDaily ||
				pol.WindowType != policy.WindowCalendar || pol.Timezone != "UTC" || !reflect.DeepEqual(pol.Allow, []string{"mcp:*", "llm:openai/*"}) {
				t.Errorf("policy %+v", pol)
			}

			out = e.ok("pricebook", "import", "../examples/pricebook.yaml")
			if !strings.HasPrefix(out, "Imported 8 price rules") {
				t.Errorf("import: %s", out)
			}

			// Every list and get, as a table and as JSON.
			for _, args := range [][]string{
				{"agent", "list"}, {"agent", "get", "research-bot"}, {"agent", "get", bot.ID},
				{"agent", "key", "list", "--agent", "research-bot"},
				{"policy", "list"}, {"policy", "list", "--agent", "research-bot"}, {"policy", "get", pol.ID}, {"policy", "history", pol.ID},
				{"pricebook", "list"}, {"pricebook", "get", "mcp:fs/read_file"}, {"pricebook", "get", "mcp:fs/write_file"},
				{"delegation", "list"}, {"ledger", "query"}, {"ledger", "summary"},
				{"db", "status"}, {"db", "migrate", "status"}, {"version"},
			} {
				table := e.ok(args...)
				if strings.TrimSpace(table) == "" {
					t.Errorf("caracal %s printed nothing", strings.Join(args, " "))
				}
				var v any
				e.json(&v, args...)
			}

			var agents []json.RawMessage
			e.json(&agents, "agent", "list")
			if len(agents) != 2 {
				t.Fatalf("agent list: %d agents", len(agents))
			}
			wantKeys(t, "child agent", agents[1], "id", "name", "owner", "parent_id", "status", "created_at")
			table := e.ok("agent", "list")
			if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 ||
				!strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[2], "summariser") || !strings.Contains(lines[2], "research-bot") {
				t.Errorf("agent list table:\n%s", table)
			}

			e.json(&raw, "agent", "get", "research-bot")
			wantKeys(t, "agent get", raw, "id", "name", "owner", "status", "metadata", "created_at", "keys", "policies", "budgets")

			var rules []json.RawMessage
			e.json(&rules, "pricebook", "list")
			if len(rules) != 8 {
				t.Fatalf("pricebook list: %d rules", len(rules))
			}
			var rule policy.PriceRule
			e.json(&rule, "pricebook", "get", "mcp:search/web")
			if rule.Resource != "mcp:search/*" || rule.PerCall != money.MustParse("0.01") || rule.PerUnit == nil ||
				rule.PerUnit.Path != "count" || rule.PerUnit.Price != money.MustParse("0.002") {
				t.Errorf("pricebook get mcp:search/web: %+v", rule)
			}

			// Export and re-import round-trips.
			exported := e.ok("pricebook", "export")
			p := filepath.Join(t.TempDir(), "prices.yaml")
			if err := os.WriteFile(p, []byte(exported), 0o600); err != nil {
				t.Fatal(err)
			}
			e.ok("pricebook", "import", p)
			if again := e.ok("pricebook", "export"); again != exported {
				t.Errorf("export after re-import differs:\n%s\nvs\n%s", again, exported)
			}
			var fromJSON struct {
				Prices []json.RawMessage `json:"prices"`
			}
			if err := json.Unmarshal([]byte(e.ok("pricebook", "export", "--format", "json")), &fromJSON); err != nil || len(fromJSON.Prices) != 8 {
				t.Errorf("export --format json: %v, %d rules", err, len(fromJSON.Prices))
			}
		})
	}
}

func TestAgentLifecycle(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	e.ok("agent", "register", "--name", "bot", "--owner", "ops")
	if out := e.ok("agent", "suspend", "bot"); out != "Agent bot is suspended.\n" {
		t.Errorf("suspend: %q", out)
	}
	var a policy.Agent
	e.json(&a, "agent", "get", "bot")
	if a.Status != policy.StatusSuspended {
		t.Errorf("after suspend: %+v", a)
	}
	e.json(&a, "agent", "resume", "bot")
	if a.Status != policy.StatusActive {
		t.Errorf("after resume: %+v", a)
	}
	e.fails(1, `agent "ghost" not found`, "agent", "suspend", "ghost")
}

// A key is shown once, stored hashed, authenticates until revoked, and
// expires when told to.
func TestAgentKeys(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			e.now = func() time.Time { return now }
			e.ok("init")
			e.ok("agent", "register", "--name", "bot", "--owner", "ops")
			var raw json.RawMessage
			e.json(&raw, "agent", "key", "create", "--agent", "bot", "--expires", "30d")
			wantKeys(t, "created key", raw, "id", "agent_id", "agent_name", "prefix", "key", "created_at", "expires_at")
			var k createdKey
			if err := json.Unmarshal(raw, &k); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(k.Key, "crk_") || !strings.HasPrefix(k.Key, k.Prefix) || k.ExpiresAt == nil ||
				!k.ExpiresAt.Equal(now.Add(30*24*time.Hour)) {
				t.Errorf("created key %+v", k)
			}
			out, errOut, code := e.run("agent", "key", "create", "--agent", "bot")
			if code != 0 || !strings.Contains(out, "Key:") || !strings.Contains(out, "crk_") || !strings.Contains(errOut, "not shown again") {
				t.Errorf("key create table: %d\n%s\n%s", code, out, errOut)
			}
			list := e.ok("agent", "key", "list", "--agent", "bot")
			if strings.Contains(list, k.Key) || !strings.Contains(list, k.Prefix) {
				t.Errorf("key list shows the secret or not the prefix:\n%s", list)
			}

			eng := newTestEngine(t, e)
			ctx := context.Background()
			if a, err := eng.Authenticate(ctx, k.Key); err != nil || a.Name != "bot" {
				t.Errorf("authenticate fresh key: %v %v", a, err)
			}
			e.ok("agent", "key", "revoke", k.ID)
			// The engine's store is another process's: it sees the
			// revocation within its cache's bound (one second), so allow
			// a few.
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := eng.Authenticate(ctx, k.Key)
				if errors.Is(err, interpose.ErrKeyRevoked) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("authenticate revoked key: %v, want ErrKeyRevoked", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			e.fails(1, `key "`+k.ID+`" is already revoked`, "agent", "key", "revoke", k.ID)
		})
	}
}

// newTestEngine opens the environment's store for an interpose.Engine.
func newTestEngine(t *testing.T, e *cliEnv) *interpose.Engine {
	t.Helper()
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Flags = GlobalFlags{Home: e.home, DatabaseURL: e.dbURL}
	t.Cleanup(f.Close)
	st, err := f.Store(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o := interpose.Options{Store: st}
	if e.now != nil {
		o.Now = e.now
	}
	return interpose.New(o)
}

func TestPolicyLifecycle(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			e.ok("agent", "register", "--name", "bot", "--owner", "ops")
			var p policy.Policy
			e.json(&p, "policy", "create", "--agent", "bot", "--limit", "100", "--currency", "EUR", "--window", "monthly",
				"--timezone", "Europe/Paris", "--allow", "mcp:fs/*")
			e.json(&p, "policy", "update", p.ID, "--limit", "150.50", "--window-type", "rolling")
			if p.Version != 2 || p.Limit != money.MustParse("150.50") || p.WindowType != policy.WindowRolling ||
				p.Currency != "EUR" || p.Window != policy.WindowMonthly || p.Timezone != "Europe/Paris" || !reflect.DeepEqual(p.Allow, []string{"mcp:fs/*"}) {
				t.Errorf("after update: %+v", p)
			}
			var cleared policy.Policy // a fresh value: JSON without "allow" must mean none
			e.json(&cleared, "policy", "update", p.ID, "--clear-allow")
			if cleared.Version != 3 || cleared.Allow != nil {
				t.Errorf("after --clear-allow: %+v", cleared)
			}
			e.fails(2, "--clear-allow: cannot be combined with --allow", "policy", "update", p.ID, "--clear-allow", "--allow", "x:*")
			e.fails(2, `--limit: invalid amount "lots": unexpected character 'l'`, "policy", "update", p.ID, "--limit", "lots")
			e.json(&p, "policy", "deactivate", p.ID)
			if p.Active {
				t.Errorf("after deactivate: %+v", p)
			}
			var hist []policy.Policy
			e.json(&hist, "policy", "history", p.ID)
			if len(hist) != 4 {
				t.Fatalf("history has %d versions, want 4: %+v", len(hist), hist)
			}
			for i, h := range hist {
				if h.Version != i+1 || h.ID != p.ID {
					t.Errorf("history[%d] = %+v", i, h)
				}
			}
			if hist[0].Limit != money.MustParse("100") || hist[1].Limit != money.MustParse("150.50") {
				t.Errorf("history limits: %s, %s", hist[0].Limit, hist[1].Limit)
			}
			var active []policy.Policy
			e.json(&active, "policy", "list")
			if len(active) != 0 {
				t.Errorf("policy list shows a deactivated policy: %+v", active)
			}
			e.json(&active, "policy", "list", "--all")
			if len(active) != 1 {
				t.Errorf("policy list --all: %+v", active)
			}
			table := e.ok("policy", "history", p.ID)
			if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 5 || !strings.HasPrefix(lines[0], "VERSION") {
				t.Errorf("history table:\n%s", table)
			}
		})
	}
}

func TestDelegation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			for _, n := range []string{"parent", "a", "b", "other"} {
				e.ok("agent", "register", "--name", n, "--owner", "ops")
			}
			e.ok("agent", "register", "--name", "adopted", "--owner", "ops", "--parent", "other")
			e.ok("policy", "create", "--agent", "parent", "--limit", "10")
			var d ledger.DelegationView
			e.json(&d, "delegation", "create", "--parent", "parent", "--child", "a", "--limit", "8")
			if d.Parent != "parent" || d.Child != "a" || d.Limit != "8.00" || d.Status != "active" || d.Window != policy.WindowDaily {
				t.Errorf("delegation %+v", d)
			}
			var a policy.Agent
			e.json(&a, "agent", "get", "a")
			var parent policy.Agent
			e.json(&parent, "agent", "get", "parent")
			if a.ParentID != parent.ID {
				t.Errorf("child's parent is %q, want %q", a.ParentID, parent.ID)
			}
			out := e.ok("delegation", "create", "--parent", "parent", "--child", "b", "--limit", "5", "--window", "weekly", "--window-type", "rolling")
			if !strings.HasPrefix(out, "Delegated 5.00 USD weekly (rolling) from parent to b: policy ") {
				t.Errorf("delegation create output: %q", out)
			}
			e.fails(1, `--child: agent "adopted" already has parent "other"; delegate from that parent`,
				"delegation", "create", "--parent", "parent", "--child", "adopted", "--limit", "1")

			var ds []ledger.DelegationView
			e.json(&ds, "delegation", "list")
			if len(ds) != 2 {
				t.Fatalf("delegation list: %+v", ds)
			}
			e.json(&ds, "delegation", "list", "--agent", "b")
			if len(ds) != 1 || ds[0].Child != "b" {
				t.Errorf("delegation list --agent b: %+v", ds)
			}

			e.json(&d, "delegation", "revoke", d.PolicyID)
			if d.Status != "revoked" || d.Limit != "0.00" || d.Version != 2 {
				t.Errorf("after revoke: %+v", d)
			}
			e.fails(1, `delegation "`+d.PolicyID+`" is already revoked`, "delegation", "revoke", d.PolicyID)
			var pols []policy.Policy
			e.json(&pols, "policy", "list", "--agent", "parent")
			e.fails(1, `policy "`+pols[0].ID+`" is not a delegation; use caracal policy deactivate`, "delegation", "revoke", pols[0].ID)

			// A revoked delegation lets the child spend nothing.
			e.ok("pricebook", "set", "mcp:x/*", "--per-call", "0.01")
			eng := newTestEngine(t, e)
			dec, err := eng.Do(context.Background(), interpose.Call{AgentID: a.ID, Resource: "mcp:x/y", Operation: "tools/call"},
				func(context.Context) (interpose.Result, error) { return interpose.Result{}, nil })
			if !errors.Is(err, interpose.ErrDenied) || dec.Code != policy.CodeBudgetExceeded {
				t.Errorf("call by a revoked child: %+v, %v", dec, err)
			}
		})
	}
}

func TestQuickstartIdempotent(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			first := e.ok("quickstart")
			for _, want := range []string{`Registered agent "demo".`, "Gave it a budget of 1.00 USD a day.",
				"forecast 0.10 USD, history 0.05 USD + 0.01 × days, ping 0.00 USD",
				"2   forecast  city=Lisbon             0.10       0.90  Lisbon tomorrow: 21°C",
				"9   history   city=Lima days=14       0.19       0.03  refused: budget_exceeded",
				"mcp:weather/history   4       0.57     1       USD",
				"caracal merkle verify --full: OK, 9 events and "} {
				if !strings.Contains(first, want) {
					t.Errorf("first quickstart lacks %q:\n%s", want, first)
				}
			}
			second := e.ok("quickstart")
			for _, want := range []string{`Reusing agent "demo".`, "Gave it a fresh budget of 1.00 USD a day", "0 rules imported, 3 already present",
				"9   history   city=Lima days=14       0.19       0.03  refused: budget_exceeded",
				"caracal merkle verify --full: OK, 18 events and "} {
				if !strings.Contains(second, want) {
					t.Errorf("second quickstart lacks %q:\n%s", want, second)
				}
			}
			var agents []policy.Agent
			e.json(&agents, "agent", "list")
			var pols []policy.Policy
			e.json(&pols, "policy", "list")
			if len(agents) != 1 || len(pols) != 1 {
				t.Errorf("after two quickstarts: %d agents, %d active policies", len(agents), len(pols))
			}
			var sum []ledger.SummaryRow
			e.json(&sum, "ledger", "summary", "--by", "agent")
			if len(sum) != 1 || sum[0].Events != 18 || sum[0].Denied != 2 || sum[0].Charged != money.MustParse("1.94") {
				t.Errorf("ledger after two quickstarts: %+v", sum)
			}
			e.ok("merkle", "verify", "--full")
		})
	}
}

// TestLedgerCommands meters calls at known times and reads them back with
// every filter and format.
func TestLedgerCommands(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
			e.now = func() time.Time { return now }
			e.ok("init")
			e.ok("agent", "register", "--name", "root", "--owner", "ops")
			e.ok("agent", "register", "--name", "kid", "--owner", "ops", "--parent", "root")
			e.ok("agent", "register", "--name", "grandkid", "--owner", "ops", "--parent", "kid")
			e.ok("agent", "register", "--name", "stranger", "--owner", "ops")
			for _, n := range []string{"root", "stranger"} {
				e.ok("policy", "create", "--agent", n, "--limit", "1", "--window", "total")
			}
			e.ok("pricebook", "set", "mcp:fs/*", "--per-call", "0.10")
			e.ok("pricebook", "set", "llm:openai/*", "--input-per-million", "1", "--output-per-million", "2")

			eng := newTestEngine(t, e)
			ids := map[string]string{}
			for _, n := range []string{"root", "kid", "grandkid", "stranger"} {
				var a policy.Agent
				e.json(&a, "agent", "get", n)
				ids[n] = a.ID
			}
			call := func(day int, agent, resource string) {
				t.Helper()
				now = time.Date(2026, 3, day, 12, 0, 0, 0, time.UTC)
				_, err := eng.Do(context.Background(), interpose.Call{AgentID: ids[agent], Resource: resource, Operation: "tools/call"},
					func(context.Context) (interpose.Result, error) { return interpose.Result{}, nil })
				if err != nil && !errors.Is(err, interpose.ErrDenied) {
					t.Fatal(err)
				}
			}
			call(1, "root", "mcp:fs/read")
			call(2, "kid", "mcp:fs/write")
			call(2, "grandkid", "mcp:fs/read")
			call(3, "stranger", "mcp:fs/read")
			call(3, "grandkid", "mcp:fs/list")
			for i := 0; i < 7; i++ { // root's total budget of 1.00 holds 0.40 + 6 × 0.10: the 7th is refused
				call(4, "kid", "mcp:fs/read")
			}
			now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

			var evs []ledger.Event
			e.json(&evs, "ledger", "query", "--limit", "0")
			if len(evs) != 12 {
				t.Fatalf("ledger query: %d events, want 12", len(evs))
			}
			count := func(args ...string) int {
				t.Helper()
				var evs []ledger.Event
				e.json(&evs, append([]string{"ledger", "query"}, args...)...)
				return len(evs)
			}
			for _, tc := range []struct {
				args []string
				want int
			}{
				{[]string{"--agent", "kid"}, 8},
				{[]string{"--agent", "kid", "--include-children"}, 10},
				{[]string{"--agent", "root", "--include-children"}, 11},
				{[]string{"--agent", "stranger"}, 1},
				{[]string{"--since", "2026-03-02", "--until", "2026-03-03"}, 2},
				{[]string{"--since", "2026-03-03T00:00:00Z"}, 9},
				{[]string{"--since", "7d"}, 9}, // now is the 10th at noon: from the 3rd at noon on
				{[]string{"--outcome", "denied"}, 1},
				{[]string{"--outcome", "charged", "--agent", "kid"}, 7},
				{[]string{"--resource", "mcp:fs/w*"}, 1},
				{[]string{"--limit", "3"}, 3},
			} {
				if got := count(tc.args...); got != tc.want {
					t.Errorf("ledger query %v: %d events, want %d", tc.args, got, tc.want)
				}
			}
			e.fails(2, "--include-children: requires --agent", "ledger", "query", "--include-children")
			e.fails(2, "--until: 2026-03-01T00:00:00Z is not after --since 2026-03-02T00:00:00Z", "ledger", "query", "--since", "2026-03-02", "--until", "2026-03-01")

			var sum []ledger.SummaryRow
			e.json(&sum, "ledger", "summary", "--by", "day")
			want := []ledger.SummaryRow{
				{Key: "2026-03-01", Events: 1, Charged: money.MustParse("0.10"), Currency: "USD"},
				{Key: "2026-03-02", Events: 2, Charged: money.MustParse("0.20"), Currency: "USD"},
				{Key: "2026-03-03", Events: 2, Charged: money.MustParse("0.20"), Currency: "USD"},
				{Key: "2026-03-04", Events: 7, Charged: money.MustParse("0.60"), Denied: 1, Currency: "USD"},
			}
			if !reflect.DeepEqual(sum, want) {
				t.Errorf("summary by day:\n got %+v\nwant %+v", sum, want)
			}
			e.json(&sum, "ledger", "summary", "--by", "resource", "--agent", "root", "--include-children")
			if len(sum) != 3 {
				t.Errorf("summary by resource of root and descendants: %+v", sum)
			}
			var raw []json.RawMessage
			e.json(&raw, "ledger", "summary", "--by", "agent")
			wantKeys(t, "summary row", raw[0], "key", "events", "charged", "denied", "unpriced", "currency")
			e.json(&raw, "ledger", "query", "--limit", "1", "--oldest-first")
			wantKeys(t, "event", raw[0], "seq", "id", "time", "agent_id", "agent_name", "chain", "resource", "operation",
				"amount", "currency", "request_id", "outcome", "tokens")

			csvOut := e.ok("ledger", "query", "-o", "csv", "--limit", "0")
			recs, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
			if err != nil || len(recs) != 13 || !reflect.DeepEqual(recs[0], ledger.EventCSVHeader) {
				t.Errorf("ledger query -o csv: %v, %d records", err, len(recs))
			}

			jsonl := e.ok("ledger", "export")
			lines := strings.Split(strings.TrimSpace(jsonl), "\n")
			if len(lines) != 12 {
				t.Fatalf("export: %d lines, want 12", len(lines))
			}
			for i, l := range lines {
				var ev ledger.Event
				// Export is in ledger order; query lists the newest first.
				if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.ID != evs[len(evs)-1-i].ID {
					t.Errorf("export line %d: %v %+v", i, err, ev)
				}
			}
			recs, err = csv.NewReader(strings.NewReader(e.ok("ledger", "export", "--format", "csv", "--agent", "grandkid"))).ReadAll()
			if err != nil || len(recs) != 3 || recs[1][4] != "grandkid" {
				t.Errorf("export --format csv --agent grandkid: %v %v", err, recs)
			}
			table := e.ok("ledger", "query", "--outcome", "denied")
			if !strings.Contains(table, "budget_exceeded") || !strings.HasPrefix(table, "SEQ") {
				t.Errorf("ledger query table:\n%s", table)
			}
			if got := e.ok("ledger", "query", "--agent", "stranger", "--since", "2026-03-05"); strings.TrimSpace(got) !=
				"SEQ  TIME  AGENT  RESOURCE  OUTCOME  AMOUNT  CURRENCY  CODE" {
				t.Errorf("empty query table: %q", got)
			}
			if got := e.ok("ledger", "query", "--agent", "stranger", "--since", "2026-03-05", "-o", "json"); got != "[]\n" {
				t.Errorf("empty query JSON: %q", got)
			}
		})
	}
}
