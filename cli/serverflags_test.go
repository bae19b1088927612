package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/caracal-dev/caracal/internal/httpserver"
)

func TestServerTimeouts(t *testing.T) {
	def := httpserver.Timeouts{ReadHeader: httpserver.DefaultReadHeaderTimeout, Read: httpserver.DefaultReadTimeout, Idle: httpserver.DefaultIdleTimeout}
	tests := []struct {
		name    string
		args    []string
		cfg     ServerTimeouts
		want    httpserver.Timeouts
		wantErr string
	}{
		{"defaults", nil, ServerTimeouts{}, def, ""},
		{"config keys", nil, ServerTimeouts{ReadHeaderTimeout: "5s", ReadTimeout: "1m", IdleTimeout: "90s"}, httpserver.Timeouts{ReadHeader: 5 * time.Second, Read: time.Minute, Idle: 90 * time.Second}, ""},
		{"flag beats config", []string{"--read-timeout", "2s"}, ServerTimeouts{ReadTimeout: "1m"}, httpserver.Timeouts{ReadHeader: def.ReadHeader, Read: 2 * time.Second, Idle: def.Idle}, ""},
		{"config from the environment", nil, ServerTimeouts{IdleTimeout: "${E2E_IDLE}"}, httpserver.Timeouts{ReadHeader: def.ReadHeader, Read: def.Read, Idle: 7 * time.Second}, ""},
		{"bad config", nil, ServerTimeouts{ReadTimeout: "30"}, httpserver.Timeouts{}, `config: proxy.read_timeout: invalid duration "30"`},
		{"negative config", nil, ServerTimeouts{IdleTimeout: "-1s"}, httpserver.Timeouts{}, `config: proxy.idle_timeout: invalid duration "-1s"`},
		{"zero flag", []string{"--read-header-timeout", "0s"}, ServerTimeouts{}, httpserver.Timeouts{}, "--read-header-timeout: must be positive"},
	}
	t.Setenv("E2E_IDLE", "7s")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			var s serverFlags
			addServerFlags(fs, &s, "the proxy")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := s.timeouts("proxy", tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("timeouts = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestServerTimeoutKeysInConfigFile(t *testing.T) {
	home := t.TempDir()
	file := "mcp:\n  read_timeout: 5s\nproxy:\n  read_header_timeout: 3s\n  idle_timeout: 2m\n"
	if err := os.WriteFile(filepath.Join(home, ConfigFile), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MCP.ReadTimeout != "5s" || cfg.Proxy.ReadHeaderTimeout != "3s" || cfg.Proxy.IdleTimeout != "2m" {
		t.Errorf("mcp %+v, proxy %+v", cfg.MCP.ServerTimeouts, cfg.Proxy.ServerTimeouts)
	}
}
