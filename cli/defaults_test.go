package cli

import (
	"strings"
	"testing"
)

func TestSafeDefaultsConfig(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		unpriced   string
		unbudgeted string
		err        string
	}{
		{"defaults refuse", "", nil, UnpricedLLMRefuse, UnbudgetedRefuse, ""},
		{"file opts out", "pricing:\n  unpriced_llm: default\nenforcement:\n  unbudgeted: allow\n", nil, UnpricedLLMDefault, UnbudgetedAllow, ""},
		{"environment opts out", "", map[string]string{"CARACAL_PRICING_UNPRICED_LLM": "default", "CARACAL_ENFORCEMENT_UNBUDGETED": "allow"}, UnpricedLLMDefault, UnbudgetedAllow, ""},
		{"bad unbudgeted", "enforcement:\n  unbudgeted: yes\n", nil, "", "", `config: enforcement.unbudgeted: invalid value "yes": want refuse or allow`},
		{"bad unpriced_llm", "", map[string]string{"CARACAL_PRICING_UNPRICED_LLM": "free"}, "", "", `CARACAL_PRICING_UNPRICED_LLM: invalid value "free": want refuse or default`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearConfigEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			home := t.TempDir()
			if tt.file != "" {
				writeConfig(t, home, tt.file)
			}
			cfg, err := LoadConfig(home, GlobalFlags{})
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("LoadConfig error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Pricing.UnpricedLLM != tt.unpriced || cfg.Enforcement.Unbudgeted != tt.unbudgeted {
				t.Fatalf("unpriced_llm %q unbudgeted %q, want %q %q", cfg.Pricing.UnpricedLLM, cfg.Enforcement.Unbudgeted, tt.unpriced, tt.unbudgeted)
			}
		})
	}
}

func TestDeactivatingTheLastPolicyWarns(t *testing.T) {
	for _, mode := range []string{"", UnbudgetedAllow} {
		t.Run("unbudgeted="+mode, func(t *testing.T) {
			e := newCLIEnv(t, "sqlite")
			t.Setenv("CARACAL_ENFORCEMENT_UNBUDGETED", mode)
			e.ok("init")
			e.ok("agent", "register", "--name", "parent", "--owner", "o")
			e.ok("agent", "register", "--name", "bot", "--owner", "o", "--parent", "parent")
			var p1, p2, pp struct{ ID string }
			e.json(&p1, "policy", "create", "--agent", "bot", "--limit", "10")
			e.json(&p2, "policy", "create", "--agent", "bot", "--limit", "20")
			e.json(&pp, "policy", "create", "--agent", "parent", "--limit", "20")
			if _, errOut, code := e.run("policy", "deactivate", p1.ID); code != 0 || strings.Contains(errOut, "warning") {
				t.Fatalf("first deactivate: exit %d, stderr %q; want no warning", code, errOut)
			}
			if _, errOut, code := e.run("policy", "deactivate", p2.ID); code != 0 || strings.Contains(errOut, "warning") {
				t.Fatalf("deactivating bot's last own policy while its parent has one: exit %d, stderr %q; want no warning", code, errOut)
			}
			_, errOut, code := e.run("policy", "deactivate", pp.ID)
			want := "its calls will now be refused (no_budget)"
			if mode == UnbudgetedAllow {
				want = "its calls are now unlimited"
			}
			if code != 0 || !strings.Contains(errOut, `warning: agent "parent" has no active policy left`) || !strings.Contains(errOut, want) {
				t.Fatalf("last deactivate: exit %d, stderr %q; want a warning containing %q", code, errOut, want)
			}
		})
	}
}

func TestMCPSessionFlagsValidated(t *testing.T) {
	e := newCLIEnv(t, "sqlite")
	e.fails(2, "--session-idle-timeout: must be positive", "mcp", "--listen", "127.0.0.1:0", "--session-idle-timeout", "0", "--", "true")
	e.fails(2, "--max-sessions: must not be negative (0: no limit)", "mcp", "--listen", "127.0.0.1:0", "--max-sessions", "-1", "--", "true")
}
