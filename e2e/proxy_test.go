package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
)

// Provider keys the proxy holds; the agent must never see them and the
// provider must never see the agent's key.
const (
	providerOpenAIKey    = "sk-fake-openai-PROVIDER-SECRET"
	providerAnthropicKey = "sk-fake-anthropic-PROVIDER-SECRET"
)

// testPrices is the pricebook of these tests: every token class priced, so
// each ledger amount checks the whole formula.
const testPrices = `prices:
  - resource: "llm:openai/gpt-4o*"
    input_per_million: "2.50"
    output_per_million: "10.00"
    cached_input_per_million: "1.25"
  - resource: "llm:openai/gpt-4o-mini*"
    input_per_million: "0.15"
    output_per_million: "0.60"
    cached_input_per_million: "0.075"
  - resource: "llm:openai/o3*"
    input_per_million: "2.00"
    output_per_million: "8.00"
    cached_input_per_million: "0.50"
    reasoning_per_million: "9.00"
  - resource: "llm:openai/text-embedding-3-small"
    input_per_million: "0.02"
  - resource: "llm:anthropic/claude-sonnet-4*"
    input_per_million: "3.00"
    output_per_million: "15.00"
    cached_input_per_million: "0.30"
    cache_write_per_million: "3.75"
`

// rate is one rule's per-million prices in nano-units.
type rate struct{ in, out, cached, write, reasoning int64 }

var testRates = map[string]rate{
	"gpt-4o":                 {2_500_000_000, 10_000_000_000, 1_250_000_000, 0, 0},
	"gpt-4o-mini":            {150_000_000, 600_000_000, 75_000_000, 0, 0},
	"o3":                     {2_000_000_000, 8_000_000_000, 500_000_000, 0, 9_000_000_000},
	"text-embedding-3-small": {20_000_000, 0, 0, 0, 0},
	"claude-sonnet-4-6":      {3_000_000_000, 15_000_000_000, 300_000_000, 3_750_000_000, 0},
}

type ledgerTokens struct {
	Input      int64 `json:"input"`
	Output     int64 `json:"output"`
	CachedRead int64 `json:"cached_read"`
	CacheWrite int64 `json:"cache_write"`
	Reasoning  int64 `json:"reasoning"`
}

type ledgerEvent struct {
	Seq       int64        `json:"seq"`
	Resource  string       `json:"resource"`
	Operation string       `json:"operation"`
	Amount    string       `json:"amount"`
	Outcome   string       `json:"outcome"`
	Code      string       `json:"code"`
	RequestID string       `json:"request_id"`
	Tokens    ledgerTokens `json:"tokens"`
}

// expectedCost is usage × price as docs/http-proxy.md states it, written
// out independently of the code under test: disjoint token classes, a
// class without a rate billed at its parent's (reasoning as output, cache
// reads and writes as input), one rounding half up.
func expectedCost(r rate, t ledgerTokens) string {
	or := func(own, parent int64) int64 {
		if own == 0 {
			return parent
		}
		return own
	}
	sum := new(big.Int)
	for _, p := range [][2]int64{
		{r.in, t.Input}, {or(r.cached, r.in), t.CachedRead}, {or(r.write, r.in), t.CacheWrite},
		{r.out, t.Output}, {or(r.reasoning, r.out), t.Reasoning},
	} {
		sum.Add(sum, new(big.Int).Mul(big.NewInt(p[0]), big.NewInt(p[1])))
	}
	sum.Add(sum, big.NewInt(500_000))
	sum.Quo(sum, big.NewInt(1_000_000))
	n := sum.Int64()
	s := fmt.Sprintf("%d.%09d", n/1e9, n%1e9)
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	return s
}

// proxyEnv is one Caracal home with an agent, a budget, the test
// pricebook, a fake provider and `caracal proxy` running in front of it.
type proxyEnv struct {
	t      *testing.T
	home   string
	key    string
	keyID  string
	fake   *fakeprovider.Server
	url    string
	stderr *syncBuffer
	proc   *exec.Cmd
	// exited is closed when the proxy process has exited, with exitErr.
	exited  chan struct{}
	exitErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *proxyEnv) caracal(args ...string) string {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CARACAL_HOME="+e.home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("caracal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// newProxyEnv sets the environment up with a total budget of limit;
// policyArgs are added to `caracal policy create`.
func newProxyEnv(t *testing.T, limit string, policyArgs ...string) *proxyEnv {
	t.Helper()
	return newProxyEnvArgs(t, limit, nil, policyArgs...)
}

// newProxyEnvArgs is newProxyEnv with proxyArgs added to `caracal proxy`.
func newProxyEnvArgs(t *testing.T, limit string, proxyArgs []string, policyArgs ...string) *proxyEnv {
	t.Helper()
	e := &proxyEnv{t: t, home: t.TempDir(), stderr: &syncBuffer{}}
	e.caracal("init")
	e.caracal("agent", "register", "--name", "bot", "--owner", "e2e@example.com")
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(e.caracal("agent", "key", "create", "--agent", "bot", "-o", "json")), &key); err != nil {
		t.Fatal(err)
	}
	e.key, e.keyID = key.Key, key.ID
	e.caracal(append([]string{"policy", "create", "--agent", "bot", "--limit", limit, "--window", "total"}, policyArgs...)...)
	prices := filepath.Join(e.home, "prices.yaml")
	keyFile := filepath.Join(e.home, "anthropic.key")
	for path, body := range map[string]string{prices: testPrices, keyFile: providerAnthropicKey + "\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.caracal("pricebook", "import", prices)

	e.fake = fakeprovider.New(fakeprovider.Options{OpenAIKey: providerOpenAIKey, AnthropicKey: providerAnthropicKey, Record: true})
	up := httptest.NewServer(e.fake)
	t.Cleanup(up.Close)
	// The OpenAI key comes from the environment, the Anthropic key from a
	// file: both ways the configuration offers.
	cfg := fmt.Sprintf(`proxy:
  providers:
    - name: openai
      base_url: %s
      api_key_env: E2E_OPENAI_KEY
    - name: anthropic
      base_url: %s
      api_key_file: %s
`, up.URL, up.URL, keyFile)
	cfgPath := filepath.Join(e.home, "proxy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"proxy", "--config", cfgPath, "--listen", "127.0.0.1:0", "--upstream-timeout", "2s", "--drain-timeout", "20s"}, proxyArgs...)...)
	cmd.Env = append(os.Environ(), "CARACAL_HOME="+e.home, "E2E_OPENAI_KEY="+providerOpenAIKey)
	cmd.Stderr = e.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.proc, e.exited = cmd, make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-e.exited:
			if e.exitErr != nil {
				t.Errorf("caracal proxy exited with %v\n%s", e.exitErr, e.stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("caracal proxy did not stop on SIGINT\n%s", e.stderr.String())
		}
		if strings.Contains(e.stderr.String(), providerOpenAIKey) || strings.Contains(e.stderr.String(), providerAnthropicKey) {
			t.Error("the proxy logged a provider key")
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("caracal proxy did not start: %v\n%s", err, e.stderr.String())
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		e.exitErr = cmd.Wait()
		close(e.exited)
	}()
	_, rest, ok := strings.Cut(line, "listening on ")
	if !ok {
		t.Fatalf("unexpected first line %q", line)
	}
	e.url, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
	return e
}

// node runs an SDK script and decodes the JSON object it prints.
func (e *proxyEnv) node(script, scenario, baseURL string, headers map[string]string, extraEnv ...string) map[string]any {
	e.t.Helper()
	h, _ := json.Marshal(headers)
	cmd := exec.Command("node", script, scenario)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "CARACAL_BASE_URL="+baseURL, "CARACAL_KEY="+e.key, "FAKE_HEADERS="+string(h))
	cmd.Env = append(cmd.Env, extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("node %s %s: %v\n%s\nproxy log:\n%s", script, scenario, err, stderr.String(), e.stderr.String())
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		e.t.Fatalf("node %s %s printed %q: %v", script, scenario, out, err)
	}
	if strings.Contains(string(out), "PROVIDER-SECRET") {
		e.t.Errorf("the client saw a provider key: %s", out)
	}
	return v
}

func (e *proxyEnv) ledger() []ledgerEvent {
	e.t.Helper()
	var evs []ledgerEvent
	if err := json.Unmarshal([]byte(e.caracal("ledger", "query", "--oldest-first", "-o", "json", "--limit", "0")), &evs); err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// openReservations counts reservations neither settled nor released,
// read straight from the SQLite file.
func (e *proxyEnv) openReservations() int {
	e.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.home, "caracal.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM reservations WHERE status = 'open'`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// waitClosed waits until no reservation is open (settlement after a
// client leaves happens in the background).
func (e *proxyEnv) waitClosed() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.openReservations() != 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d reservations still open\n%s", e.openReservations(), e.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func usageNum(v map[string]any, path ...string) int64 {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return -1
		}
		cur = m[p]
	}
	f, ok := cur.(float64)
	if !ok {
		return -1
	}
	return int64(f)
}

func TestProxySDKsSettleReportedUsage(t *testing.T) {
	e := newProxyEnv(t, "100")
	openai, anthropic := e.url+"/openai/v1", e.url+"/anthropic"
	tests := []struct {
		script, scenario, base, model string
		headers                       map[string]string
		// want converts the usage the SDK returned to ledger tokens; nil
		// when the SDK gets no usage (the proxy asked for it on its own).
		want func(u map[string]any) ledgerTokens
	}{
		{"openai-proxy.mjs", "chat", openai, "gpt-4o", map[string]string{"Fake-Cached-Tokens": "5", "Fake-Reasoning-Tokens": "3"}, func(u map[string]any) ledgerTokens {
			c, r := usageNum(u, "prompt_tokens_details", "cached_tokens"), usageNum(u, "completion_tokens_details", "reasoning_tokens")
			return ledgerTokens{Input: usageNum(u, "prompt_tokens") - c, CachedRead: c, Output: usageNum(u, "completion_tokens") - r, Reasoning: r}
		}},
		{"openai-proxy.mjs", "chat-stream", openai, "gpt-4o-mini", nil, nil},
		{"openai-proxy.mjs", "chat-stream-usage", openai, "gpt-4o", map[string]string{"Fake-Cached-Tokens": "2"}, func(u map[string]any) ledgerTokens {
			c := usageNum(u, "prompt_tokens_details", "cached_tokens")
			return ledgerTokens{Input: usageNum(u, "prompt_tokens") - c, CachedRead: c, Output: usageNum(u, "completion_tokens")}
		}},
		{"openai-proxy.mjs", "responses", openai, "o3", map[string]string{"Fake-Reasoning-Tokens": "40", "Fake-Cached-Tokens": "4"}, func(u map[string]any) ledgerTokens {
			c, r := usageNum(u, "input_tokens_details", "cached_tokens"), usageNum(u, "output_tokens_details", "reasoning_tokens")
			return ledgerTokens{Input: usageNum(u, "input_tokens") - c, CachedRead: c, Output: usageNum(u, "output_tokens") - r, Reasoning: r}
		}},
		{"openai-proxy.mjs", "responses-stream", openai, "o3", map[string]string{"Fake-Reasoning-Tokens": "7"}, func(u map[string]any) ledgerTokens {
			r := usageNum(u, "output_tokens_details", "reasoning_tokens")
			return ledgerTokens{Input: usageNum(u, "input_tokens"), Output: usageNum(u, "output_tokens") - r, Reasoning: r}
		}},
		{"openai-proxy.mjs", "embeddings", openai, "text-embedding-3-small", nil, func(u map[string]any) ledgerTokens {
			return ledgerTokens{Input: usageNum(u, "prompt_tokens")}
		}},
		{"anthropic-proxy.mjs", "messages", anthropic, "claude-sonnet-4-6", map[string]string{"Fake-Cached-Tokens": "7", "Fake-Cache-Write-Tokens": "11"}, func(u map[string]any) ledgerTokens {
			return ledgerTokens{Input: usageNum(u, "input_tokens"), CachedRead: usageNum(u, "cache_read_input_tokens"), CacheWrite: usageNum(u, "cache_creation_input_tokens"), Output: usageNum(u, "output_tokens")}
		}},
		{"anthropic-proxy.mjs", "messages-stream", anthropic, "claude-sonnet-4-6", map[string]string{"Fake-Cache-Write-Tokens": "9"}, func(u map[string]any) ledgerTokens {
			return ledgerTokens{Input: usageNum(u, "input_tokens"), CachedRead: usageNum(u, "cache_read_input_tokens"), CacheWrite: usageNum(u, "cache_creation_input_tokens"), Output: usageNum(u, "output_tokens")}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.scenario+"/"+tt.model, func(t *testing.T) {
			e.t = t
			out := e.node(tt.script, tt.scenario, tt.base, tt.headers)
			if out["error"] != nil {
				t.Fatalf("SDK error: %v\n%s", out["error"], e.stderr.String())
			}
			if text, _ := out["text"].(string); text == "" && tt.scenario != "embeddings" {
				t.Errorf("no text in %v", out)
			}
			evs := e.ledger()
			if len(evs) != i+1 {
				t.Fatalf("ledger has %d events, want %d", len(evs), i+1)
			}
			ev := evs[i]
			if ev.Outcome != "charged" || ev.Resource != "llm:"+strings.TrimSuffix(strings.SplitN(tt.base, "/", 4)[3], "/v1")+"/"+tt.model {
				t.Fatalf("event %+v", ev)
			}
			if tt.want != nil {
				usage, _ := out["usage"].(map[string]any)
				if want := tt.want(usage); ev.Tokens != want {
					t.Errorf("ledger tokens %+v, SDK reported %+v", ev.Tokens, want)
				}
			} else {
				if out["usage"] != nil || out["chunks"].(float64) != 14 {
					t.Errorf("the client got the usage chunk it did not ask for: %v", out)
				}
				if ev.Tokens.Output != 12 {
					t.Errorf("ledger tokens %+v", ev.Tokens)
				}
			}
			if want := expectedCost(testRates[tt.model], ev.Tokens); ev.Amount != want {
				t.Errorf("amount %s, want usage × price = %s (tokens %+v)", ev.Amount, want, ev.Tokens)
			}
			if hdr, ok := out["headers"].(map[string]any); ok {
				if hdr["caracal-request-id"] != ev.RequestID || hdr["caracal-decision"] != "allowed" {
					t.Errorf("headers %v, event %s", hdr, ev.RequestID)
				}
			}
		})
	}
	e.t = t
	// Key isolation: the provider saw only its own key, in its own header.
	seen := e.fake.Seen()
	if len(seen) != len(tests) {
		t.Fatalf("provider saw %d requests, want %d", len(seen), len(tests))
	}
	for _, s := range seen {
		if strings.Contains(s.Authorization+s.APIKey, "crk_") {
			t.Errorf("the provider saw the agent key: %+v", s)
		}
		if strings.HasSuffix(s.Path, "/v1/messages") {
			if s.APIKey != providerAnthropicKey || s.Authorization != "" {
				t.Errorf("anthropic request credentials %+v", s)
			}
		} else if s.Authorization != "Bearer "+providerOpenAIKey || s.APIKey != "" {
			t.Errorf("openai request credentials %+v", s)
		}
	}
	if n := e.openReservations(); n != 0 {
		t.Errorf("%d reservations left open", n)
	}
	// The proxy integrates its charges into the Merkle log in the
	// background: each gets a leaf within a bounded time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending := 0
		for _, ev := range e.ledger() {
			if ev.Seq < 0 {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still not in the Merkle tree", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProxySDKsOverBudget(t *testing.T) {
	e := newProxyEnv(t, "0.0001")
	// Each SDK raises its own class for status 402: the OpenAI SDK its
	// generic APIError, the Anthropic SDK PaymentRequiredError.
	for _, tt := range []struct{ script, base, scenario, wantType, wantName string }{
		{"openai-proxy.mjs", e.url + "/openai/v1", "chat", "insufficient_quota", "APIError"},
		{"openai-proxy.mjs", e.url + "/openai/v1", "chat-stream", "insufficient_quota", "APIError"},
		{"anthropic-proxy.mjs", e.url + "/anthropic", "messages", "billing_error", "PaymentRequiredError"},
	} {
		out := e.node(tt.script, tt.scenario, tt.base, nil)
		errv, _ := out["error"].(map[string]any)
		if errv == nil {
			t.Fatalf("%s %s: no error raised: %v", tt.script, tt.scenario, out)
		}
		msg, _ := errv["message"].(string)
		if errv["status"] != float64(402) || errv["name"] != tt.wantName || errv["type"] != tt.wantType ||
			!strings.Contains(msg, "Caracal refused this request (budget_exceeded)") || !strings.Contains(msg, "0.0001") {
			t.Errorf("%s %s: error %v", tt.script, tt.scenario, errv)
		}
	}
	if n := len(e.fake.Seen()); n != 0 {
		t.Errorf("refused requests reached the provider %d times", n)
	}
	evs := e.ledger()
	if len(evs) != 3 {
		t.Fatalf("ledger %+v: want the 3 denials", evs)
	}
	for _, ev := range evs {
		if ev.Outcome != "denied" || ev.Code != "budget_exceeded" {
			t.Errorf("event %+v", ev)
		}
	}
}

func TestProxyConcurrentStreamsStayWithinBudget(t *testing.T) {
	// The worst case of the concurrent scenario's request, by the rule in
	// docs/http-proxy.md: (body bytes + 1024) input tokens at the highest
	// input-side rate plus max_tokens at the highest output-side rate.
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"stream":true,"max_tokens":1000}`
	r := testRates["gpt-4o"]
	worstNanos := ((int64(len(body))+1024)*max(r.in, r.cached, r.write) + 1000*max(r.out, r.reasoning) + 999_999) / 1_000_000
	limitNanos := 10 * worstNanos
	limit := fmt.Sprintf("%d.%09d", limitNanos/1e9, limitNanos%1e9)
	e := newProxyEnv(t, limit)
	out := e.node("openai-proxy.mjs", "concurrent", e.url+"/openai/v1", map[string]string{"Fake-Chunk-Delay": "20ms"}, "CONCURRENCY=100")
	results, _ := out["results"].(map[string]any)
	t.Logf("100 concurrent streams: %v", results)
	ok, _ := results["ok"].(float64)
	refused, _ := results["402"].(float64)
	if ok < 10 || ok+refused != 100 {
		t.Fatalf("results %v: want at least 10 streams admitted and every other one refused with 402", results)
	}
	e.waitClosed()
	var spent, charged int64
	for _, ev := range e.ledger() {
		switch ev.Outcome {
		case "charged":
			charged++
			if ev.Tokens.Output != 12 || ev.Amount != expectedCost(r, ev.Tokens) {
				t.Errorf("event %+v", ev)
			}
			var whole, frac int64
			fmt.Sscanf(ev.Amount+"000000000", "%d.%9d", &whole, &frac)
			spent += whole*1e9 + frac
		case "denied":
		default:
			t.Errorf("event %+v: every admitted stream must be settled from its usage", ev)
		}
	}
	if charged != int64(ok) {
		t.Errorf("%d streams admitted, %d charged", int64(ok), charged)
	}
	if spent > limitNanos {
		t.Errorf("spent %d nanos over a limit of %d", spent, limitNanos)
	}
}

func TestProxyClientDisconnectIsCharged(t *testing.T) {
	e := newProxyEnv(t, "100")
	slow := map[string]string{"Fake-Chunk-Delay": "100ms"}
	e.node("openai-proxy.mjs", "disconnect", e.url+"/openai/v1", slow)
	e.node("anthropic-proxy.mjs", "disconnect", e.url+"/anthropic", slow)
	e.waitClosed()
	evs := e.ledger()
	if len(evs) != 2 {
		t.Fatalf("ledger %+v", evs)
	}
	for _, ev := range evs {
		// The client left after the first word; the provider went on to
		// produce and report all 12.
		model := ev.Resource[strings.LastIndexByte(ev.Resource, '/')+1:]
		if ev.Outcome != "charged" || ev.Tokens.Output != 12 || ev.Amount != expectedCost(testRates[model], ev.Tokens) {
			t.Errorf("event %+v: want a charge for the 12 tokens the provider reported", ev)
		}
	}
}

func TestProxyBadInput(t *testing.T) {
	e := newProxyEnv(t, "100")
	revoked := e.key
	e.caracal("agent", "key", "revoke", e.keyID)
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(e.caracal("agent", "key", "create", "--agent", "bot", "-o", "json")), &key); err != nil {
		t.Fatal(err)
	}
	good := key.Key
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":20}`
	tests := []struct {
		name, path, key, body string
		hdr                   map[string]string
		status                int
		// bodyPath/bodyWant check the error body's shape.
		bodyPath, bodyWant string
		outcome            string // the ledger outcome; "" for no event
	}{
		{"malformed JSON", "/openai/v1/chat/completions", good, `{"model": "gpt-4o", "messages": [`, nil, 400, "error.type", "invalid_request_error", ""},
		{"malformed JSON, anthropic", "/anthropic/v1/messages", good, `{oops}`, nil, 400, "type", "error", ""},
		{"unknown provider", "/mistral/v1/chat/completions", good, chat, nil, 404, "error.type", "invalid_request_error", ""},
		{"missing key", "/openai/v1/chat/completions", "", chat, nil, 401, "error.code", "invalid_api_key", ""},
		{"revoked key", "/openai/v1/chat/completions", revoked, chat, nil, 401, "error.code", "invalid_api_key", ""},
		{"upstream timeout", "/openai/v1/chat/completions", good, chat, map[string]string{"Fake-Mode": "hang"}, 504, "error.code", "upstream_timeout", "unconfirmed"},
		{"upstream 500", "/openai/v1/chat/completions", good, chat, map[string]string{"Fake-Mode": "error500"}, 500, "error.message", "fake internal error", "refunded"},
		{"upstream 500, anthropic", "/anthropic/v1/messages", good, `{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[]}`, map[string]string{"Fake-Mode": "error500"}, 500, "error.type", "api_error", "refunded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			before := len(e.ledger())
			req, err := http.NewRequestWithContext(context.Background(), "POST", e.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("body %q is not JSON", b)
			}
			if got := usageString(v, strings.Split(tt.bodyPath, ".")...); got != tt.bodyWant {
				t.Errorf("%s = %q, want %q in %s", tt.bodyPath, got, tt.bodyWant, b)
			}
			evs := e.ledger()[before:]
			switch {
			case tt.outcome == "" && len(evs) != 0:
				t.Errorf("unexpected events %+v", evs)
			case tt.outcome != "" && (len(evs) != 1 || evs[0].Outcome != tt.outcome):
				t.Errorf("events %+v, want one %s", evs, tt.outcome)
			}
			if n := e.openReservations(); n != 0 {
				t.Errorf("%d reservations left open", n)
			}
		})
	}
}

func TestProxyModelAllowlist(t *testing.T) {
	e := newProxyEnv(t, "100", "--allow", "llm:openai/gpt-4o-mini*")
	base := e.url + "/openai/v1"
	if out := e.node("openai-proxy.mjs", "chat-stream", base, nil); out["error"] != nil {
		t.Fatalf("gpt-4o-mini refused: %v", out["error"])
	}
	out := e.node("openai-proxy.mjs", "chat", base, nil)
	errv, _ := out["error"].(map[string]any)
	if errv == nil || errv["status"] != float64(402) || errv["code"] != "not_allowed" || !strings.Contains(errv["message"].(string), "llm:openai/gpt-4o") {
		t.Fatalf("gpt-4o: %v, want a 402 not_allowed naming the resource", out)
	}
	if n := len(e.fake.Seen()); n != 1 {
		t.Errorf("provider saw %d requests, want only the allowed one", n)
	}
}

func TestProxyStrictPricingRefusesUnpriced(t *testing.T) {
	t.Setenv("CARACAL_PRICING_STRICT", "true")
	e := newProxyEnv(t, "100")
	tests := []struct {
		method, path, body string
		status             int
		decision           string
	}{
		{"POST", "/openai/v1/chat/completions", `{"model":"gpt-3.5-turbo","messages":[],"max_tokens":5}`, 402, "unpriced"},
		{"GET", "/openai/v1/models", "", 402, "unpriced"},
		{"POST", "/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[],"max_tokens":5}`, 200, "allowed"},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		req, err := http.NewRequest(tt.method, e.url+tt.path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Caracal-Decision") != tt.decision {
			t.Errorf("%s %s: %d %q, want %d %q: %s", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Caracal-Decision"), tt.status, tt.decision, b)
		}
	}
	if n := len(e.fake.Seen()); n != 1 {
		t.Errorf("provider saw %d requests, want only the priced one", n)
	}
}

func usageString(v map[string]any, path ...string) string {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

// TestFakeProviderProcess runs the fake provider as its own process, as
// tests in other languages or a manual session would.
func TestFakeProviderProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fakeprovider")
	if out, err := exec.Command("go", "build", "-o", bin, "../internal/cmd/fakeprovider").CombinedOutput(); err != nil {
		t.Fatalf("build fakeprovider: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--openai-key", "sk-x")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[]}`))
	req.Header.Set("Authorization", "Bearer sk-x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"completion_tokens":12`) {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	resp, err = http.Get(base + "/_fake/seen")
	if err != nil {
		t.Fatal(err)
	}
	var seen []fakeprovider.Seen
	err = json.NewDecoder(resp.Body).Decode(&seen)
	resp.Body.Close()
	if err != nil || len(seen) != 2 || seen[0].Authorization != "Bearer sk-x" {
		t.Errorf("seen %+v, %v", seen, err)
	}
}

func TestExampleLLMPriceTableImports(t *testing.T) {
	e := &proxyEnv{t: t, home: t.TempDir()}
	e.caracal("init")
	out := e.caracal("pricebook", "import", "../examples/llm-prices.yaml")
	if !strings.Contains(out, "Imported") {
		t.Fatalf("import said %q", out)
	}
	var rules []map[string]any
	if err := json.Unmarshal([]byte(e.caracal("pricebook", "list", "-o", "json")), &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules) < 15 {
		t.Errorf("only %d rules imported", len(rules))
	}
}

// TestProxyUsageOverrun: a provider that reports far more output than the
// request's max_tokens allows is charged what it reports, the event is
// marked usage_overrun and a warning logged, and the agent, now over its
// limit, is refused from then on.
func TestProxyUsageOverrun(t *testing.T) {
	e := newProxyEnv(t, "1.00")
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
	var statuses []int
	for i := 0; i < 3; i++ {
		req, err := http.NewRequestWithContext(context.Background(), "POST", e.url+"/openai/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.key)
		req.Header.Set("Fake-Mode", "overreport")
		req.Header.Set("Fake-Output-Tokens", "1000000")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if fmt.Sprint(statuses) != "[200 402 402]" {
		t.Fatalf("statuses %v, want [200 402 402]\n%s", statuses, e.stderr.String())
	}
	if n := len(e.fake.Seen()); n != 1 {
		t.Errorf("the provider saw %d requests, want 1", n)
	}
	var charged []ledgerEvent
	for _, ev := range e.ledger() {
		switch ev.Outcome {
		case "charged":
			charged = append(charged, ev)
		case "denied":
			if ev.Code != "budget_exceeded" {
				t.Errorf("denial %+v", ev)
			}
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if len(charged) != 1 {
		t.Fatalf("charged events %+v, want exactly one", charged)
	}
	ev := charged[0]
	want := expectedCost(testRates["gpt-4o"], ev.Tokens)
	if ev.Code != "usage_overrun" || ev.Tokens.Output != 1_000_000 || ev.Amount != want {
		t.Errorf("event %+v, want usage_overrun charging %s for 1000000 output tokens", ev, want)
	}
	csv := e.caracal("ledger", "export", "--format", "csv")
	if !strings.Contains(csv, ",charged,usage_overrun,") {
		t.Errorf("the CSV export does not mark the overrun:\n%s", csv)
	}
	if log := e.stderr.String(); !strings.Contains(log, "usage overran the reservation") || !strings.Contains(log, "charged="+want) {
		t.Errorf("no overrun warning in the proxy log:\n%s", log)
	}
}
