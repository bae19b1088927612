package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/pgtest"
)

// cliUser runs the caracal binary as a user would, with a home of its own
// and none of the machine's CARACAL_* variables.
type cliUser struct {
	t     *testing.T
	home  string
	dbURL string
	env   []string
}

func newCLIUser(t *testing.T, backend string) *cliUser {
	t.Helper()
	u := &cliUser{t: t, home: filepath.Join(t.TempDir(), "caracal-home")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARACAL_") {
			u.env = append(u.env, kv)
		}
	}
	u.env = append(u.env, "CARACAL_HOME="+u.home)
	if os.Getenv("GORACE") == "" {
		// The race runtime otherwise sleeps a second at every exit, and
		// these tests run the binary a hundred times. A race still fails
		// the command with exit code 66.
		u.env = append(u.env, "GORACE=atexit_sleep_ms=0")
	}
	if backend == "postgres" {
		u.dbURL = pgtest.URL(t)
		u.env = append(u.env, "CARACAL_DATABASE_URL="+u.dbURL)
	}
	return u
}

// run executes caracal with args and returns stdout, stderr and the exit code.
func (u *cliUser) run(args ...string) (string, string, int) {
	u.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = u.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &ee):
		return out.String(), errOut.String(), ee.ExitCode()
	}
	u.t.Fatalf("run caracal %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

func (u *cliUser) ok(args ...string) string {
	u.t.Helper()
	out, errOut, code := u.run(args...)
	if code != 0 {
		u.t.Fatalf("caracal %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func (u *cliUser) json(v any, args ...string) {
	u.t.Helper()
	out := u.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		u.t.Fatalf("caracal %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (u *cliUser) fails(code int, msg string, args ...string) {
	u.t.Helper()
	_, errOut, got := u.run(args...)
	if want := "caracal: " + msg + "\n"; got != code || errOut != want {
		u.t.Errorf("caracal %s:\n got exit %d, stderr %q\nwant exit %d, stderr %q", strings.Join(args, " "), got, errOut, code, want)
	}
}

var cliBackends = []string{"sqlite", "postgres"}

// TestCLINewUser is the path a new user takes, on the embedded default and
// on PostgreSQL: init, register, budget, import the example pricebook, then
// every list and get in table and JSON form.
func TestCLINewUser(t *testing.T) {
	for _, backend := range cliBackends {
		t.Run(backend, func(t *testing.T) {
			u := newCLIUser(t, backend)
			out := u.ok("init")
			if !strings.Contains(out, "Home:") || !strings.Contains(out, u.home) {
				t.Errorf("init:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(u.home, "config.yaml")); err != nil {
				t.Errorf("init wrote no config: %v", err)
			}
			_, err := os.Stat(filepath.Join(u.home, "caracal.db"))
			if backend == "sqlite" && err != nil {
				t.Errorf("no SQLite file after init: %v", err)
			}
			if backend == "postgres" && err == nil {
				t.Errorf("init created a SQLite file although a database URL is set")
			}

			var agent struct {
				ID, Name, Owner, Status string
				ParentID                string `json:"parent_id"`
			}
			u.json(&agent, "agent", "register", "--name", "research-bot", "--owner", "alice@example.com")
			if agent.Name != "research-bot" || agent.Status != "active" || agent.ID == "" {
				t.Errorf("register: %+v", agent)
			}
			u.ok("agent", "register", "--name", "summariser", "--owner", "alice@example.com", "--parent", "research-bot")
			var pol struct {
				ID, Limit, Currency, Window string
				Version                     int
			}
			u.json(&pol, "policy", "create", "--agent", "research-bot", "--limit", "25.50", "--window", "monthly", "--timezone", "America/New_York")
			if pol.Limit != "25.50" || pol.Currency != "USD" || pol.Window != "monthly" || pol.Version != 1 {
				t.Errorf("policy create: %+v", pol)
			}
			if out := u.ok("pricebook", "import", "../examples/pricebook.yaml"); !strings.HasPrefix(out, "Imported 8 price rules") {
				t.Errorf("pricebook import: %s", out)
			}
			var key struct{ ID, Key string }
			u.json(&key, "agent", "key", "create", "--agent", "research-bot")
			if !strings.HasPrefix(key.Key, "crk_") {
				t.Errorf("key: %+v", key)
			}
			var d struct {
				PolicyID string `json:"policy_id"`
			}
			u.json(&d, "delegation", "create", "--parent", "research-bot", "--child", "summariser", "--limit", "5")

			for _, args := range [][]string{
				{"agent", "list"}, {"agent", "get", "research-bot"}, {"agent", "get", agent.ID},
				{"agent", "key", "list", "--agent", "research-bot"},
				{"policy", "list"}, {"policy", "get", pol.ID}, {"policy", "history", pol.ID},
				{"pricebook", "list"}, {"pricebook", "get", "llm:openai/gpt-4o-mini-2024-07-18"},
				{"delegation", "list"},
				{"ledger", "query"}, {"ledger", "summary", "--by", "agent"},
				{"db", "status"}, {"db", "migrate", "status"}, {"version"},
			} {
				table := u.ok(args...)
				if strings.TrimSpace(table) == "" {
					t.Errorf("caracal %s printed nothing", strings.Join(args, " "))
				}
				var v any
				u.json(&v, args...)
			}
			var rule struct{ Resource string }
			u.json(&rule, "pricebook", "get", "llm:openai/gpt-4o-mini-2024-07-18")
			if rule.Resource != "llm:openai/gpt-4o-mini*" {
				t.Errorf("most specific rule for gpt-4o-mini: %q", rule.Resource)
			}
			var st struct {
				Backend string           `json:"backend"`
				Rows    map[string]int64 `json:"rows"`
			}
			u.json(&st, "db", "status")
			if st.Backend != backend || st.Rows["agents"] != 2 || st.Rows["policies"] != 2 || st.Rows["prices"] != 8 || st.Rows["api_keys"] != 1 {
				t.Errorf("db status: %+v", st)
			}
			if out := u.ok("ledger", "export"); out != "" {
				t.Errorf("export of an empty ledger: %q", out)
			}
		})
	}
}

// TestCLIBadInput checks exit codes and exact messages through the binary.
func TestCLIBadInput(t *testing.T) {
	for _, backend := range cliBackends {
		t.Run(backend, func(t *testing.T) {
			u := newCLIUser(t, backend)
			u.fails(2, "unknown command \"init2\" for \"caracal\"\n\nDid you mean this?\n\tinit\n", "init2")
			u.ok("init")
			u.ok("agent", "register", "--name", "bot", "--owner", "ops")
			u.ok("agent", "register", "--name", "kid", "--owner", "ops", "--parent", "bot")
			bad := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(bad, []byte("prices:\n  - resource: mcp:a/b\n    per_tokn: \"1\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var key struct{ ID string }
			u.json(&key, "agent", "key", "create", "--agent", "bot")
			u.ok("agent", "key", "revoke", key.ID)

			u.fails(2, `--limit: invalid amount "ten": unexpected character 't'`, "policy", "create", "--agent", "bot", "--limit", "ten")
			u.fails(2, `--window: invalid window "yearly": want total, hourly, daily, weekly or monthly`, "policy", "create", "--agent", "bot", "--limit", "1", "--window", "yearly")
			u.fails(2, `--timezone: unknown time zone "Europe/Atlantis": want an IANA name such as UTC or America/New_York`, "policy", "create", "--agent", "bot", "--limit", "1", "--timezone", "Europe/Atlantis")
			u.fails(2, `--currency: invalid currency "EURO": want a three-letter code such as USD`, "policy", "create", "--agent", "bot", "--limit", "1", "--currency", "EURO")
			u.fails(2, `--input-per-million: invalid amount "-2.50": must not be negative`, "pricebook", "set", "llm:x/*", "--input-per-million", "-2.50")
			u.fails(2, bad+`: pricebook entry 1 ("mcp:a/b"): unknown field "per_tokn"`, "pricebook", "import", bad)
			u.fails(1, `--name: agent "bot" already exists`, "agent", "register", "--name", "bot", "--owner", "ops")
			u.fails(1, `--parent: agent "nobody" not found`, "agent", "register", "--name", "x", "--owner", "ops", "--parent", "nobody")
			u.fails(1, `--child: agent "bot" is an ancestor of "kid": delegating would make a cycle`, "delegation", "create", "--parent", "kid", "--child", "bot", "--limit", "1")
			u.fails(1, `key "`+key.ID+`" is already revoked`, "agent", "key", "revoke", key.ID)
			u.fails(2, `--database-url: invalid database URL "sqlite:///tmp/x.db": want postgres://user:password@host:port/database`, "agent", "list", "--database-url", "sqlite:///tmp/x.db")
			u.fails(1, `database unreachable at postgres://caracal:xxxxx@127.0.0.1:1/caracal: dial tcp 127.0.0.1:1: connect: connection refused`,
				"agent", "list", "--database-url", "postgres://caracal:secret@127.0.0.1:1/caracal")

			if err := os.WriteFile(filepath.Join(u.home, "config.yaml"), []byte("pricing:\n  strict: sometimes\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			u.fails(2, `config: pricing.strict: invalid boolean "sometimes": want true or false`, "agent", "list")
			if err := os.Remove(filepath.Join(u.home, "config.yaml")); err != nil {
				t.Fatal(err)
			}

			var st struct {
				SchemaVersion int64 `json:"schema_version"`
				LatestVersion int64 `json:"latest_version"`
			}
			u.json(&st, "db", "status")
			u.ok("db", "migrate", "down", "--yes")
			u.fails(1, "schema version "+itoa(st.LatestVersion-1)+", this binary needs "+itoa(st.LatestVersion)+
				": database schema is older than this binary: run `caracal db migrate up`", "agent", "list")
			u.ok("db", "migrate", "up")

			// Nothing above was half-written.
			var agents []any
			u.json(&agents, "agent", "list")
			var rules []any
			u.json(&rules, "pricebook", "list")
			var pols []any
			u.json(&pols, "policy", "list")
			if len(agents) != 2 || len(rules) != 0 || len(pols) != 0 {
				t.Errorf("after bad input: %d agents, %d rules, %d policies", len(agents), len(rules), len(pols))
			}
		})
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestCLIQuickstart runs quickstart twice on the default home from
// CARACAL_HOME: each run drives the example server through a real caracal
// mcp process until the budget refuses a call, and ends with a verified
// ledger; the second run reuses the agent with a fresh budget.
func TestCLIQuickstart(t *testing.T) {
	u := newCLIUser(t, "sqlite")
	first := u.ok("quickstart")
	for _, want := range []string{`Registered agent "demo".`, "Gave it a budget of 1.00 USD a day.",
		"forecast 0.10 USD, history 0.05 USD + 0.01 × days, ping 0.00 USD",
		"1   ping      -                       0.00       1.00  pong",
		"8   forecast  city=Lima               0.10       0.03  Lima tomorrow",
		"9   history   city=Lima days=14       0.19       0.03  refused: budget_exceeded",
		`Caracal refused this call (budget_exceeded): daily budget of agent "demo"`,
		"mcp:weather/forecast  4       0.40     0       USD",
		"caracal merkle verify --full: OK, 9 events and "} {
		if !strings.Contains(first, want) {
			t.Errorf("first quickstart lacks %q:\n%s", want, first)
		}
	}
	second := u.ok("quickstart")
	for _, want := range []string{`Reusing agent "demo".`, "Gave it a fresh budget of 1.00 USD a day",
		"9   history   city=Lima days=14       0.19       0.03  refused: budget_exceeded",
		"caracal merkle verify --full: OK, 18 events and "} {
		if !strings.Contains(second, want) {
			t.Errorf("second quickstart lacks %q:\n%s", want, second)
		}
	}
	var agents []any
	u.json(&agents, "agent", "list")
	if len(agents) != 1 {
		t.Errorf("%d agents after two quickstarts", len(agents))
	}
	// The refused call never reached the server, and every decision is in
	// the ledger: 8 charged and 1 denied per run.
	var events []map[string]any
	u.json(&events, "ledger", "query")
	outcomes := map[string]int{}
	for _, e := range events {
		outcomes[fmt.Sprint(e["outcome"])]++
	}
	if len(events) != 18 || outcomes["charged"] != 16 || outcomes["denied"] != 2 {
		t.Errorf("ledger after two quickstarts: %d events, outcomes %v", len(events), outcomes)
	}
	u.ok("merkle", "verify", "--full")
}
