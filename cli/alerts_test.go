package cli

import (
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/alerts"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func TestLoadConfigAlerts(t *testing.T) {
	clearConfigEnv(t)
	t.Setenv("HOOK_HOST", "hooks.example")
	home := t.TempDir()
	writeConfig(t, home, `
alerts:
  - url: https://${HOOK_HOST}/a
    secret: s3cret
    thresholds: [100, 50, 80]
    agents: [research, "${HOOK_HOST}"]
  - url: http://127.0.0.1:9/b
    secret_env: B_SECRET
    denied: true
`)
	cfg, err := LoadConfig(home, GlobalFlags{})
	if err != nil {
		t.Fatal(err)
	}
	want := []alerts.Webhook{
		{URL: "https://hooks.example/a", Secret: "s3cret", Thresholds: []int{50, 80, 100}, Agents: []string{"research", "hooks.example"}},
		{URL: "http://127.0.0.1:9/b", SecretEnv: "B_SECRET", Denied: true},
	}
	if !reflect.DeepEqual(cfg.Alerts, want) {
		t.Errorf("alerts:\n got %+v\nwant %+v", cfg.Alerts, want)
	}
	// The configuration's JSON form never carries a secret.
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("config JSON shows the secret: %s", b)
	}
}

func TestLoadConfigAlertsErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"no url", "alerts:\n  - secret: s\n    denied: true\n", "config: alerts[0].url: missing"},
		{"bad url", "alerts:\n  - url: ftp://x\n    secret: s\n    denied: true\n", "config: alerts[0].url: invalid URL"},
		{"duplicate url", "alerts:\n  - {url: 'http://h/a', secret: s, denied: true}\n  - {url: 'http://h/a', secret: s, denied: true}\n", "config: alerts[1].url: duplicate url"},
		{"no secret", "alerts:\n  - url: http://h/a\n    denied: true\n", "config: alerts[0]: set secret or secret_env"},
		{"both secrets", "alerts:\n  - {url: 'http://h/a', secret: s, secret_env: S, denied: true}\n", "config: alerts[0]: set secret or secret_env, not both"},
		{"bad env name", "alerts:\n  - {url: 'http://h/a', secret_env: 'A-B', denied: true}\n", "config: alerts[0].secret_env: invalid variable name"},
		{"fractional threshold", "alerts:\n  - {url: 'http://h/a', secret: s, thresholds: [50.5]}\n", `config: alerts[0].thresholds[0]: invalid threshold "50.5"`},
		{"zero threshold", "alerts:\n  - {url: 'http://h/a', secret: s, thresholds: [0]}\n", "config: alerts[0].thresholds[0]: invalid threshold"},
		{"huge threshold", "alerts:\n  - {url: 'http://h/a', secret: s, thresholds: [1001]}\n", "config: alerts[0].thresholds[0]: invalid threshold"},
		{"duplicate threshold", "alerts:\n  - {url: 'http://h/a', secret: s, thresholds: [80, 80]}\n", "config: alerts[0].thresholds[1]: duplicate threshold 80"},
		{"bad denied", "alerts:\n  - {url: 'http://h/a', secret: s, denied: sometimes}\n", `config: alerts[0].denied: invalid boolean "sometimes"`},
		{"nothing to send", "alerts:\n  - {url: 'http://h/a', secret: s, denied: false}\n", "config: alerts[0]: set thresholds or denied: true"},
		{"empty agent", "alerts:\n  - {url: 'http://h/a', secret: s, denied: true, agents: ['']}\n", "config: alerts[0].agents[0]: empty agent name"},
		{"unknown key", "alerts:\n  - {url: 'http://h/a', secret: s, denied: true, treshold: [5]}\n", `unknown key "treshold"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearConfigEnv(t)
			home := t.TempDir()
			writeConfig(t, home, tc.body)
			_, err := LoadConfig(home, GlobalFlags{})
			var ue *UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

func TestAlertsForSecretEnv(t *testing.T) {
	store := storetest.OpenSQLite(t)
	log := slog.New(slog.DiscardHandler)
	cfg := &Config{Alerts: []alerts.Webhook{{URL: "http://127.0.0.1:9/a", SecretEnv: "CARACAL_TEST_ALERT_SECRET", Denied: true}}}
	t.Setenv("CARACAL_TEST_ALERT_SECRET", "")
	if _, _, err := AlertsFor(cfg, store, log); err == nil || !strings.Contains(err.Error(), "config: alerts[0].secret_env: environment variable CARACAL_TEST_ALERT_SECRET is not set") {
		t.Fatalf("unset secret_env: err = %v", err)
	}
	t.Setenv("CARACAL_TEST_ALERT_SECRET", "x")
	obs, run, err := AlertsFor(cfg, store, log)
	if err != nil || obs == nil || run == nil {
		t.Fatalf("AlertsFor = %v, %v", obs, err)
	}
	if cfg.Alerts[0].Secret != "" {
		t.Error("AlertsFor wrote the secret into the configuration")
	}
	if obs, run, err := AlertsFor(&Config{}, store, log); obs != nil || run == nil || err != nil {
		t.Errorf("no webhooks: AlertsFor = %v, %v; want no observer", obs, err)
	}
}

// TestServeCommandsStartAlerts: both serving commands build the alerts at
// start, so a webhook whose secret variable is unset stops them with the
// key named, before they serve anything.
func TestServeCommandsStartAlerts(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.ok("init")
	t.Setenv("CARACAL_TEST_PROVIDER_KEY", "sk-test")
	t.Setenv("CARACAL_TEST_UNSET_SECRET", "")
	cfg := `proxy:
  providers:
    - {name: openai, base_url: "http://127.0.0.1:9", api_key_env: CARACAL_TEST_PROVIDER_KEY}
mcp:
  upstreams:
    - {name: fs, command: ["true"]}
alerts:
  - {url: "http://127.0.0.1:9/hook", secret_env: CARACAL_TEST_UNSET_SECRET, denied: true}
`
	writeConfig(t, e.home, cfg)
	want := "config: alerts[0].secret_env: environment variable CARACAL_TEST_UNSET_SECRET is not set"
	e.fails(2, want, "proxy", "--listen", "127.0.0.1:0")
	e.fails(2, want, "mcp", "--agent", "bot")
}
