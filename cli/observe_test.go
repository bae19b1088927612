package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestObservabilityConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want LogConfig
		lbl  bool
		mlis string
		err  string
	}{
		{name: "defaults", want: LogConfig{"info", "text"}, lbl: true},
		{name: "file", file: "log:\n  level: DEBUG\n  format: json\nmetrics:\n  agent_label: false\n  listen: 127.0.0.1:9464\n",
			want: LogConfig{"debug", "json"}, lbl: false, mlis: "127.0.0.1:9464"},
		{name: "env over file", file: "log:\n  level: debug\n", env: map[string]string{"CARACAL_LOG_LEVEL": "error", "CARACAL_LOG_FORMAT": "json", "CARACAL_METRICS_AGENT_LABEL": "false"},
			want: LogConfig{"error", "json"}, lbl: false},
		{name: "bad level", file: "log:\n  level: loud\n", err: `config: log.level: invalid log level "loud": want debug, info, warn or error`},
		{name: "bad format", env: map[string]string{"CARACAL_LOG_FORMAT": "xml"}, err: `CARACAL_LOG_FORMAT: invalid log format "xml": want text or json`},
		{name: "bad label", file: "metrics:\n  agent_label: perhaps\n", err: `config: metrics.agent_label: invalid boolean "perhaps": want true or false`},
		{name: "bad listen", file: "metrics:\n  listen: 9464\n", err: `config: metrics.listen: invalid address "9464": want HOST:PORT such as 127.0.0.1:8080`},
		{name: "unknown key", file: "log:\n  colour: true\n", err: `unknown key "colour"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearConfigEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			home := t.TempDir()
			writeConfig(t, home, tc.file)
			cfg, err := LoadConfig(home, GlobalFlags{})
			if tc.err != "" {
				var ue *UsageError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ue) {
					t.Fatalf("got %v, want usage error %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log != tc.want || cfg.Metrics.AgentLabel != tc.lbl || cfg.Metrics.Listen != tc.mlis {
				t.Errorf("got %+v %+v", cfg.Log, cfg.Metrics)
			}
		})
	}
}

// TestObservabilityFlags: the flags win over the configuration, and a bad
// flag is a usage error naming it.
func TestObservabilityFlags(t *testing.T) {
	var buf bytes.Buffer
	f := NewFactory(&IOStreams{ErrOut: &buf})
	cfg := &Config{Log: LogConfig{Level: "error", Format: "text"}, Metrics: MetricsConfig{Listen: "127.0.0.1:1"}}
	o, err := f.newObservability(cfg, obsFlags{logLevel: "info", logFormat: "json", metricsListen: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	o.log.Info("hello", "k", 1)
	if got := buf.String(); !strings.HasPrefix(got, `{"time":`) || !strings.Contains(got, `"msg":"hello"`) {
		t.Errorf("flags did not win: %q", got)
	}
	if o.listen != "127.0.0.1:2" {
		t.Errorf("listen %q", o.listen)
	}
	buf.Reset()
	o, err = f.newObservability(cfg, obsFlags{})
	if err != nil {
		t.Fatal(err)
	}
	o.log.Info("quiet")
	if buf.Len() != 0 || o.listen != "127.0.0.1:1" {
		t.Errorf("config not applied: %q %q", buf.String(), o.listen)
	}
	for fl, want := range map[obsFlags]string{
		{logLevel: "chatty"}:    "--log-level: invalid log level",
		{logFormat: "yaml"}:     "--log-format: invalid log format",
		{metricsListen: "9464"}: "--metrics-listen: invalid address",
	} {
		_, err := f.newObservability(cfg, fl)
		var ue *UsageError
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want %q", fl, err, want)
		}
	}
}
