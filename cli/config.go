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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/caracal-dev/caracal/internal/alerts"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger/postgres"
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

// scalarKeys are the keys that flags and CARACAL_* variables can set.
var scalarKeys = []string{
	"database_url",
	"pricing.default", "pricing.currency", "pricing.strict", "pricing.unpriced_llm",
	"enforcement.unbudgeted",
	"delegation.max_depth",
	"mcp.listen", "proxy.listen",
	"log.level", "log.format", "metrics.agent_label", "metrics.listen",
	"tls.cert_file", "tls.key_file",
	"merkle.sign",
}

// envName is the environment variable for a key: database_url →
// CARACAL_DATABASE_URL, pricing.default → CARACAL_PRICING_DEFAULT.
func envName(key string) string {
	return "CARACAL_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
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

	// viper resolves precedence for the scalar keys; the file's values are
	// its defaults, so environment variables and flags override them.
	v := viper.New()
	v.SetDefault("database_url", fc.DatabaseURL)
	v.SetDefault("pricing.default", fc.Pricing.Default)
	v.SetDefault("pricing.currency", fc.Pricing.Currency)
	v.SetDefault("pricing.strict", fc.Pricing.Strict)
	v.SetDefault("pricing.unpriced_llm", fc.Pricing.UnpricedLLM)
	v.SetDefault("enforcement.unbudgeted", fc.Enforcement.Unbudgeted)
	v.SetDefault("delegation.max_depth", fc.Delegation.MaxDepth)
	v.SetDefault("mcp.listen", fc.MCP.Listen)
	v.SetDefault("proxy.listen", fc.Proxy.Listen)
	setObservabilityDefaults(v, fc)
	v.SetDefault("tls.cert_file", fc.TLS.CertFile)
	v.SetDefault("tls.key_file", fc.TLS.KeyFile)
	v.SetDefault("merkle.sign", fc.Merkle.Sign)
	v.SetEnvPrefix("CARACAL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range scalarKeys {
		if err := v.BindEnv(k); err != nil {
			return nil, fmt.Errorf("config: bind %s: %w", k, err)
		}
	}
	if flags.DatabaseURL != "" {
		v.Set("database_url", flags.DatabaseURL)
	}
	src := func(key string) string {
		if key == "database_url" && flags.DatabaseURL != "" {
			return "--database-url"
		}
		// viper ignores empty variables, so an empty one did not set the key.
		if os.Getenv(envName(key)) != "" {
			return envName(key)
		}
		return "config: " + key
	}
	get := func(key string) string { return expandEnv(v.GetString(key)) }

	cfg.DatabaseURL = strings.TrimSpace(get("database_url"))
	if cfg.DatabaseURL != "" {
		if err := validateDatabaseURL(cfg.DatabaseURL); err != nil {
			return nil, Usagef("%s: %v", src("database_url"), err)
		}
	}
	if s := strings.TrimSpace(get("pricing.default")); s != "" {
		a, err := money.Parse(s)
		if err != nil {
			return nil, Usagef("%s: %v", src("pricing.default"), err)
		}
		if a.IsNegative() {
			return nil, Usagef("%s: invalid amount %q: must not be negative", src("pricing.default"), s)
		}
		cfg.Pricing.Default = a
	}
	cfg.Pricing.Currency = money.DefaultCurrency
	if s := strings.TrimSpace(get("pricing.currency")); s != "" {
		c, err := money.ParseCurrency(s)
		if err != nil {
			return nil, Usagef("%s: %v", src("pricing.currency"), err)
		}
		cfg.Pricing.Currency = c
	}
	if s := strings.TrimSpace(get("pricing.strict")); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, Usagef("%s: invalid boolean %q: want true or false", src("pricing.strict"), s)
		}
		cfg.Pricing.Strict = b
	}
	cfg.Pricing.UnpricedLLM = UnpricedLLMRefuse
	if s := strings.TrimSpace(get("pricing.unpriced_llm")); s != "" {
		if s != UnpricedLLMRefuse && s != UnpricedLLMDefault {
			return nil, Usagef("%s: invalid value %q: want refuse or default", src("pricing.unpriced_llm"), s)
		}
		cfg.Pricing.UnpricedLLM = s
	}
	cfg.Enforcement.Unbudgeted = UnbudgetedRefuse
	if s := strings.TrimSpace(get("enforcement.unbudgeted")); s != "" {
		if s != UnbudgetedRefuse && s != UnbudgetedAllow {
			return nil, Usagef("%s: invalid value %q: want refuse or allow", src("enforcement.unbudgeted"), s)
		}
		cfg.Enforcement.Unbudgeted = s
	}
	cfg.Delegation.MaxDepth = DefaultMaxDelegationDepth
	if s := strings.TrimSpace(get("delegation.max_depth")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return nil, Usagef("%s: invalid depth %q: want a whole number from 1 to 100", src("delegation.max_depth"), s)
		}
		cfg.Delegation.MaxDepth = n
	}
	cfg.MCP = fc.MCP
	cfg.MCP.Listen = strings.TrimSpace(get("mcp.listen"))
	if err := validateListen(cfg.MCP.Listen); err != nil {
		return nil, Usagef("%s: %v", src("mcp.listen"), err)
	}
	cfg.Proxy = fc.Proxy
	cfg.Proxy.Listen = strings.TrimSpace(get("proxy.listen"))
	if err := validateListen(cfg.Proxy.Listen); err != nil {
		return nil, Usagef("%s: %v", src("proxy.listen"), err)
	}
	cfg.Merkle.Sign = SignAuto
	if s := strings.ToLower(strings.TrimSpace(get("merkle.sign"))); s != "" {
		if s != SignAuto && s != SignNever {
			return nil, Usagef("%s: invalid value %q: want auto or never", src("merkle.sign"), s)
		}
		cfg.Merkle.Sign = s
	}
	if err := cfg.expandAndValidateSections(); err != nil {
		return nil, err
	}
	if err := cfg.loadObservability(get, src); err != nil {
		return nil, err
	}
	// Whether the pair is whole is checked by the serving command, where
	// --tls-cert and --tls-key may complete or override it.
	cfg.TLS.CertFile = strings.TrimSpace(get("tls.cert_file"))
	cfg.TLS.KeyFile = strings.TrimSpace(get("tls.key_file"))
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

var upstreamName = regexp.MustCompile(`^[a-z0-9_-]+$`)

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
		switch {
		case u.Name == "":
			return Usagef("%s.name: missing", key)
		case !upstreamName.MatchString(u.Name):
			return Usagef("%s.name: invalid name %q: use lower-case letters, digits, _ and -", key, u.Name)
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
		switch {
		case p.Name == "":
			return Usagef("%s.name: missing", key)
		case !upstreamName.MatchString(p.Name):
			return Usagef("%s.name: invalid name %q: use lower-case letters, digits, _ and -", key, p.Name)
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
