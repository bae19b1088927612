package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/policy"
)

// TestBadInput checks that each bad input fails with exactly the message
// that names the bad flag or field, the right exit code (2 for usage and
// configuration errors), and that nothing was written.
func TestBadInput(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			e.ok("agent", "register", "--name", "bot", "--owner", "ops")
			e.ok("agent", "register", "--name", "kid", "--owner", "ops", "--parent", "bot")
			e.ok("policy", "create", "--agent", "bot", "--limit", "10")

			dir := t.TempDir()
			file := func(name, body string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			unknownKind := file("unknown.yaml", "prices:\n  - resource: \"mcp:a/b\"\n    per_token: \"1\"\n")
			malformed := file("malformed.yaml", "prices:\n  - resource: \"mcp:a/b\n    per_call: 1\n")
			negative := file("negative.yaml", "prices:\n  - resource: mcp:a/ok\n    per_call: \"0.01\"\n  - resource: mcp:a/b\n    per_call: \"-0.01\"\n")
			ctlPath := file("ctl.yaml", "prices:\n  - resource: mcp:a/b\n    per_unit:\n      path: \"n\\e[2J\"\n      price: \"1\"\n")
			notProof := file("proof.json", "{nope")
			pub := strings.TrimSpace(e.ok("keys", "export-public"))
			badCurrency := file("currency.yaml", "prices:\n  - resource: mcp:a/ok\n    per_call: \"0.01\"\n  - resource: mcp:a/b\n    currency: usdx\n    per_call: \"1\"\n")

			cases := []struct {
				name string
				code int
				want string
				args []string
			}{
				{"bad limit", 2, `--limit: invalid amount "abc": unexpected character 'a'`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "abc"}},
				{"negative limit", 2, `--limit: invalid amount "-5": must not be negative`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "-5"}},
				{"too precise limit", 2, `--limit: invalid amount "0.0000000001": more than 9 decimal places`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "0.0000000001"}},
				{"missing limit", 2, `--limit: required`,
					[]string{"policy", "create", "--agent", "bot"}},
				{"bad window", 2, `--window: invalid window "fortnightly": want total, hourly, daily, weekly or monthly`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--window", "fortnightly"}},
				{"bad window type", 2, `--window-type: invalid window type "sliding": want calendar or rolling`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--window-type", "sliding"}},
				{"bad time zone", 2, `--timezone: unknown time zone "Mars/Olympus": want an IANA name such as UTC or America/New_York`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--timezone", "Mars/Olympus"}},
				{"local time zone", 2, `--timezone: unknown time zone "Local": want an IANA name such as UTC or America/New_York`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--timezone", "Local"}},
				{"bad currency", 2, `--currency: invalid currency "usdx": want a three-letter code such as USD`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--currency", "usdx"}},
				{"control character in allow pattern", 2, `--allow: invalid pattern "mcp:\x1b*": want a resource pattern without spaces such as 'mcp:fs/*'`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--allow", "mcp:\x1b*"}},
				{"control character in priced resource", 2, `RESOURCE: invalid pattern "mcp:a\ab": want a resource pattern without spaces such as 'mcp:fs/*'`,
					[]string{"pricebook", "set", "mcp:a\ab", "--per-call", "1"}},
				{"space in priced resource", 2, `RESOURCE: invalid pattern "mcp:a b": want a resource pattern without spaces such as 'mcp:fs/*'`,
					[]string{"pricebook", "set", "mcp:a b", "--per-call", "1"}},
				{"bad allow pattern", 2, `--allow: invalid pattern "mcp:fs/ *": want a resource pattern without spaces such as 'mcp:fs/*'`,
					[]string{"policy", "create", "--agent", "bot", "--limit", "5", "--allow", "mcp:fs/ *"}},
				{"policy for unknown agent", 1, `--agent: agent "ghost" not found`,
					[]string{"policy", "create", "--agent", "ghost", "--limit", "5"}},
				{"update nothing", 2, `policy update: nothing to change: give --limit, --currency, --window, --window-type, --timezone, --allow or --clear-allow`,
					[]string{"policy", "update", "0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f"}},
				{"unknown policy", 1, `policy "0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f" not found`,
					[]string{"policy", "get", "0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f"}},
				{"negative price", 2, `--per-call: invalid amount "-1": must not be negative`,
					[]string{"pricebook", "set", "mcp:x/y", "--per-call", "-1"}},
				{"no price", 2, `pricebook set: give at least one price: --per-call, --input-per-million, --output-per-million, --cached-input-per-million, --cache-write-per-million, --reasoning-per-million or --per-unit-path with --per-unit-price`,
					[]string{"pricebook", "set", "mcp:x/y"}},
				{"per-unit price without path", 2, `--per-unit-path: required with --per-unit-price`,
					[]string{"pricebook", "set", "mcp:x/y", "--per-unit-price", "0.1"}},
				{"unknown rule kind flag", 2, `unknown flag: --per-token`,
					[]string{"pricebook", "set", "mcp:x/y", "--per-token", "1"}},
				{"unknown rule kind in file", 2, unknownKind + `: pricebook entry 1 ("mcp:a/b"): unknown field "per_token"`,
					[]string{"pricebook", "import", unknownKind}},
				{"malformed YAML", 2, malformed + `: malformed pricebook: line 2: found unexpected end of stream`,
					[]string{"pricebook", "import", malformed}},
				{"negative price in file", 2, negative + `: pricebook entry 2 ("mcp:a/b"): per_call: negative price -0.01`,
					[]string{"pricebook", "import", negative}},
				{"bad currency in file", 2, badCurrency + `: pricebook entry 2 ("mcp:a/b"): currency: invalid currency "usdx": want a three-letter code such as USD`,
					[]string{"pricebook", "import", badCurrency}},
				{"duplicate agent", 1, `--name: agent "bot" already exists`,
					[]string{"agent", "register", "--name", "bot", "--owner", "ops"}},
				{"bad agent name", 2, `--name: invalid agent name "my bot": use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit`,
					[]string{"agent", "register", "--name", "my bot", "--owner", "ops"}},
				{"UUID agent name", 2, `--name: agent name "0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10" must not be a UUID: UUIDs are agent IDs`,
					[]string{"agent", "register", "--name", "0b5c7a52-3d3e-4a8e-9d7e-1f6f4b2c9a10", "--owner", "ops"}},
				{"missing owner", 2, `--owner: required`,
					[]string{"agent", "register", "--name", "new"}},
				{"bad metadata", 2, `--metadata: invalid entry "team": want KEY=VALUE`,
					[]string{"agent", "register", "--name", "new", "--owner", "ops", "--metadata", "team"}},
				{"missing parent", 1, `--parent: agent "ghost" not found`,
					[]string{"agent", "register", "--name", "orphan", "--owner", "ops", "--parent", "ghost"}},
				{"parent cycle", 1, `--child: agent "bot" is an ancestor of "kid": delegating would make a cycle`,
					[]string{"delegation", "create", "--parent", "kid", "--child", "bot", "--limit", "1"}},
				{"self delegation", 2, `--child: an agent cannot delegate to itself`,
					[]string{"delegation", "create", "--parent", "bot", "--child", "bot", "--limit", "1"}},
				{"delegation over parent limit", 2, `--limit: 20.00 USD exceeds parent "bot"'s daily limit of 10.00 USD`,
					[]string{"delegation", "create", "--parent", "bot", "--child", "kid", "--limit", "20"}},
				{"bad key lifetime", 2, `--expires: invalid duration "soon": want a positive duration such as 720h or 30d`,
					[]string{"agent", "key", "create", "--agent", "bot", "--expires", "soon"}},
				{"unknown key", 1, `key "0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f" not found`,
					[]string{"agent", "key", "revoke", "0192f1c4-8d7e-7c3a-9b1e-5a2f3c4d5e6f"}},
				{"bad since", 2, `--since: invalid time "last tuesday": want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), a duration ago (24h, 7d, 1w), today or yesterday`,
					[]string{"ledger", "query", "--since", "last tuesday"}},
				{"bad outcome", 2, `--outcome: invalid outcome "won": want charged, denied, unconfirmed or refunded`,
					[]string{"ledger", "query", "--outcome", "won"}},
				{"bad summary grouping", 2, `--by: invalid grouping "week": want resource, agent or day`,
					[]string{"ledger", "summary", "--by", "week"}},
				{"bad export format", 2, `--format: unknown format "xml": want jsonl or csv`,
					[]string{"ledger", "export", "--format", "xml"}},
				{"escape in owner", 2, `--owner: control character U+001B at byte 3 is not allowed in free text`,
					[]string{"agent", "register", "--name", "new", "--owner", "ops\x1b[2J"}},
				{"newline in owner", 2, `--owner: control character U+000A at byte 3 is not allowed in free text`,
					[]string{"agent", "register", "--name", "new", "--owner", "ops\nnew  evil  active"}},
				{"bidi override in owner", 2, `--owner: control character U+202E at byte 0 is not allowed in free text`,
					[]string{"agent", "register", "--name", "new", "--owner", "\u202eops"}},
				{"control character in metadata value", 2, `--metadata: entry "team=ml\r": control character U+000D at byte 7 is not allowed in free text`,
					[]string{"agent", "register", "--name", "new", "--owner", "ops", "--metadata", "team=ml\r"}},
				{"control character in metadata key", 2, `--metadata: entry "te\x1bam=ml": control character U+001B at byte 2 is not allowed in free text`,
					[]string{"agent", "register", "--name", "new", "--owner", "ops", "--metadata", "te\x1bam=ml"}},
				{"control character in per-unit path", 2, `--per-unit-path: control character U+0007 at byte 1 is not allowed in free text`,
					[]string{"pricebook", "set", "mcp:x/y", "--per-unit-path", "n\a", "--per-unit-price", "1"}},
				{"control character in per-unit path in file", 2, ctlPath + `: pricebook entry 1 ("mcp:a/b"): per_unit: path: control character U+001B at byte 1 is not allowed in free text`,
					[]string{"pricebook", "import", ctlPath}},
				{"consistency backwards", 2, `--from 5: must not be more than --to 2`,
					[]string{"merkle", "consistency", "--from", "5", "--to", "2"}},
				{"negative consistency target", 2, `--to -3: must be 0 or more`,
					[]string{"merkle", "consistency", "--from", "0", "--to", "-3"}},
				{"negative checkpoint size", 2, `--size -7: must be 0 or more`,
					[]string{"merkle", "checkpoint", "--size", "-7"}},
				{"negative proof tree size", 2, `--size -2: must be 0 or more`,
					[]string{"merkle", "prove", "--seq", "0", "--size", "-2"}},
				{"not a proof file", 2, notProof + `: not a proof document: invalid character 'n' looking for beginning of object key string`,
					[]string{"merkle", "verify-proof", notProof, "--key", pub}},
				{"migrate down unconfirmed", 2, "--yes: required: rolling back a migration drops the tables it created, with their rows",
					[]string{"db", "migrate", "down"}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { e.fails(tc.code, tc.want, tc.args...) })
			}

			// Nothing was half-written by any of the above.
			var agents []policy.Agent
			e.json(&agents, "agent", "list")
			if len(agents) != 2 {
				t.Errorf("%d agents after bad input, want 2: %+v", len(agents), agents)
			}
			var pols []policy.Policy
			e.json(&pols, "policy", "list", "--all")
			if len(pols) != 1 {
				t.Errorf("%d policies after bad input, want 1: %+v", len(pols), pols)
			}
			var rules []policy.PriceRule
			e.json(&rules, "pricebook", "list")
			if len(rules) != 0 {
				t.Errorf("%d price rules after bad input, want 0 (import is all or nothing): %+v", len(rules), rules)
			}
			var kid policy.Agent
			e.json(&kid, "agent", "get", "kid")
			if kid.ParentID != agents[0].ID && kid.ParentID != agents[1].ID {
				t.Errorf("kid's parent changed: %+v", kid)
			}
		})
	}
}

// A key revoked once cannot be revoked again, and stays revoked.
func TestRevokeKeyTwice(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			e.ok("agent", "register", "--name", "bot", "--owner", "ops")
			var k createdKey
			e.json(&k, "agent", "key", "create", "--agent", "bot")
			e.ok("agent", "key", "revoke", k.ID)
			e.fails(1, fmt.Sprintf("key %q is already revoked", k.ID), "agent", "key", "revoke", k.ID)
			var keys []policy.APIKey
			e.json(&keys, "agent", "key", "list", "--agent", "bot")
			if len(keys) != 1 || keys[0].RevokedAt == nil {
				t.Errorf("keys after revoke: %+v", keys)
			}
		})
	}
}

func TestDatabaseErrors(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.fails(1, "no database at "+e.home+"/caracal.db: run `caracal init` first", "agent", "list")
	e.fails(2, `--database-url: invalid database URL "mysql://localhost/caracal": want postgres://user:password@host:port/database`,
		"agent", "list", "--database-url", "mysql://localhost/caracal")
	e.fails(2, `--database-url: invalid database URL "postgres://caracal:xxxxx@localhost:notaport/caracal": want postgres://user:password@host:port/database`,
		"agent", "list", "--database-url", "postgres://caracal:pw@localhost:notaport/caracal")
	e.fails(1, "database unreachable at postgres://caracal:xxxxx@127.0.0.1:1/caracal: dial tcp 127.0.0.1:1: connect: connection refused",
		"agent", "list", "--database-url", "postgres://caracal:pw@127.0.0.1:1/caracal")

	t.Setenv("CARACAL_DATABASE_URL", "postgres://caracal@127.0.0.1:1/caracal")
	e.fails(1, "database unreachable at postgres://caracal@127.0.0.1:1/caracal: dial tcp 127.0.0.1:1: connect: connection refused",
		"agent", "list")
}

// A binary opened on an older schema refuses to serve and says what to run.
func TestOlderSchema(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newCLIEnv(t, backend)
			e.ok("init")
			var st struct {
				SchemaVersion int64 `json:"schema_version"`
				LatestVersion int64 `json:"latest_version"`
			}
			e.json(&st, "db", "status")
			latest := st.LatestVersion
			if st.SchemaVersion != latest || latest < 1 {
				t.Fatalf("db status after init: %+v", st)
			}
			e.ok("db", "migrate", "down", "--yes")
			want := fmt.Sprintf("schema version %d, this binary needs %d: database schema is older than this binary: run `caracal db migrate up`", latest-1, latest)
			e.fails(1, want, "agent", "list")
			e.fails(1, want, "agent", "register", "--name", "bot", "--owner", "ops")
			e.json(&st, "db", "status")
			if st.SchemaVersion != latest-1 || st.LatestVersion != latest {
				t.Errorf("db status after migrate down: %+v", st)
			}
			e.ok("db", "migrate", "up")
			e.ok("agent", "register", "--name", "bot", "--owner", "ops")
		})
	}
}

func TestInvalidConfigFile(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	p := filepath.Join(e.home, "config.yaml")
	for _, tc := range []struct{ body, want string }{
		{"pricing:\n  default: abc\n", `config: pricing.default: invalid amount "abc": unexpected character 'a'`},
		{"pricing:\n  defualt: \"1\"\n", "config " + p + `: line 2: unknown key "defualt"`},
		{"pricing: [\n", "config " + p + `: malformed YAML: line 1: did not find expected node content`},
		{"delegation: {max_depth: many}\n", `config: delegation.max_depth: invalid depth "many": want a whole number from 1 to 100`},
	} {
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		e.fails(2, tc.want, "agent", "list")
	}
}

func TestDelegationMaxDepth(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	for _, n := range []string{"a", "b", "c"} {
		e.ok("agent", "register", "--name", n, "--owner", "ops")
	}
	t.Setenv("CARACAL_DELEGATION_MAX_DEPTH", "2")
	e.ok("delegation", "create", "--parent", "a", "--child", "b", "--limit", "1")
	e.fails(1, "--child: the chain would hold 3 agents (a → b → c…), more than delegation.max_depth 2",
		"delegation", "create", "--parent", "b", "--child", "c", "--limit", "1")
	e.fails(1, "--parent: the chain would hold 3 agents (a → b → d), more than delegation.max_depth 2",
		"agent", "register", "--name", "d", "--owner", "ops", "--parent", "b")
	var c policy.Agent
	e.json(&c, "agent", "get", "c")
	if c.ParentID != "" {
		t.Errorf("c got a parent although the delegation was refused: %+v", c)
	}
	var raw []json.RawMessage
	e.json(&raw, "delegation", "list")
	if len(raw) != 1 {
		t.Errorf("%d delegations, want 1", len(raw))
	}
}

// Inspecting commands on a fresh home say to run init and create nothing.
func TestFreshHome(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	want := "no database at " + e.home + "/caracal.db: run `caracal init` first"
	for _, args := range [][]string{{"db", "status"}, {"db", "migrate", "status"}, {"db", "migrate", "down", "--yes"}, {"agent", "list"}, {"ledger", "query"}} {
		e.fails(1, want, args...)
	}
	if _, err := os.Stat(e.home); !os.IsNotExist(err) {
		t.Errorf("home exists after read-only commands: %v", err)
	}
	e.ok("db", "init-db")
	var st struct {
		SchemaVersion int64 `json:"schema_version"`
		LatestVersion int64 `json:"latest_version"`
	}
	e.json(&st, "db", "status")
	if st.SchemaVersion == 0 || st.SchemaVersion != st.LatestVersion {
		t.Errorf("after db init-db: %+v", st)
	}
}
