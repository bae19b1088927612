package e2e

import (
	"bufio"
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
	"os/exec"
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

// alertProxy is one `caracal proxy` process of the test.
type alertProxy struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done is closed
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
	rcv := &alertReceiver{t: t, secret: "whsec-e2e", down: true, attempts: map[string]int{}, accepted: map[string]int{}, payloads: map[string]alertIn{}, changed: make(chan struct{}, 1)}
	hook := httptest.NewServer(rcv)
	t.Cleanup(hook.Close)
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
`, fake.URL, hook.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *alertProxy {
		t.Helper()
		p := &alertProxy{stderr: &syncBuffer{}, done: make(chan struct{})}
		p.cmd = exec.Command(binary, "proxy", "--config", cfgPath, "--listen", "127.0.0.1:0")
		p.cmd.Env = append(os.Environ(), "CARACAL_HOME="+home, "E2E_OPENAI_KEY="+providerOpenAIKey, "E2E_ALERT_SECRET=whsec-e2e")
		p.cmd.Stderr = p.stderr
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			p.err = p.cmd.Wait()
			close(p.done)
		}()
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			<-p.done
			if strings.Contains(p.stderr.String(), "whsec-e2e") {
				t.Error("the proxy logged the alert secret")
			}
		})
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("caracal proxy did not start: %v\n%s", err, p.stderr.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		_, rest, ok := strings.Cut(line, "listening on ")
		if !ok {
			t.Fatalf("unexpected first line %q", line)
		}
		p.url, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
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

	// Every alert was tried against the receiver while it was down, and the
	// failed attempt is recorded in the outbox; then the process dies.
	rcv.waitUntil(fmt.Sprintf("%d alerts attempted", want), func() bool { return len(rcv.attempts) == want })
	db := filepath.Join(home, "caracal.db")
	waitRecorded := func() {
		ctx := context.Background()
		s, err := sqlite.Open(ctx, db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			rcv.mu.Lock()
			ids := make([]string, 0, len(rcv.attempts))
			for id := range rcv.attempts {
				ids = append(ids, id)
			}
			rcv.mu.Unlock()
			ok := true
			for _, id := range ids {
				if al, err := s.GetAlert(ctx, id); err != nil || al.Attempts < 1 || al.DeliveredAt != nil {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("failed attempts not recorded in the outbox\n%s", a.stderr.String())
			}
		}
	}
	waitRecorded()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	rcv.mu.Lock()
	if n := len(rcv.accepted); n != 0 {
		t.Fatalf("%d alerts accepted while the receiver was down", n)
	}
	rcv.down = false
	rcv.mu.Unlock()

	// A new process delivers what the dead one left in the outbox.
	b := start()
	rcv.waitUntil(fmt.Sprintf("%d alerts accepted", want), func() bool { return len(rcv.accepted) == want })

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
	_ = b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
		if b.err != nil {
			t.Errorf("caracal proxy exited with %v\n%s", b.err, b.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("caracal proxy did not stop on SIGINT\n%s", b.stderr.String())
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var got []string
	for id, n := range rcv.accepted {
		if n != 1 {
			t.Errorf("alert %s accepted %d times, want once", id, n)
		}
		p := rcv.payloads[id]
		if p.AgentName != "bot" || p.PolicyID == "" || p.Limit != "0.04" || p.Currency != "USD" || p.Window != "total" || p.CreatedAt.IsZero() {
			t.Errorf("alert %s: %+v", id, p)
		}
		switch p.Kind {
		case "threshold":
			got = append(got, fmt.Sprintf("threshold/%d", p.Threshold))
		case "denied":
			got = append(got, "denied/"+p.Code)
			if p.RequestID == "" || p.Reason == "" {
				t.Errorf("denial alert without request id or reason: %+v", p)
			}
		default:
			t.Errorf("alert %s of kind %q", id, p.Kind)
		}
	}
	var wantList []string
	for _, th := range after {
		wantList = append(wantList, fmt.Sprintf("threshold/%d", th))
	}
	wantList = append(wantList, "denied/budget_exceeded")
	slices.Sort(got)
	slices.Sort(wantList)
	if !slices.Equal(got, wantList) {
		t.Errorf("alerts received %v, want %v", got, wantList)
	}
}

// TestMCPBudgetAlerts: `caracal mcp` on stdio, one host session, sends its
// threshold and denial alerts before it exits.
func TestMCPBudgetAlerts(t *testing.T) {
	h := newHome(t, "0.05", map[string]string{"mcp:everything/echo": "0.01"})
	rcv := &alertReceiver{t: t, secret: "whsec-mcp", attempts: map[string]int{}, accepted: map[string]int{}, payloads: map[string]alertIn{}, changed: make(chan struct{}, 1)}
	hook := httptest.NewServer(rcv)
	t.Cleanup(hook.Close)
	cfg := fmt.Sprintf("alerts:\n  - url: %s\n    secret: whsec-mcp\n    thresholds: [40, 100]\n    denied: true\n", hook.URL)
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
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var got []string
	for id, n := range rcv.accepted {
		p := rcv.payloads[id]
		if n != 1 || p.AgentName != "claude" || p.Limit != "0.05" {
			t.Errorf("alert %s accepted %d times: %+v", id, n, p)
		}
		got = append(got, fmt.Sprintf("%s/%d/%s", p.Kind, p.Threshold, p.Code))
	}
	slices.Sort(got)
	if want := []string{"denied/0/budget_exceeded", "threshold/100/", "threshold/40/"}; !slices.Equal(got, want) {
		t.Errorf("alerts %v, want %v", got, want)
	}
}
