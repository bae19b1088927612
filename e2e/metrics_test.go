package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/policy"
)

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds the sample line that starts with series (name and
// labels exactly as exposed) and returns its value; ok is false if absent.
func metricValue(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// chat sends one non-streaming OpenAI chat completion through the proxy.
func chat(t *testing.T, baseURL, key, model string, maxTokens int) int {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"hello"}]}`, model, maxTokens)
	req, err := http.NewRequest(http.MethodPost, baseURL+"/openai/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestProxyMetricsAfterTraffic sends known traffic through `caracal
// proxy` and scrapes its /metrics: the decision counts and the amounts
// charged are exactly what the ledger recorded.
func TestProxyMetricsAfterTraffic(t *testing.T) {
	e := newProxyEnv(t, "1")
	const ok = 3
	for range ok {
		if code := chat(t, e.url, e.key, "gpt-4o-mini", 50); code != http.StatusOK {
			t.Fatalf("chat: %d\n%s", code, e.stderr.String())
		}
	}
	// gpt-4o at $10 per million output tokens: 200,000 of them reserve $2,
	// over the $1 budget.
	if code := chat(t, e.url, e.key, "gpt-4o", 200000); code == http.StatusOK {
		t.Fatalf("over-budget request relayed")
	}
	e.waitClosed()

	var charged money.Amount
	denied := 0
	for _, ev := range e.ledger() {
		switch ev.Outcome {
		case string(policy.OutcomeCharged):
			a, err := money.Parse(ev.Amount)
			if err != nil {
				t.Fatal(err)
			}
			charged += a
		case string(policy.OutcomeDenied):
			denied++
		}
	}
	if charged <= 0 || denied != 1 {
		t.Fatalf("ledger: charged %s, %d denied", charged, denied)
	}

	code, text := get(t, e.url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for series, want := range map[string]float64{
		`caracal_decisions_total{code="allowed",kind="llm",outcome="allowed"}`:        ok,
		`caracal_decisions_total{code="charged",kind="llm",outcome="settled"}`:        ok,
		`caracal_decisions_total{code="budget_exceeded",kind="llm",outcome="denied"}`: 1,
		`caracal_charged_nanos_total{agent="bot",currency="USD"}`:                     float64(charged.Nanos()),
		`caracal_decision_duration_seconds_count{kind="llm",outcome="allowed"}`:       ok,
		`caracal_upstream_duration_seconds_count{kind="llm",outcome="settled"}`:       ok,
		`caracal_reservations_open`: 0,
		`caracal_store_up`:          1,
	} {
		got, found := metricValue(text, series)
		if !found || got != want {
			t.Errorf("%s = %v (found %v), want %v", series, got, found, want)
		}
	}
	// The float counter sums floats: equal to the ledger within rounding.
	if got, found := metricValue(text, `caracal_charged_total{agent="bot",currency="USD"}`); !found || math.Abs(got-float64(charged.Nanos())/money.Scale) > 1e-12 {
		t.Errorf("caracal_charged_total = %v (found %v), want %s", got, found, charged)
	}
	if !strings.Contains(text, "\ngo_goroutines ") || !strings.Contains(text, "\nprocess_start_time_seconds ") {
		t.Error("the Go and process collectors are missing")
	}
	// Every decision was logged on stderr, with the agent's name.
	if n := strings.Count(e.stderr.String(), "msg=decision outcome=settled code=charged kind=llm agent=bot "); n != ok {
		t.Errorf("%d settled decision lines, want %d:\n%s", n, ok, e.stderr.String())
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, e.url+p); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
}

// TestReadyzFollowsDatabase stops the PostgreSQL server under a running
// `caracal proxy`: /readyz turns 503 naming the store while /healthz stays
// 200, and turns 200 again once the server is back.
func TestReadyzFollowsDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.URL(t)
	home := t.TempDir()
	env := append(os.Environ(), "CARACAL_HOME="+home, "CARACAL_DATABASE_URL="+dbURL, "E2E_OPENAI_KEY="+providerOpenAIKey)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("caracal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("init")
	up := httptest.NewServer(fakeprovider.New(fakeprovider.Options{OpenAIKey: providerOpenAIKey}))
	t.Cleanup(up.Close)
	cfgPath := filepath.Join(home, "proxy.yaml")
	cfg := fmt.Sprintf("proxy:\n  providers:\n    - {name: openai, base_url: %s, api_key_env: E2E_OPENAI_KEY}\n", up.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd := exec.Command(binary, "proxy", "--config", cfgPath, "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = env
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("caracal proxy did not stop on SIGINT\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("caracal proxy did not start: %v\n%s", err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	_, rest, _ := strings.Cut(line, "listening on ")
	base, _, _ := strings.Cut(strings.TrimSpace(rest), " ")

	ready := func() (int, map[string]string) {
		code, body := get(t, base+"/readyz")
		var v map[string]string
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		return code, v
	}
	waitReady := func(wantCode int, wantFailed string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, v := ready()
			if code == wantCode && v["failed"] == wantFailed {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz stayed %d %v, want %d failed=%q\n%s", code, v, wantCode, wantFailed, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady(http.StatusOK, "")
	// The scrape-time store gauges read PostgreSQL too.
	_, text := get(t, base+"/metrics")
	for series, want := range map[string]float64{"caracal_store_up": 1, "caracal_reservations_open": 0, "caracal_integration_pending_events": 0} {
		if got, found := metricValue(text, series); !found || got != want {
			t.Errorf("%s = %v (found %v), want %v", series, got, found, want)
		}
	}
	cluster.Stop(t)
	waitReady(http.StatusServiceUnavailable, "store")
	code, v := ready()
	if code != http.StatusServiceUnavailable || len(v) != 2 || v["status"] != "not ready" {
		t.Errorf("not-ready answer %d %v reveals more than the failed check", code, v)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while the database is down: %d %s", code, body)
	}
	waitFor(t, "caracal_store_up 0", func() bool {
		code, text := get(t, base+"/metrics")
		v, found := metricValue(text, "caracal_store_up")
		return code == http.StatusOK && found && v == 0
	})
	cluster.Start(t)
	waitReady(http.StatusOK, "")
	if strings.Contains(stderr.String(), providerOpenAIKey) || bytes.Contains([]byte(stderr.String()), []byte("password=")) {
		t.Error("a secret reached the log")
	}
}
