package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"

	"github.com/caracal-dev/caracal/internal/alerts"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// DefaultMaxDelegationDepth is delegation.max_depth when unset: how many
// agents a chain may hold, the root included.
const DefaultMaxDelegationDepth = 5

// Config is Caracal's configuration (docs/cli.md), resolved from flags,
// CARACAL_* environment variables and the configuration file, with every
// `${VAR}` in a string replaced by the environment variable's value.
type Config struct {
	// Home is the home folder; File the configuration file read ("" if none).
	Home string `json:"home"`
	File string `json:"file,omitempty"`

	// DatabaseURL selects PostgreSQL; empty means the SQLite file in Home.
	DatabaseURL string           `json:"database_url,omitempty"`
	Pricing     PricingConfig    `json:"pricing"`
	Delegation  DelegationConfig `json:"delegation"`
	MCP         MCPConfig        `json:"mcp"`
	Proxy       ProxyConfig      `json:"proxy"`
	Log         LogConfig        `json:"log"`
	Metrics     MetricsConfig    `json:"metrics"`
	TLS         TLSConfig        `json:"tls"`

	Enforcement EnforcementConfig `json:"enforcement"`
	Merkle      MerkleConfig      `json:"merkle"`
	Alerts      []alerts.Webhook  `json:"alerts,omitempty"`
}

// Values of merkle.sign.
const (
	// SignAuto integrates and signs when this home holds the active key.
	SignAuto = "auto"
	// SignNever never integrates: the process only queues events.
	SignNever = "never"
)

// MerkleConfig is the `merkle` section.
type MerkleConfig struct {
	// Sign is SignAuto or SignNever.
	Sign string `json:"sign"`
}

// PricingConfig is the `pricing` section.
type PricingConfig struct {
	// Default is charged for an unpriced resource.
	Default money.Amount `json:"default"`
	// Currency of Default and of prices imported without one; USD if unset.
	Currency string `json:"currency"`
	// Strict refuses unpriced resources.
	Strict bool `json:"strict"`
	// UnpricedLLM is what happens to an LLM model no price rule matches:
	// UnpricedLLMRefuse (the default) or UnpricedLLMDefault (charge
	// Default).
	UnpricedLLM string `json:"unpriced_llm"`
}

// Values of pricing.unpriced_llm.
const (
	UnpricedLLMRefuse  = "refuse"
	UnpricedLLMDefault = "default"
)

// EnforcementConfig is the `enforcement` section.
type EnforcementConfig struct {
	// Unbudgeted is what happens to an agent with no active policy on its
	// chain: UnbudgetedRefuse (the default, code no_budget) or
	// UnbudgetedAllow (unmetered, but reserved and recorded).
	Unbudgeted string `json:"unbudgeted"`
	// LeaseTTL is how long this process's budget leases outlive its last
	// heartbeat before another process may reclaim them (after a crash).
	LeaseTTL time.Duration `json:"lease_ttl"`
}

// Values of enforcement.unbudgeted.
const (
	UnbudgetedRefuse = "refuse"
	UnbudgetedAllow  = "allow"
)

// DelegationConfig is the `delegation` section.
type DelegationConfig struct {
	// MaxDepth is the most agents a delegation chain may hold, root included.
	MaxDepth int `json:"max_depth"`
}

// MCPConfig is the `mcp` section.
type MCPConfig struct {
	Listen         string     `yaml:"listen" json:"listen,omitempty"`
	Upstreams      []Upstream `yaml:"upstreams" json:"upstreams,omitempty"`
	ServerTimeouts `yaml:",inline"`
}

// Upstream is one MCP server behind `caracal mcp`: a command to launch
// (stdio) or a URL (Streamable HTTP), never both.
type Upstream struct {
	Name    string            `yaml:"name" json:"name"`
	Command []string          `yaml:"command" json:"command,omitempty"`
	URL     string            `yaml:"url" json:"url,omitempty"`
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
	// Trusted upstreams may declare prices in a tool's _meta.
	Trusted bool `yaml:"trusted" json:"trusted,omitempty"`
}

// ProxyConfig is the `proxy` section.
type ProxyConfig struct {
	Listen         string     `yaml:"listen" json:"listen,omitempty"`
	Providers      []Provider `yaml:"providers" json:"providers,omitempty"`
	ServerTimeouts `yaml:",inline"`
}

// Provider is one LLM API behind `caracal proxy`. Its key comes from the
// environment variable APIKeyEnv or the file APIKeyFile.
type Provider struct {
	Name       string `yaml:"name" json:"name"`
	BaseURL    string `yaml:"base_url" json:"base_url"`
	APIKeyEnv  string `yaml:"api_key_env" json:"api_key_env,omitempty"`
	APIKeyFile string `yaml:"api_key_file" json:"api_key_file,omitempty"`
}

// DatabasePath is the embedded SQLite file.
func (c *Config) DatabasePath() string { return filepath.Join(c.Home, DatabaseFile) }

// Backend is "postgres" or "sqlite".
func (c *Config) Backend() string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}

// fileConfig is the file as written. Scalars are kept as the YAML text so
// an amount like 0.10 is never read through a float.
type fileConfig struct {
	DatabaseURL string `yaml:"database_url"`
	Pricing     struct {
		Default     string `yaml:"default"`
		Currency    string `yaml:"currency"`
		Strict      string `yaml:"strict"`
		UnpricedLLM string `yaml:"unpriced_llm"`
	} `yaml:"pricing"`
	Enforcement struct {
		Unbudgeted string `yaml:"unbudgeted"`
		LeaseTTL   string `yaml:"lease_ttl"`
	} `yaml:"enforcement"`
	Delegation struct {
		MaxDepth string `yaml:"max_depth"`
	} `yaml:"delegation"`
	MCP     MCPConfig   `yaml:"mcp"`
	Proxy   ProxyConfig `yaml:"proxy"`
	Log     fileLog     `yaml:"log"`
	Metrics fileMetrics `yaml:"metrics"`
	TLS     TLSConfig   `yaml:"tls"`
	Merkle  struct {
		Sign string `yaml:"sign"`
	} `yaml:"merkle"`
	Alerts []fileAlert `yaml:"alerts"`
}

// LoadConfig resolves the configuration for home: flags > CARACAL_* >
// the file (flags.ConfigFile, $CARACAL_CONFIG, or home/config.yaml).
// Errors are UsageErrors naming the key and where it was set.
func LoadConfig(home string, flags GlobalFlags) (*Config, error) {
	path, explicit := flags.ConfigFile, flags.ConfigFile != ""
	if !explicit {
		if p := os.Getenv("CARACAL_CONFIG"); p != "" {
			path, explicit = p, true
		} else {
			path = filepath.Join(home, ConfigFile)
		}
	}
	var fc fileConfig
	cfg := &Config{Home: home}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		cfg.File = path
		if err := decodeConfigFile(data, &fc); err != nil {
			return nil, Usagef("config %s: %v", path, err)
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		// No file: defaults apply.
	default:
		return nil, Usagef("config: %v", err)
	}

	set, err := newSettings(&fc, map[string]flagSetting{"database_url": {"--database-url", flags.DatabaseURL}})
	if err != nil {
		return nil, err
	}
	cfg.DatabaseURL = setting(set, "database_url", "", checked(validateDatabaseURL))
	cfg.Pricing.Default = setting(set, "pricing.default", 0, nonNegativeAmount)
	cfg.Pricing.Currency = setting(set, "pricing.currency", money.DefaultCurrency, money.ParseCurrency)
	cfg.Pricing.Strict = setting(set, "pricing.strict", false, parseBool)
	cfg.Pricing.UnpricedLLM = setting(set, "pricing.unpriced_llm", UnpricedLLMRefuse, oneOf(UnpricedLLMRefuse, UnpricedLLMDefault))
	cfg.Enforcement.Unbudgeted = setting(set, "enforcement.unbudgeted", UnbudgetedRefuse, oneOf(UnbudgetedRefuse, UnbudgetedAllow))
	cfg.Enforcement.LeaseTTL = setting(set, "enforcement.lease_ttl", sqlstore.DefaultLeaseTTL, func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > time.Hour {
			return 0, fmt.Errorf("invalid lease TTL %q: want a duration from 1s to 1h, such as 10s", s)
		}
		return d, nil
	})
	cfg.Delegation.MaxDepth = setting(set, "delegation.max_depth", DefaultMaxDelegationDepth, func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return 0, fmt.Errorf("invalid depth %q: want a whole number from 1 to 100", s)
		}
		return n, nil
	})
	cfg.MCP = fc.MCP
	cfg.MCP.Listen = setting(set, "mcp.listen", "", checked(validateListen))
	cfg.Proxy = fc.Proxy
	cfg.Proxy.Listen = setting(set, "proxy.listen", "", checked(validateListen))
	cfg.Merkle.Sign = setting(set, "merkle.sign", SignAuto, lowered(oneOf(SignAuto, SignNever)))
	if set.err != nil {
		return nil, set.err
	}
	if err := cfg.expandAndValidateSections(); err != nil {
		return nil, err
	}
	if err := cfg.loadObservability(set); err != nil {
		return nil, err
	}
	// Whether the pair is whole is checked by the serving command, where
	// --tls-cert and --tls-key may complete or override it.
	cfg.TLS.CertFile = set.text("tls.cert_file")
	cfg.TLS.KeyFile = set.text("tls.key_file")
	if cfg.Alerts, err = loadAlerts(fc.Alerts); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeConfigFile parses the file strictly: an unknown key is an error,
// since it is almost always a misspelt one.
func decodeConfigFile(data []byte, fc *fileConfig) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil {
		return yamlError(err)
	}
	return nil
}

var yamlFieldNotFound = regexp.MustCompile(`^(line \d+): field (\S+) not found in type .*$`)

// yamlError turns yaml.v3's messages into one line that names the key.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := yamlFieldNotFound.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%s: unknown key %q", m[1], m[2])
		}
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	return fmt.Errorf("malformed YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces each ${VAR} with the variable's value (empty if unset).
// A bare $VAR is left alone so that passwords and shell snippets holding a
// dollar sign survive.
func expandEnv(s string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		return os.Getenv(m[2 : len(m)-1])
	})
}

func validateDatabaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("invalid database URL %q: want postgres://user:password@host:port/database", postgres.Redact(raw))
	}
	if _, err := pgxpool.ParseConfig(raw); err != nil {
		return fmt.Errorf("invalid database URL %q: %v", postgres.Redact(raw), unwrapAll(err))
	}
	return nil
}

// unwrapAll returns the innermost error's message: pgx's outer messages
// repeat the connection string.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func validateListen(addr string) error {
	if addr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("invalid address %q: want HOST:PORT such as 127.0.0.1:8080", addr)
	}
	return nil
}

func (c *Config) expandAndValidateSections() error {
	seen := map[string]bool{}
	for i := range c.MCP.Upstreams {
		u := &c.MCP.Upstreams[i]
		key := fmt.Sprintf("config: mcp.upstreams[%d]", i)
		u.Name = expandEnv(u.Name)
		for j := range u.Command {
			u.Command[j] = expandEnv(u.Command[j])
		}
		u.URL = expandEnv(u.URL)
		for k, val := range u.Headers {
			u.Headers[k] = expandEnv(val)
		}
		for k, val := range u.Env {
			u.Env[k] = expandEnv(val)
		}
		nameErr := policy.ValidateUpstreamName(u.Name)
		switch {
		case u.Name == "":
			return Usagef("%s.name: missing", key)
		case nameErr != nil:
			return Usagef("%s.name: %v", key, nameErr)
		case seen[u.Name]:
			return Usagef("%s.name: duplicate name %q", key, u.Name)
		case len(u.Command) == 0 && u.URL == "":
			return Usagef("%s: set command or url", key)
		case len(u.Command) > 0 && u.URL != "":
			return Usagef("%s: set command or url, not both", key)
		}
		seen[u.Name] = true
		if u.URL != "" {
			if err := validateHTTPURL(u.URL); err != nil {
				return Usagef("%s.url: %v", key, err)
			}
		}
	}
	seen = map[string]bool{}
	for i := range c.Proxy.Providers {
		p := &c.Proxy.Providers[i]
		key := fmt.Sprintf("config: proxy.providers[%d]", i)
		p.Name = expandEnv(p.Name)
		p.BaseURL = expandEnv(p.BaseURL)
		p.APIKeyEnv = expandEnv(p.APIKeyEnv)
		p.APIKeyFile = expandEnv(p.APIKeyFile)
		nameErr := policy.ValidateUpstreamName(p.Name)
		switch {
		case p.Name == "":
			return Usagef("%s.name: missing", key)
		case nameErr != nil:
			return Usagef("%s.name: %v", key, nameErr)
		case seen[p.Name]:
			return Usagef("%s.name: duplicate name %q", key, p.Name)
		case p.BaseURL == "":
			return Usagef("%s.base_url: missing", key)
		case p.APIKeyEnv != "" && p.APIKeyFile != "":
			return Usagef("%s: set api_key_env or api_key_file, not both", key)
		}
		seen[p.Name] = true
		if err := validateHTTPURL(p.BaseURL); err != nil {
			return Usagef("%s.base_url: %v", key, err)
		}
	}
	return nil
}

func validateHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want http:// or https://", raw)
	}
	return nil
}

// defaultConfigFile is what `caracal init` writes: every key, commented.
const defaultConfigFile = `# Caracal configuration. Precedence: command-line flags, then CARACAL_*
# environment variables (CARACAL_DATABASE_URL, CARACAL_PRICING_DEFAULT, …),
# then this file. ${VAR} in any string is replaced by the environment
# variable VAR.

# Empty: the embedded SQLite database in this folder (caracal.db).
# Set a PostgreSQL URL to share budgets between several Caracal processes:
#   database_url: postgres://caracal:${PGPASSWORD}@localhost:5432/caracal
database_url: ""

pricing:
  default: "0"        # charged for a resource the pricebook does not price
  currency: USD       # currency of the default price
  strict: false       # true: refuse unpriced resources instead
  unpriced_llm: refuse  # an LLM model no price rule matches: refuse (code
                        # unpriced), or default: charge pricing.default

enforcement:
  unbudgeted: refuse  # an agent with no active policy on its chain: refuse
                      # (code no_budget), or allow: unmetered but recorded

delegation:
  max_depth: 5        # most agents in a delegation chain, root included

mcp:
  listen: ""          # e.g. 127.0.0.1:8090 serves the Streamable HTTP front
  upstreams: []
  # read_header_timeout: 10s  # HTTP front: longest to send a request's headers
  # read_timeout: 30s         # … its body, once the headers are in
  # idle_timeout: 60s         # … idle keep-alive connection kept open
  # shutdown_timeout: 25s     # on SIGTERM, longest requests in flight may run
  # upstreams:
  #   - name: fs      # resources are mcp:fs/<tool>
  #     command: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "${HOME}/projects"]
  #     env: {}
  #     trusted: false  # true: prices declared in the tool's _meta are used
  #   - name: search
  #     url: https://mcp.example.com/mcp
  #     headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}

log:
  level: info         # debug, info, warn or error (stderr)
  format: text        # text or json

metrics:
  agent_label: true   # false drops the agent label from caracal_charged_total
  listen: ""          # e.g. 127.0.0.1:9464 serves /metrics, /healthz, /readyz
                      # for caracal mcp on stdio

# HTTPS for every listener of caracal proxy and caracal mcp (--tls-cert and
# --tls-key override); both or neither. The files are re-read when they
# change, so a renewed certificate needs no restart.
tls:
  cert_file: ""       # PEM certificate, chain included
  key_file: ""        # PEM private key

# Budget alerts, POSTed as signed JSON by caracal proxy and caracal mcp
# (see docs/operations.md, "Alerts by webhook").
alerts: []
  # - url: https://hooks.example.com/caracal
  #   secret_env: CARACAL_ALERT_SECRET  # or secret: "…"; signs every delivery
  #   thresholds: [50, 80, 100]         # percent of any policy's limit used
  #   denied: true                      # also every denied call
  #   agents: []                        # only these agents (names or IDs); empty: all

proxy:
  listen: 127.0.0.1:8080
  providers: []
  # read_header_timeout: 10s  # longest a client may take to send a request's headers
  # read_timeout: 30s         # … its body, once the headers are in
  # idle_timeout: 60s         # … idle keep-alive connection kept open
  # shutdown_timeout: 25s     # on SIGTERM, longest requests in flight may run
  # providers:        # agents call http://HOST/<name>/<provider path>
  #   - name: openai  # resources are llm:openai/<model>
  #     base_url: https://api.openai.com
  #     api_key_env: OPENAI_API_KEY
  #   - name: anthropic
  #     base_url: https://api.anthropic.com
  #     api_key_env: ANTHROPIC_API_KEY

merkle:
  # auto: integrate events into the Merkle log and sign checkpoints when
  # this home holds the active signing key (keys/NAME.key); a process
  # without it only queues events for a process that has it.
  # never: never integrate, even with a key (a pure replica).
  sign: auto
`
