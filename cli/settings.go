package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/viper"
)

// scalars are the keys that flags and CARACAL_* variables can set, each
// with its value in the file.
var scalars = []struct {
	key  string
	file func(*fileConfig) string
}{
	{"database_url", func(f *fileConfig) string { return f.DatabaseURL }},
	{"pricing.default", func(f *fileConfig) string { return f.Pricing.Default }},
	{"pricing.currency", func(f *fileConfig) string { return f.Pricing.Currency }},
	{"pricing.strict", func(f *fileConfig) string { return f.Pricing.Strict }},
	{"pricing.unpriced_llm", func(f *fileConfig) string { return f.Pricing.UnpricedLLM }},
	{"enforcement.unbudgeted", func(f *fileConfig) string { return f.Enforcement.Unbudgeted }},
	{"enforcement.lease_ttl", func(f *fileConfig) string { return f.Enforcement.LeaseTTL }},
	{"delegation.max_depth", func(f *fileConfig) string { return f.Delegation.MaxDepth }},
	{"mcp.listen", func(f *fileConfig) string { return f.MCP.Listen }},
	{"proxy.listen", func(f *fileConfig) string { return f.Proxy.Listen }},
	{"log.level", func(f *fileConfig) string { return f.Log.Level }},
	{"log.format", func(f *fileConfig) string { return f.Log.Format }},
	{"metrics.agent_label", func(f *fileConfig) string { return f.Metrics.AgentLabel }},
	{"metrics.listen", func(f *fileConfig) string { return f.Metrics.Listen }},
	{"merkle.sign", func(f *fileConfig) string { return f.Merkle.Sign }},
	{"tls.cert_file", func(f *fileConfig) string { return f.TLS.CertFile }},
	{"tls.key_file", func(f *fileConfig) string { return f.TLS.KeyFile }},
}

// scalarKeys are the keys of scalars.
var scalarKeys = func() []string {
	keys := make([]string, len(scalars))
	for i, s := range scalars {
		keys[i] = s.key
	}
	return keys
}()

// envName is the environment variable for a key: database_url →
// CARACAL_DATABASE_URL, pricing.default → CARACAL_PRICING_DEFAULT.
func envName(key string) string {
	return "CARACAL_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// flagSetting is a key a command-line flag set.
type flagSetting struct{ name, value string }

// settings resolves the scalar keys with one precedence: a flag, else
// CARACAL_<KEY>, else the file, else the key's default. viper holds the
// first three (the file's values are its defaults); the default and the
// parser of each key are given where it is read, by setting.
type settings struct {
	v     *viper.Viper
	flags map[string]flagSetting
	err   error // the first bad value, named by where it was set
}

func newSettings(fc *fileConfig, flags map[string]flagSetting) (*settings, error) {
	v := viper.New()
	for _, s := range scalars {
		v.SetDefault(s.key, s.file(fc))
	}
	v.SetEnvPrefix("CARACAL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range scalarKeys {
		if err := v.BindEnv(k); err != nil {
			return nil, fmt.Errorf("config: bind %s: %w", k, err)
		}
	}
	for k, f := range flags {
		if f.value != "" {
			v.Set(k, f.value)
		}
	}
	return &settings{v: v, flags: flags}, nil
}

// src names where key's value was set, for errors.
func (s *settings) src(key string) string {
	if f, ok := s.flags[key]; ok && f.value != "" {
		return f.name
	}
	// viper ignores empty variables, so an empty one did not set the key.
	if os.Getenv(envName(key)) != "" {
		return envName(key)
	}
	return "config: " + key
}

// text is key's value with ${VAR} references expanded and surrounding
// space trimmed; "" when nothing set it.
func (s *settings) text(key string) string {
	return strings.TrimSpace(expandEnv(s.v.GetString(key)))
}

// setting reads key with parse, or returns def when nothing set it. A value
// parse refuses leaves def and is kept in s.err (the first one only), as a
// usage error naming where it was set.
func setting[T any](s *settings, key string, def T, parse func(string) (T, error)) T {
	text := s.text(key)
	if text == "" {
		return def
	}
	v, err := parse(text)
	if err != nil {
		if s.err == nil {
			s.err = Usagef("%s: %v", s.src(key), err)
		}
		return def
	}
	return v
}

// checked is a parser that keeps the text once check accepts it.
func checked(check func(string) error) func(string) (string, error) {
	return func(s string) (string, error) { return s, check(s) }
}

// oneOf is a parser that accepts only the given words.
func oneOf(words ...string) func(string) (string, error) {
	return func(s string) (string, error) {
		for _, w := range words {
			if s == w {
				return s, nil
			}
		}
		return "", fmt.Errorf("invalid value %q: want %s", s, strings.Join(words, " or "))
	}
}

// lowered applies parse to the text in lower case.
func lowered[T any](parse func(string) (T, error)) func(string) (T, error) {
	return func(s string) (T, error) { return parse(strings.ToLower(s)) }
}

// parseBool reads true or false (and the other spellings strconv knows).
func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("invalid boolean %q: want true or false", s)
	}
	return b, nil
}
