package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitFor polls fn until it returns true or 30 seconds pass.
func waitFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMCPHTTPFrontHealthAndMetricsNeedNoKey: on `caracal mcp --listen`,
// /healthz, /readyz and /metrics answer without an agent key while /mcp
// still demands one.
func TestMCPHTTPFrontHealthAndMetricsNeedNoKey(t *testing.T) {
	h := newHome(t, "5", everythingPrices)
	addr := freePort(t)
	startProcess(t, h.env(), addr, binary, "mcp", "--listen", addr, "--name", "everything", "--", "node", everythingJS(), "stdio")
	base := "http://" + addr
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := get(t, base+p); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	_, text := get(t, base+"/metrics")
	if v, ok := metricValue(text, "caracal_mcp_sessions_active"); !ok || v != 0 {
		t.Errorf("caracal_mcp_sessions_active = %v (%v), want 0", v, ok)
	}
	if code, _ := get(t, base+"/mcp"); code != http.StatusUnauthorized {
		t.Errorf("/mcp without a key: %d, want 401", code)
	}
}

// TestMCPStdioMetricsListen: on stdio, --metrics-listen serves the metrics
// and readiness; a tools/call is counted and charged, the session and its
// upstream are reported.
func TestMCPStdioMetricsListen(t *testing.T) {
	h := newHome(t, "5", map[string]string{"mcp:everything/echo": "0.01"})
	addr := freePort(t)
	s := startStdio(t, h, "--name", "everything", "--metrics-listen", addr, "--log-format", "json", "--", "node", everythingJS(), "stdio")
	base := "http://" + addr
	s.send(e2eInit)
	s.response("0")
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	waitFor(t, "/readyz to pass", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`)
	if r := s.response("1"); r["error"] != nil {
		t.Fatalf("tools/call: %v", r)
	}
	var text string
	waitFor(t, "the settlement to be counted", func() bool {
		_, text = get(t, base+"/metrics")
		v, _ := metricValue(text, `caracal_decisions_total{code="charged",kind="mcp",outcome="settled"}`)
		return v == 1
	})
	for series, want := range map[string]float64{
		`caracal_decisions_total{code="allowed",kind="mcp",outcome="allowed"}`: 1,
		`caracal_charged_total{agent="claude",currency="USD"}`:                 0.01,
		`caracal_charged_nanos_total{agent="claude",currency="USD"}`:           1e7,
		`caracal_mcp_sessions_active`:                                          1,
		`caracal_upstream_up{upstream="everything"}`:                           1,
	} {
		if got, ok := metricValue(text, series); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", series, got, ok, want)
		}
	}
	if strings.Contains(text, "caracal_upstream_restarts_total{") {
		t.Error("a restart was counted without one")
	}
}
