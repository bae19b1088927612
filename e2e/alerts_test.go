package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/ledger/sqlite"
)

// alertReceiver is a webhook receiver written from docs/operations.md
// alone: it checks Caracal-Signature with its own HMAC, answers 503 while
// down, and counts the alerts it accepted by id.
type alertReceiver struct {
	t      *testing.T
	secret string

	mu       sync.Mutex
	down     bool
	attempts map[string]int     // every delivery seen, by alert id
	accepted map[string]int     // 2xx answers, by alert id
	payloads map[string]alertIn // the first accepted body of each id
	changed  chan struct{}
}

type alertIn struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"`
	AgentName   string          `json:"agent_name"`
	AgentID     string          `json:"agent_id"`
	PolicyID    string          `json:"policy_id"`
	Window      string          `json:"window"`
	Limit       string          `json:"limit"`
	Spent       string          `json:"spent"`
	Currency    string          `json:"currency"`
	PercentUsed json.RawMessage `json:"percent_used"`
	Threshold   int             `json:"threshold"`
	Code        string          `json:"code"`
	Reason      string          `json:"reason"`
	RequestID   string          `json:"request_id"`
	CreatedAt   time.Time       `json:"created_at"`
}

func (r *alertReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.verify(req.Header.Get("Caracal-Signature"), body); err != nil {
		r.t.Errorf("alert with a bad signature: %v\n%s", err, body)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var a alertIn
	if err := json.Unmarshal(body, &a); err != nil || a.ID == "" {
		r.t.Errorf("alert body %s: %v", body, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}()
	r.attempts[a.ID]++
	if r.down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	r.accepted[a.ID]++
	if _, ok := r.payloads[a.ID]; !ok {
		r.payloads[a.ID] = a
	}
}

// verify is the documented check: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
func (r *alertReceiver) verify(header string, body []byte) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("malformed header %q", header)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s off", d)
	}
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return fmt.Errorf("signature %s, want %s", sig, want)
	}
	return nil
}

// waitUntil waits for cond, checked under the lock at every delivery.
func (r *alertReceiver) waitUntil(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("timed out waiting for %s; attempts %v, accepted %v", what, r.attempts, r.accepted)
		}
	}
}

// newAlertReceiver serves a receiver checking signatures with secret
// until the test ends, answering 503 while down; url is where it listens.
func newAlertReceiver(t *testing.T, secret string, down bool) (r *alertReceiver, url string) {
	r = &alertReceiver{t: t, secret: secret, down: down, attempts: map[string]int{}, accepted: map[string]int{}, payloads: map[string]alertIn{}, changed: make(chan struct{}, 1)}
	hook := httptest.NewServer(r)
	t.Cleanup(hook.Close)
	return r, hook.URL
}

// deliverAcrossRestart checks that want alerts, tried while the receiver
// was down, survive a crash: once the outbox in the SQLite database db
// records a failed attempt of each, p is killed with SIGKILL, the receiver
// comes up, and the process restart starts must deliver every one. It
// returns that process.
func (r *alertReceiver) deliverAcrossRestart(db string, p *served, want int, restart func() *served) *served {
	r.t.Helper()
	r.waitUntil(fmt.Sprintf("%d alerts attempted", want), func() bool { return len(r.attempts) == want })
	ctx := context.Background()
	s, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		ids := make([]string, 0, len(r.attempts))
		for id := range r.attempts {
			ids = append(ids, id)
		}
		r.mu.Unlock()
		ok := true
		for _, id := range ids {
			if al, err := s.GetAlert(ctx, id); err != nil || al.Attempts < 1 || al.DeliveredAt != nil {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("failed attempts not recorded in the outbox\n%s", p.stderr.String())
		}
	}
	_ = s.Close()
	p.kill()
	r.mu.Lock()
	if n := len(r.accepted); n != 0 {
		r.mu.Unlock()
		r.t.Fatalf("%d alerts accepted while the receiver was down", n)
	}
	r.down = false
	r.mu.Unlock()
	next := restart()
	r.waitUntil(fmt.Sprintf("%d alerts accepted", want), func() bool { return len(r.accepted) == want })
	return next
}

// received checks every alert accepted: once each, about agent's policy
// of limit USD over window, a denial with its request and reason. It
// returns them sorted as "threshold/50" and "denied/<code>".
func (r *alertReceiver) received(agent, limit, window string) []string {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var got []string
	for id, n := range r.accepted {
		if n != 1 {
			r.t.Errorf("alert %s accepted %d times, want once", id, n)
		}
		p := r.payloads[id]
		if p.AgentName != agent || p.PolicyID == "" || p.Limit != limit || p.Currency != "USD" || p.Window != window || p.CreatedAt.IsZero() {
			r.t.Errorf("alert %s: %+v", id, p)
		}
		switch p.Kind {
		case "threshold":
			got = append(got, fmt.Sprintf("threshold/%d", p.Threshold))
		case "denied":
			got = append(got, "denied/"+p.Code)
			if p.RequestID == "" || p.Reason == "" {
				r.t.Errorf("denial alert without request id or reason: %+v", p)
			}
		default:
			r.t.Errorf("alert %s of kind %q", id, p.Kind)
		}
	}
	slices.Sort(got)
	return got
}

// TestProxyBudgetAlerts drives `caracal proxy` with an alerts webhook:
// each threshold crossed and each denial reaches the receiver once, with a
// valid signature, even though the receiver was down when they were
// crossed and the process was killed and restarted before delivering
// them; a later check across the restart finds the old thresholds again
// and sends only the new one.
func TestProxyBudgetAlerts(t *testing.T) {
	home := t.TempDir()
	u := &proxyEnv{t: t, home: home}
	u.caracal("init")
	u.caracal("agent", "register", "--name", "bot", "--owner", "e2e@example.com")
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(u.caracal("agent", "key", "create", "--agent", "bot", "-o", "json")), &key); err != nil {
		t.Fatal(err)
	}
	// gpt-4o at $10 per million output tokens: a call with max_tokens 1000
	// costs a little over $0.01, a quarter of the budget.
	u.caracal("policy", "create", "--agent", "bot", "--limit", "0.04", "--window", "total")
	prices := filepath.Join(home, "prices.yaml")
	if err := os.WriteFile(prices, []byte(testPrices), 0o600); err != nil {
		t.Fatal(err)
	}
	u.caracal("pricebook", "import", prices)

	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{OpenAIKey: providerOpenAIKey, OutputTokens: 100000}))
	t.Cleanup(fake.Close)
	rcv, hookURL := newAlertReceiver(t, "whsec-e2e", true)
	thresholds := []int{20, 50, 70, 90}
	cfgPath := filepath.Join(home, "proxy.yaml")
	cfg := fmt.Sprintf(`proxy:
  providers:
    - name: openai
      base_url: %s
      api_key_env: E2E_OPENAI_KEY
alerts:
  - url: %s/caracal
    secret_env: E2E_ALERT_SECRET
    thresholds: [20, 50, 70, 90]
    denied: true
    agents: [bot]
`, fake.URL, hookURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *served {
		t.Helper()
		p := launch(t, append(os.Environ(), "CARACAL_HOME="+home, "E2E_OPENAI_KEY="+providerOpenAIKey, "E2E_ALERT_SECRET=whsec-e2e"),
			"proxy", "--config", cfgPath, "--listen", "127.0.0.1:0")
		t.Cleanup(func() {
			p.kill()
			if strings.Contains(p.stderr.String(), "whsec-e2e") {
				t.Error("the proxy logged the alert secret")
			}
		})
		return p
	}

	a := start()
	for i := range 3 {
		if code := chat(t, a.url, key.Key, "gpt-4o", 1000); code != http.StatusOK {
			t.Fatalf("chat %d: %d\n%s", i+1, code, a.stderr.String())
		}
	}
	// The fourth call's worst case is over what is left: denied.
	if code := chat(t, a.url, key.Key, "gpt-4o", 200000); code == http.StatusOK {
		t.Fatalf("over-budget request relayed")
	}
	percent := func() float64 {
		var rows []budgetJSON
		if err := json.Unmarshal([]byte(u.caracal("budget", "status", "--agent", "bot", "-o", "json")), &rows); err != nil || len(rows) != 1 {
			t.Fatalf("budget status: %v %+v", err, rows)
		}
		f, err := strconv.ParseFloat(string(rows[0].PercentUsed), 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	crossed := func(p float64) []int {
		var out []int
		for _, th := range thresholds {
			if p >= float64(th) {
				out = append(out, th)
			}
		}
		return out
	}
	pct := percent()
	before := crossed(pct)
	t.Logf("after 3 calls: %.2f%% used, thresholds crossed %v", pct, before)
	if len(before) < 2 || len(before) == len(thresholds) {
		t.Fatalf("thresholds crossed %v: the test's amounts no longer fit its budget", before)
	}
	want := len(before) + 1 // and the denial

	// Every alert is tried while the receiver is down, then the process
	// dies; a new one delivers what the dead one left in the outbox.
	b := rcv.deliverAcrossRestart(filepath.Join(home, "caracal.db"), a, want, start)

	// A further charge crosses 90%: its check finds every earlier
	// threshold again, and only the new one is sent.
	if code := chat(t, b.url, key.Key, "gpt-4o", 700); code != http.StatusOK {
		t.Fatalf("chat after restart: %d\n%s", code, b.stderr.String())
	}
	after := crossed(percent())
	if len(after) != len(before)+1 {
		t.Fatalf("thresholds crossed after the restart %v, before %v: the test's amounts no longer fit", after, before)
	}
	rcv.waitUntil("the new threshold's alert", func() bool { return len(rcv.accepted) == want+1 })
	// Stop the process cleanly: nothing more can arrive after this.
	b.stop()
	got := rcv.received("bot", "0.04", "total")
	var wantList []string
	for _, th := range after {
		wantList = append(wantList, fmt.Sprintf("threshold/%d", th))
	}
	wantList = append(wantList, "denied/budget_exceeded")
	slices.Sort(wantList)
	if !slices.Equal(got, wantList) {
		t.Errorf("alerts received %v, want %v", got, wantList)
	}
}

// TestMCPBudgetAlerts: `caracal mcp` on stdio, one host session, sends its
// threshold and denial alerts before it exits.
func TestMCPBudgetAlerts(t *testing.T) {
	h := newHome(t, "0.05", map[string]string{"mcp:everything/echo": "0.01"})
	rcv, hookURL := newAlertReceiver(t, "whsec-mcp", false)
	cfg := fmt.Sprintf("alerts:\n  - url: %s\n    secret: whsec-mcp\n    thresholds: [40, 100]\n    denied: true\n", hookURL)
	if err := os.WriteFile(filepath.Join(h.dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	res := nodeClient(t, h.env(), map[string]any{"transport": "stdio", "command": binary,
		"args":     []string{"mcp", "--agent", "claude", "--name", "everything", "--", "node", everythingJS(), "stdio"},
		"scenario": "calls", "tool": "echo", "toolArgs": map[string]any{"message": "hi"}, "n": 6})
	if n := len(res["results"].([]any)); n != 6 {
		t.Fatalf("%d results, want 6", n)
	}
	rcv.waitUntil("3 alerts", func() bool { return len(rcv.accepted) == 3 })
	if got, want := rcv.received("claude", "0.05", "total"), []string{"denied/budget_exceeded", "threshold/100", "threshold/40"}; !slices.Equal(got, want) {
		t.Errorf("alerts %v, want %v", got, want)
	}
}

// TestServeBudgetAlerts: metering through `caracal serve`'s API crosses
// thresholds and is denied; each alert reaches the receiver once, signed,
// though the receiver was down when they were enqueued and the process
// was killed and restarted before delivering them. Each reservation's
// figures are those of GET /v1/budgets right after it.
func TestServeBudgetAlerts(t *testing.T) {
	const secret = "whsec-serve"
	h := newHomeEnv(t, "1.00", nil, "E2E_ALERT_SECRET="+secret)
	rcv, hookURL := newAlertReceiver(t, secret, true)
	cfg := fmt.Sprintf("alerts:\n  - url: %s/caracal\n    secret_env: E2E_ALERT_SECRET\n    thresholds: [50, 80, 100]\n    denied: true\n", hookURL)
	if err := os.WriteFile(filepath.Join(h.dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(h.key())[1]
	start := func() *served {
		t.Helper()
		p := launchServe(t, h)
		t.Cleanup(func() {
			p.kill()
			if strings.Contains(p.stderr.String(), secret) {
				t.Error("caracal serve logged the alert secret")
			}
		})
		return p
	}
	type figures struct{ Limit, Spent, Reserved, Remaining string }
	// spend reserves amount and settles it at that amount.
	spend := func(p *served, amount string) {
		t.Helper()
		agent := client{t: t, base: p.url, token: key}
		var res struct {
			ID        string
			Remaining []figures
		}
		agent.ok(201, "POST", "/v1/reservations", map[string]any{"resource": "http:search/query", "amount": amount}, &res)
		var status []figures
		agent.ok(200, "GET", "/v1/budgets", nil, &status)
		if len(res.Remaining) != 1 || len(status) != 1 || res.Remaining[0] != status[0] {
			t.Fatalf("reservation of %s reports %+v, budget status right after it %+v", amount, res.Remaining, status)
		}
		agent.ok(200, "POST", "/v1/reservations/"+res.ID+"/settle", nil, nil)
	}

	a := start()
	spend(a, "0.30") // 30%
	spend(a, "0.25") // 55%: 50 crossed
	spend(a, "0.30") // 85%: 80 crossed
	over := client{t: t, base: a.url, token: key}
	over.problem(402, "budget_exceeded", "POST", "/v1/reservations", map[string]any{"resource": "http:search/query", "amount": "0.20"})

	// Two thresholds and the denial, tried while the receiver is down;
	// a new process delivers them after the first is killed.
	b := rcv.deliverAcrossRestart(filepath.Join(h.dir, "caracal.db"), a, 3, start)

	// The last 0.15 uses the whole budget: only the new threshold is sent.
	spend(b, "0.15")
	rcv.waitUntil("the 100% alert", func() bool { return len(rcv.accepted) == 4 })
	b.stop()
	got := rcv.received("claude", "1.00", "total")
	if want := []string{"denied/budget_exceeded", "threshold/100", "threshold/50", "threshold/80"}; !slices.Equal(got, want) {
		t.Errorf("alerts received %v, want %v", got, want)
	}
}
