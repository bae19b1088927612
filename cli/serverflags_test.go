package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/internal/testcert"
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

func TestShutdownTimeout(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		key     string
		want    time.Duration
		wantErr string
	}{
		{"default", nil, "", httpserver.DefaultShutdownTimeout, ""},
		{"config key", nil, "10s", 10 * time.Second, ""},
		{"flag beats config", []string{"--shutdown-timeout", "3s"}, "10s", 3 * time.Second, ""},
		{"bad key", nil, "soon", 0, `config: mcp.shutdown_timeout: invalid duration "soon"`},
		{"zero flag", []string{"--shutdown-timeout", "0s"}, "", 0, "--shutdown-timeout: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			var s serverFlags
			addServerFlags(fs, &s, "the front")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := s.shutdownTimeout("mcp", ServerTimeouts{ShutdownTimeout: tt.key})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("shutdown timeout = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestTLSCertificateResolution(t *testing.T) {
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := ca.WritePair(cert, key, 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		cfg      TLSConfig
		wantCert bool
		wantErr  string
	}{
		{"neither: plain HTTP", nil, TLSConfig{}, false, ""},
		{"flags", []string{"--tls-cert", cert, "--tls-key", key}, TLSConfig{}, true, ""},
		{"config keys", nil, TLSConfig{CertFile: cert, KeyFile: key}, true, ""},
		{"flag completes a key", []string{"--tls-key", key}, TLSConfig{CertFile: cert}, true, ""},
		{"cert without key", []string{"--tls-cert", cert}, TLSConfig{}, false, "--tls-key: missing: --tls-cert is set"},
		{"key without cert", nil, TLSConfig{KeyFile: key}, false, "--tls-cert: missing: tls.key_file is set"},
		{"flag overrides a bad key", []string{"--tls-cert", cert}, TLSConfig{CertFile: "/nonexistent", KeyFile: key}, true, ""},
		{"unreadable", []string{"--tls-cert", filepath.Join(dir, "none.crt"), "--tls-key", key}, TLSConfig{}, false, "none.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			var s serverFlags
			addServerFlags(fs, &s, "the proxy")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := s.certificate(tt.cfg, nil)
			if tt.wantErr != "" {
				var ue *UsageError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("err = %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || (got != nil) != tt.wantCert {
				t.Errorf("certificate = %v, %v; want one: %v", got, err, tt.wantCert)
			}
		})
	}
}

func TestTLSKeysFromEnvironment(t *testing.T) {
	t.Setenv("CARACAL_TLS_CERT_FILE", "/etc/caracal/tls.crt")
	t.Setenv("CARACAL_TLS_KEY_FILE", "/etc/caracal/tls.key")
	cfg, err := LoadConfig(t.TempDir(), GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS != (TLSConfig{CertFile: "/etc/caracal/tls.crt", KeyFile: "/etc/caracal/tls.key"}) {
		t.Errorf("tls = %+v", cfg.TLS)
	}
}
