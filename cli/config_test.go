package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

// clearConfigEnv isolates a test from the machine's CARACAL_* variables.
func clearConfigEnv(t *testing.T) {
	t.Helper()
	for _, k := range scalarKeys {
		t.Setenv(envName(k), "")
	}
	t.Setenv("CARACAL_CONFIG", "")
	t.Setenv("CARACAL_HOME", "")
}

func writeConfig(t *testing.T, home, body string) string {
	t.Helper()
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(home, ConfigFile)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	clearConfigEnv(t)
	home := t.TempDir()
	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Home: home, Pricing: PricingConfig{Currency: "USD", UnpricedLLM: UnpricedLLMRefuse}, Delegation: DelegationConfig{MaxDepth: 5},
		Log: LogConfig{Level: "info", Format: "text"}, Metrics: MetricsConfig{AgentLabel: true},
		Enforcement: EnforcementConfig{Unbudgeted: UnbudgetedRefuse, LeaseTTL: sqlstore.DefaultLeaseTTL},
		Merkle:      MerkleConfig{Sign: SignAuto}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if cfg.Backend() != "sqlite" || cfg.DatabasePath() != filepath.Join(home, "caracal.db") {
		t.Errorf("backend %s at %s", cfg.Backend(), cfg.DatabasePath())
	}
}

// The file written by init must load and mean the defaults.
func TestDefaultConfigFileLoads(t *testing.T) {
	clearConfigEnv(t)
	home := t.TempDir()
	p := writeConfig(t, home, defaultConfigFile)
	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != p || cfg.DatabaseURL != "" || cfg.Pricing.Default != 0 || cfg.Pricing.Strict ||
		cfg.Delegation.MaxDepth != 5 || cfg.Proxy.Listen != "127.0.0.1:8080" ||
		cfg.Pricing.UnpricedLLM != UnpricedLLMRefuse || cfg.Enforcement.Unbudgeted != UnbudgetedRefuse || cfg.Merkle.Sign != SignAuto {
		t.Errorf("default file: %+v", cfg)
	}
}

func TestLoadConfigFile(t *testing.T) {
	clearConfigEnv(t)
	t.Setenv("SEARCH_TOKEN", "s3cret")
	t.Setenv("PROJECTS", "/srv/projects")
	home := t.TempDir()
	writeConfig(t, home, `
database_url: ""
pricing:
  default: 0.10
  strict: true
delegation:
  max_depth: 3
mcp:
  listen: 127.0.0.1:8090
  upstreams:
    - name: fs
      command: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "${PROJECTS}/a"]
      env: {GITHUB_TOKEN: "${SEARCH_TOKEN}", Mixed_Case: "x"}
      trusted: true
    - name: search
      url: https://mcp.example.com/mcp
      headers: {Authorization: "Bearer ${SEARCH_TOKEN}", X-Literal: "$HOME stays"}
proxy:
  listen: 127.0.0.1:8080
  providers:
    - name: openai
      base_url: https://api.openai.com
      api_key_env: OPENAI_API_KEY
    - name: anthropic
      base_url: https://api.anthropic.com
      api_key_file: /run/secrets/anthropic
`)
	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pricing.Default != money.MustParse("0.10") || !cfg.Pricing.Strict || cfg.Delegation.MaxDepth != 3 {
		t.Errorf("pricing/delegation: %+v %+v", cfg.Pricing, cfg.Delegation)
	}
	wantUp := []Upstream{
		{Name: "fs", Command: []string{"npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/projects/a"},
			Env: map[string]string{"GITHUB_TOKEN": "s3cret", "Mixed_Case": "x"}, Trusted: true},
		{Name: "search", URL: "https://mcp.example.com/mcp",
			Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Literal": "$HOME stays"}},
	}
	if !reflect.DeepEqual(cfg.MCP.Upstreams, wantUp) || cfg.MCP.Listen != "127.0.0.1:8090" {
		t.Errorf("mcp:\n got %+v\nwant %+v", cfg.MCP, wantUp)
	}
	wantProv := []Provider{
		{Name: "openai", BaseURL: "https://api.openai.com", APIKeyEnv: "OPENAI_API_KEY"},
		{Name: "anthropic", BaseURL: "https://api.anthropic.com", APIKeyFile: "/run/secrets/anthropic"},
	}
	if !reflect.DeepEqual(cfg.Proxy.Providers, wantProv) {
		t.Errorf("proxy providers:\n got %+v\nwant %+v", cfg.Proxy.Providers, wantProv)
	}
}

// Flags beat CARACAL_* variables, which beat the file.
func TestLoadConfigPrecedence(t *testing.T) {
	clearConfigEnv(t)
	home := t.TempDir()
	writeConfig(t, home, "database_url: postgres://file@localhost/caracal\npricing:\n  default: \"1\"\n  strict: false\n")

	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://file@localhost/caracal" || cfg.Pricing.Default != money.MustParse("1") {
		t.Errorf("file: %+v", cfg)
	}

	t.Setenv("CARACAL_DATABASE_URL", "postgres://env@localhost/caracal")
	t.Setenv("CARACAL_PRICING_DEFAULT", "0.5")
	t.Setenv("CARACAL_PRICING_STRICT", "true")
	cfg, err = LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://env@localhost/caracal" || cfg.Pricing.Default != money.MustParse("0.5") || !cfg.Pricing.Strict {
		t.Errorf("env: %+v", cfg)
	}

	cfg, err = LoadConfig(home, GlobalFlags{DatabaseURL: "postgres://flag@localhost/caracal"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://flag@localhost/caracal" {
		t.Errorf("flag: %+v", cfg)
	}
}

func TestLoadConfigAlternateFile(t *testing.T) {
	clearConfigEnv(t)
	home := t.TempDir()
	alt := writeConfig(t, t.TempDir(), "pricing: {strict: true}\n")
	cfg, err := LoadConfig(home, GlobalFlags{ConfigFile: alt})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Pricing.Strict || cfg.File != alt {
		t.Errorf("--config: %+v", cfg)
	}
	missing := filepath.Join(home, "nope.yaml")
	_, err = LoadConfig(home, GlobalFlags{ConfigFile: missing})
	if want := "config: open " + missing + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing --config: got %v, want %s", err, want)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want string // %s is the file's path
	}{
		{"bad default", "pricing:\n  default: abc\n", nil,
			`config: pricing.default: invalid amount "abc": unexpected character 'a'`},
		{"negative default", "pricing:\n  default: \"-1\"\n", nil,
			`config: pricing.default: invalid amount "-1": must not be negative`},
		{"bad currency", "pricing:\n  currency: dollars\n", nil,
			`config: pricing.currency: invalid currency "dollars": want a three-letter code such as USD`},
		{"bad strict", "pricing:\n  strict: maybe\n", nil,
			`config: pricing.strict: invalid boolean "maybe": want true or false`},
		{"bad lease TTL", "enforcement:\n  lease_ttl: 100ms\n", nil,
			`config: enforcement.lease_ttl: invalid lease TTL "100ms": want a duration from 1s to 1h, such as 10s`},
		{"bad depth", "delegation:\n  max_depth: 0\n", nil,
			`config: delegation.max_depth: invalid depth "0": want a whole number from 1 to 100`},
		{"unknown key", "pricng:\n  default: \"1\"\n", nil,
			`config %s: line 1: unknown key "pricng"`},
		{"malformed", "pricing: [\n", nil,
			`config %s: malformed YAML: line 1: did not find expected node content`},
		{"wrong type", "mcp:\n  upstreams: fs\n", nil,
			"config %s: line 2: cannot unmarshal !!str `fs` into []cli.Upstream"},
		{"bad url", "database_url: mysql://localhost/db\n", nil,
			`config: database_url: invalid database URL "mysql://localhost/db": want postgres://user:password@host:port/database`},
		{"env names itself", "", map[string]string{"CARACAL_PRICING_DEFAULT": "1.2.3"},
			`CARACAL_PRICING_DEFAULT: invalid amount "1.2.3": unexpected character '.'`},
		{"bad listen", "mcp:\n  listen: 8090\n", nil,
			`config: mcp.listen: invalid address "8090": want HOST:PORT such as 127.0.0.1:8080`},
		{"upstream without name", "mcp:\n  upstreams:\n    - command: [x]\n", nil,
			`config: mcp.upstreams[0].name: missing`},
		{"upstream bad name", "mcp:\n  upstreams:\n    - name: File System\n      command: [x]\n", nil,
			`config: mcp.upstreams[0].name: invalid name "File System": use lower-case letters, digits, _ and -`},
		{"upstream name ending in _", "mcp:\n  upstreams:\n    - {name: fs_, command: [x]}\n    - {name: git, command: [y]}\n", nil,
			`config: mcp.upstreams[0].name: invalid name "fs_": must not contain "__" or end in "_", because "__" joins it to tool names`},
		{"upstream duplicate", "mcp:\n  upstreams:\n    - {name: fs, command: [x]}\n    - {name: fs, url: http://h/mcp}\n", nil,
			`config: mcp.upstreams[1].name: duplicate name "fs"`},
		{"upstream both", "mcp:\n  upstreams:\n    - {name: fs, command: [x], url: http://h/mcp}\n", nil,
			`config: mcp.upstreams[0]: set command or url, not both`},
		{"upstream neither", "mcp:\n  upstreams:\n    - {name: fs}\n", nil,
			`config: mcp.upstreams[0]: set command or url`},
		{"upstream bad url", "mcp:\n  upstreams:\n    - {name: fs, url: ftp://h/mcp}\n", nil,
			`config: mcp.upstreams[0].url: invalid URL "ftp://h/mcp": want http:// or https://`},
		{"provider no base", "proxy:\n  providers:\n    - {name: openai}\n", nil,
			`config: proxy.providers[0].base_url: missing`},
		{"bad merkle.sign", "merkle:\n  sign: always\n", nil,
			`config: merkle.sign: invalid value "always": want auto or never`},
		{"bad merkle.sign env", "", map[string]string{"CARACAL_MERKLE_SIGN": "yes"},
			`CARACAL_MERKLE_SIGN: invalid value "yes": want auto or never`},
		{"provider two keys", "proxy:\n  providers:\n    - {name: openai, base_url: https://a, api_key_env: K, api_key_file: /f}\n", nil,
			`config: proxy.providers[0]: set api_key_env or api_key_file, not both`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearConfigEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			home := t.TempDir()
			p := writeConfig(t, home, tc.file)
			_, err := LoadConfig(home, GlobalFlags{})
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, p)
			}
			if err == nil || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Errorf("%v is not a UsageError (exit 2)", err)
			}
		})
	}
}

// merkle.sign comes from the file, and CARACAL_MERKLE_SIGN overrides it.
func TestLoadConfigMerkleSign(t *testing.T) {
	for _, tc := range []struct{ file, env, want string }{
		{"", "", SignAuto},
		{"merkle:\n  sign: never\n", "", SignNever},
		{"merkle:\n  sign: Never\n", "", SignNever},
		{"merkle:\n  sign: never\n", "auto", SignAuto},
		{"", "never", SignNever},
	} {
		clearConfigEnv(t)
		t.Setenv("CARACAL_MERKLE_SIGN", tc.env)
		home := t.TempDir()
		writeConfig(t, home, tc.file)
		cfg, err := LoadConfig(home, GlobalFlags{})
		if err != nil {
			t.Errorf("file %q, env %q: %v", tc.file, tc.env, err)
		} else if cfg.Merkle.Sign != tc.want {
			t.Errorf("file %q, env %q: sign = %q; want %q", tc.file, tc.env, cfg.Merkle.Sign, tc.want)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	t.Setenv("CARACAL_TEST_A", "alpha")
	t.Setenv("CARACAL_TEST_EMPTY", "")
	for in, want := range map[string]string{
		"":                          "",
		"plain":                     "plain",
		"${CARACAL_TEST_A}/x":       "alpha/x",
		"$CARACAL_TEST_A":           "$CARACAL_TEST_A",
		"a${CARACAL_TEST_EMPTY}b":   "ab",
		"${CARACAL_TEST_UNSET_XYZ}": "",
		"pa$$word${":                "pa$$word${",
	} {
		if got := expandEnv(in); got != want {
			t.Errorf("expandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}
