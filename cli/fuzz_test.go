package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/policy"
)

// FuzzLoadConfig loads arbitrary configuration files: no panic, every
// error a usage error naming the file or the key, and what is accepted
// holds to the documented bounds.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		defaultConfigFile, "", "pricing:\n  default: \"0.5\"\n  currency: EUR\n  strict: true\n",
		"delegation:\n  max_depth: 0\n", "mcp:\n  upstreams:\n    - name: fs\n      command: [\"x\"]\n    - name: fs\n      url: http://h\n",
		"proxy:\n  providers:\n    - name: openai\n      base_url: https://api.openai.com/v1\n      api_key_env: OPENAI_API_KEY\n",
		"database_url: mysql://x\n", "mcp:\n  listen: \"nope\"\n", "pricng: {}\n", "pricing: [1]\n", "\t- bad yaml",
		"mcp:\n  upstreams:\n    - name: \"${HOME}\"\n      url: ftp://h\n",
	} {
		f.Add([]byte(s))
	}
	// Only the file is under test: an inherited CARACAL_* variable would
	// override it (viper treats an empty variable as unset).
	for _, k := range scalarKeys {
		f.Setenv(envName(k), "")
	}
	f.Setenv("CARACAL_CONFIG", "")
	dir := f.TempDir()
	path := filepath.Join(dir, "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(dir, GlobalFlags{ConfigFile: path})
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "config") {
				t.Fatalf("LoadConfig error %T %q: want a usage error naming the file or key", err, err)
			}
			return
		}
		if d := cfg.Delegation.MaxDepth; d < 1 || d > 100 {
			t.Fatalf("accepted delegation.max_depth %d", d)
		}
		if cfg.Pricing.Default.IsNegative() || cfg.Pricing.Currency == "" {
			t.Fatalf("accepted pricing %+v", cfg.Pricing)
		}
		names := map[string]bool{}
		for _, u := range cfg.MCP.Upstreams {
			if names[u.Name] || policy.ValidateUpstreamName(u.Name) != nil || (len(u.Command) > 0) == (u.URL != "") {
				t.Fatalf("accepted upstream %+v", u)
			}
			names[u.Name] = true
		}
		names = map[string]bool{}
		for _, p := range cfg.Proxy.Providers {
			if names[p.Name] || policy.ValidateUpstreamName(p.Name) != nil || p.BaseURL == "" {
				t.Fatalf("accepted provider %+v", p)
			}
			names[p.Name] = true
		}
	})
}

// FuzzParseTimeFlag reads --since/--until values: an error names the flag
// and the value; a duration means that long before now, never after it;
// "Nd" is N days.
func FuzzParseTimeFlag(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2026-01-02", "2026-01-02T15:04:05Z", "2026-01-02T15:04:05.123+02:00", "-1h", "1.5h", "36500d", "36501d", "d", "0d", "+3d", "1e3h", ""} {
		f.Add(s, uint16(0))
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string, days uint16) {
		got, err := parseTimeFlag("--since", s, now)
		if err != nil {
			if !strings.Contains(err.Error(), "--since") || !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("parseTimeFlag(%q) error %q does not name the flag and value", s, err)
			}
		} else if _, derr := policy.ParseDuration(s); derr == nil {
			if got.After(now) {
				t.Fatalf("duration %q ago is %v, after now %v", s, got, now)
			}
		}
		if days <= 100*365 {
			got, err := parseTimeFlag("--since", fmt.Sprintf("%dd", days), now)
			if want := now.Add(-time.Duration(days) * 24 * time.Hour); err != nil || !got.Equal(want) {
				t.Fatalf("parseTimeFlag(%dd) = %v, %v; want %v", days, got, err, want)
			}
		} else if _, err := parseTimeFlag("--since", fmt.Sprintf("%dd", days), now); err == nil {
			t.Fatalf("parseTimeFlag(%dd) accepted more than 100 years", days)
		}
	})
}
