package e2e

// Acceptance tests of budget enforcement under concurrency: bursts of 500
// LLM requests through `caracal proxy` against a budget that fits exactly
// burstAdmits of them, on one process over SQLite, on two processes over one
// PostgreSQL database, down a delegation chain, and across a kill -9
// (overspend_kill_test.go). Every request is the same body, so its worst
// case (the reservation) and its settled charge are fixed amounts and the
// number a budget admits is exact arithmetic: the tests hold the proxy to
// that number, not to a bound.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/fakeprovider"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
)

const (
	// accLeaseTTL is how long a process's share of a budget's headroom
	// lives without renewal; a short one keeps the crash test quick.
	accLeaseTTL    = 2 * time.Second
	accLeaseTTLEnv = "CARACAL_ENFORCEMENT_LEASE_TTL=2s"

	burstSize   = 500
	burstAdmits = 137

	// accModel is priced by testPrices (gpt-4o: 2.50 in, 10.00 out per
	// million tokens), and accBody is the one request every test sends.
	accModel = "gpt-4o"
	accBody  = `{"model":"gpt-4o","messages":[{"role":"user","content":"Count to twelve."}],"max_tokens":20}`
	// accMaxTokens is accBody's max_tokens.
	accMaxTokens = 20
)

// accWorst is accBody's reservation, by the rule of docs/http-proxy.md
// written out independently of the code: (body bytes + 1,024) input tokens
// at the highest input-side rate plus max_tokens at the highest output-side
// rate, rounded up to a nano-unit.
func accWorst() money.Amount {
	r := testRates[accModel]
	n := (int64(len(accBody))+1024)*max(r.in, r.cached, r.write) + accMaxTokens*max(r.out, r.reasoning)
	return money.Amount((n + 999_999) / 1_000_000)
}

// accCharge is what accBody is charged once settled: the fake provider
// reports fakeprovider.InputTokens input tokens and 12 output tokens.
func accCharge() money.Amount {
	r := testRates[accModel]
	n := fakeprovider.InputTokens([]byte(accBody))*r.in + 12*r.out
	return money.Amount((n + 500_000) / 1_000_000)
}

// amountTimes is n × a, failing the test on overflow (it never happens here).
func amountTimes(t *testing.T, a money.Amount, n int) money.Amount {
	t.Helper()
	p, err := a.MulInt(int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gatedProvider is the LLM provider of these tests: the fake provider
// behind gates. A request naming a gate (header E2e-Gate) is counted when
// it reaches the provider and held there until the gate opens or the proxy
// hangs up.
type gatedProvider struct {
	fake  *fakeprovider.Server
	mu    sync.Mutex
	gates map[string]*providerGate
}

type providerGate struct {
	// arrived gets a value for every request that reaches the provider;
	// its capacity is above any test's count, so the provider never waits.
	arrived chan struct{}
	n       atomic.Int64
	open    chan struct{}
	once    sync.Once
}

func (g *providerGate) release() { g.once.Do(func() { close(g.open) }) }

func (p *gatedProvider) gate(name string) *providerGate {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gates[name]
	if g == nil {
		g = &providerGate{arrived: make(chan struct{}, 4096), open: make(chan struct{})}
		p.gates[name] = g
	}
	return g
}

func (p *gatedProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if name := r.Header.Get("E2e-Gate"); name != "" {
		g := p.gate(name)
		g.n.Add(1)
		g.arrived <- struct{}{}
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
	}
	p.fake.ServeHTTP(w, r)
}

// accEnv is a Caracal home whose agent "claude" has a total budget, with
// the test pricebook, a gated provider and a proxy configuration for it.
type accEnv struct {
	*home
	prov   *gatedProvider
	cfg    string
	key    string // claude's key
	client *http.Client
}

// newAccEnv makes the home with claude's limit; extra is more environment
// for every command (CARACAL_DATABASE_URL for PostgreSQL).
func newAccEnv(t *testing.T, limit money.Amount, extra ...string) *accEnv {
	t.Helper()
	h := newHomeEnv(t, limit.String(), nil, append([]string{accLeaseTTLEnv}, extra...)...)
	prices := filepath.Join(h.dir, "prices.yaml")
	if err := os.WriteFile(prices, []byte(testPrices), 0o600); err != nil {
		t.Fatal(err)
	}
	h.run("pricebook", "import", prices)
	e := &accEnv{home: h, prov: &gatedProvider{
		fake:  fakeprovider.New(fakeprovider.Options{OpenAIKey: providerOpenAIKey}),
		gates: map[string]*providerGate{},
	}}
	up := httptest.NewServer(e.prov)
	t.Cleanup(up.Close)
	// Runs before up.Close: no handler is left waiting on a gate.
	t.Cleanup(func() {
		e.prov.mu.Lock()
		defer e.prov.mu.Unlock()
		for _, g := range e.prov.gates {
			g.release()
		}
	})
	e.cfg = filepath.Join(h.dir, "proxy.yaml")
	cfg := fmt.Sprintf("proxy:\n  providers:\n    - name: openai\n      base_url: %s\n      api_key_env: E2E_OPENAI_KEY\n", up.URL)
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.key = strings.Fields(h.key())[1]
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * burstSize, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	return e
}

// proxy starts `caracal proxy` on the home; it is killed when the test
// ends unless stopped before.
func (e *accEnv) proxy() *served {
	e.t.Helper()
	return launch(e.t, append(e.env(), "E2E_OPENAI_KEY="+providerOpenAIKey),
		"proxy", "--config", e.cfg, "--listen", "127.0.0.1:0", "--upstream-timeout", "50s")
}

// answer is what a client got for one request.
type accAnswer struct {
	status    int
	requestID string // Caracal-Request-Id
	body      string
	err       error // transport error, or a body cut short
}

// send posts accBody to the proxy at base with key and the headers hdr.
func (e *accEnv) send(base, key string, hdr map[string]string) accAnswer {
	req, err := http.NewRequest("POST", base+"/openai/v1/chat/completions", strings.NewReader(accBody))
	if err != nil {
		return accAnswer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return accAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := accAnswer{status: resp.StatusCode, requestID: resp.Header.Get("Caracal-Request-Id"), body: string(b), err: err}
	if a.err == nil && a.status == http.StatusOK && !strings.Contains(a.body, `"usage"`) {
		a.err = fmt.Errorf("200 without the provider's usage: %s", a.body)
	}
	return a
}

// burst sends n copies of accBody at once with key, the i-th to
// urls[i%len(urls)], and holds every request that reaches the provider
// until all n are decided — refused, or admitted and relayed. No admitted
// request settles, and so frees headroom, while admissions are still being
// decided: the number admitted depends only on the budget. It fails the
// test on any answer but 200 and 402, and returns the ledger request IDs
// of the admitted requests and how many were refused.
func (e *accEnv) burst(name, key string, urls []string, n int) (admitted []string, refused int) {
	e.t.Helper()
	g := e.prov.gate(name)
	answers := make(chan accAnswer, n)
	decided := make(chan struct{}, n) // refusals and failures
	for i := range n {
		go func() {
			a := e.send(urls[i%len(urls)], key, map[string]string{"E2e-Gate": name})
			if a.err != nil || a.status != http.StatusOK {
				decided <- struct{}{}
			}
			answers <- a
		}()
	}
	timeout := time.After(50 * time.Second)
	for got := 0; got < n; {
		select {
		case <-g.arrived:
			got++
		case <-decided:
			got++
		case <-timeout:
			e.t.Errorf("%s: only %d of %d requests decided (refused, or relayed to the provider) after 50s", name, got, n)
			got = n
		}
	}
	g.release()
	other := map[string]int{}
	for range n {
		a := <-answers
		switch {
		case a.err != nil:
			other[a.err.Error()]++
		case a.status == http.StatusOK:
			admitted = append(admitted, a.requestID)
		case a.status == http.StatusPaymentRequired && strings.Contains(a.body, "budget_exceeded"):
			refused++
		default:
			other[fmt.Sprintf("%d %s", a.status, a.body)]++
		}
	}
	if len(other) > 0 {
		e.t.Errorf("%s: answers other than 200 and 402 budget_exceeded: %v", name, other)
	}
	if relayed := int(g.n.Load()); relayed != len(admitted) {
		e.t.Errorf("%s: %d requests reached the provider, %d were answered 200", name, relayed, len(admitted))
	}
	return admitted, refused
}

// accEvent is a ledger event as `ledger query -o json` prints it.
type accEvent struct {
	Seq       int64        `json:"seq"`
	AgentName string       `json:"agent_name"`
	RequestID string       `json:"request_id"`
	Outcome   string       `json:"outcome"`
	Code      string       `json:"code"`
	Reason    string       `json:"reason"`
	Amount    money.Amount `json:"amount"`
}

func (e *accEnv) ledger() []accEvent {
	e.t.Helper()
	var evs []accEvent
	if err := json.Unmarshal([]byte(e.run("ledger", "query", "--oldest-first", "-o", "json", "--limit", "0")), &evs); err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// checkBurstLedger checks that the ledger's events of agent are exactly
// the burst's: one charged event of accCharge for each admitted request,
// and refused budget_exceeded denials whose reason names the binding
// budget's agent. skip events of agent came before the burst.
func (e *accEnv) checkBurstLedger(agent string, skip int, admitted []string, refused int, binding string) {
	e.t.Helper()
	want := map[string]bool{}
	for _, id := range admitted {
		if want[id] || id == "" {
			e.t.Fatalf("admitted request ID %q missing or repeated", id)
		}
		want[id] = true
	}
	var mine []accEvent
	for _, ev := range e.ledger() {
		if ev.AgentName == agent {
			mine = append(mine, ev)
		}
	}
	if len(mine) < skip {
		e.t.Fatalf("%d events of %s, want at least the %d before the burst", len(mine), agent, skip)
	}
	denied := 0
	for _, ev := range mine[skip:] {
		switch {
		case ev.Outcome == "charged" && want[ev.RequestID] && ev.Amount == accCharge():
			delete(want, ev.RequestID)
		case ev.Outcome == "denied" && ev.Code == "budget_exceeded" && strings.Contains(ev.Reason, fmt.Sprintf("agent %q", binding)):
			denied++
		default:
			e.t.Errorf("unexpected event %+v (each admitted request is charged %s once; refusals name %q's budget)", ev, accCharge(), binding)
		}
	}
	if len(want) != 0 || denied != refused {
		e.t.Errorf("%d admitted requests without their charge; %d denials in the ledger, %d refused", len(want), denied, refused)
	}
}

// accBudget is a row of `budget status -o json`.
type accBudget struct {
	Agent     string       `json:"agent"`
	Limit     money.Amount `json:"limit"`
	Spent     money.Amount `json:"spent"`
	Reserved  money.Amount `json:"reserved"`
	Remaining money.Amount `json:"remaining"`
}

// waitBudget waits until `budget status --agent of` shows owner's budget
// with spent, nothing reserved, and limit − spent remaining. Once the
// load is over the numbers must come out exact; they are polled only for
// as long as a lapsed lease may take to return to its budget.
func (e *accEnv) waitBudget(of, owner string, limit, spent money.Amount) {
	e.t.Helper()
	remaining, err := limit.Sub(spent)
	if err != nil {
		e.t.Fatal(err)
	}
	want := accBudget{Agent: owner, Limit: limit, Spent: spent, Remaining: remaining}
	deadline := time.Now().Add(2*accLeaseTTL + 10*time.Second)
	for {
		var rows []accBudget
		if err := json.Unmarshal([]byte(e.run("budget", "status", "--agent", of, "-o", "json")), &rows); err != nil {
			e.t.Fatal(err)
		}
		var got *accBudget
		for i := range rows {
			if rows[i].Agent == owner {
				got = &rows[i]
			}
		}
		if got != nil && *got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("budget status of %s: %+v, want %+v", of, rows, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exactLimit is a limit that fits exactly burstAdmits worst cases after
// spent: one nano-unit short of one more.
func exactLimit(t *testing.T, spent money.Amount) money.Amount {
	t.Helper()
	l, err := money.Sum(spent, amountTimes(t, accWorst(), burstAdmits+1), money.Amount(-1))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOverspendOneProxySQLite: one proxy on SQLite, 500 concurrent
// requests, a budget that fits exactly 137 worst cases: exactly 137 are
// admitted and charged, 363 refused, and the budget's remainder is exact.
func TestOverspendOneProxySQLite(t *testing.T) {
	limit := exactLimit(t, 0)
	e := newAccEnv(t, limit)
	p := e.proxy()
	admitted, refused := e.burst("sqlite", e.key, []string{p.url}, burstSize)
	if len(admitted) != burstAdmits || refused != burstSize-burstAdmits {
		t.Fatalf("admitted %d and refused %d of %d; want exactly %d admitted (worst case %s, limit %s)\n%s",
			len(admitted), refused, burstSize, burstAdmits, accWorst(), limit, procLog(p))
	}
	e.checkBurstLedger("claude", 0, admitted, refused, "claude")
	e.waitBudget("claude", "claude", limit, amountTimes(t, accCharge(), burstAdmits))
	p.stop()
}

// TestOverspendTwoProxiesPostgres: two proxies on one PostgreSQL database,
// 500 concurrent requests split between them: exactly 137 admitted in all.
func TestOverspendTwoProxiesPostgres(t *testing.T) {
	limit := exactLimit(t, 0)
	e := newAccEnv(t, limit, "CARACAL_DATABASE_URL="+pgtest.URL(t))
	a, b := e.proxy(), e.proxy()
	admitted, refused := e.burst("postgres", e.key, []string{a.url, b.url}, burstSize)
	if len(admitted) != burstAdmits || refused != burstSize-burstAdmits {
		t.Fatalf("admitted %d and refused %d of %d across two proxies; want exactly %d admitted (worst case %s, limit %s)\nproxy A:\n%s\nproxy B:\n%s",
			len(admitted), refused, burstSize, burstAdmits, accWorst(), limit, procLog(a), procLog(b))
	}
	e.checkBurstLedger("claude", 0, admitted, refused, "claude")
	e.waitBudget("claude", "claude", limit, amountTimes(t, accCharge(), burstAdmits))
	a.stop()
	b.stop()
}

// TestOverspendDelegationChain: the child of a delegation has a sub-budget
// as large as its parent's, but the parent has spent some of its own: the
// parent's budget binds, and of 500 concurrent calls by the child exactly
// the 137 its remainder fits are admitted (the child's own budget would
// have admitted 138).
func TestOverspendDelegationChain(t *testing.T) {
	const parentCalls = 3
	parentSpent := amountTimes(t, accCharge(), parentCalls)
	limit := exactLimit(t, parentSpent)
	if own := int(limit / accWorst()); own != burstAdmits+1 {
		t.Fatalf("the child's own budget fits %d worst cases; the test needs %d, one more than its parent's remainder", own, burstAdmits+1)
	}
	e := newAccEnv(t, limit)
	e.run("agent", "register", "--name", "sub", "--owner", "e2e@example.com")
	e.run("delegation", "create", "--parent", "claude", "--child", "sub", "--limit", limit.String(), "--window", "total")
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(e.run("agent", "key", "create", "--agent", "sub", "-o", "json")), &k); err != nil {
		t.Fatal(err)
	}
	p := e.proxy()
	for range parentCalls {
		if a := e.send(p.url, e.key, nil); a.err != nil || a.status != http.StatusOK {
			t.Fatalf("the parent's own call: %d %v %s", a.status, a.err, a.body)
		}
	}
	admitted, refused := e.burst("delegation", k.Key, []string{p.url}, burstSize)
	if len(admitted) != burstAdmits || refused != burstSize-burstAdmits {
		t.Fatalf("the child was admitted %d and refused %d of %d; want exactly %d admitted (worst case %s, parent's remainder %s)\n%s",
			len(admitted), refused, burstSize, burstAdmits, accWorst(), limit-parentSpent, procLog(p))
	}
	e.checkBurstLedger("sub", 0, admitted, refused, "claude")
	childSpent := amountTimes(t, accCharge(), burstAdmits)
	e.waitBudget("sub", "claude", limit, parentSpent+childSpent)
	e.waitBudget("sub", "sub", limit, childSpent)
	p.stop()
}

// procLog is the end of p's log without its one line per decision, for
// a failure message: what is left are the warnings and errors.
func procLog(p *served) string {
	var keep []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if !strings.Contains(l, "msg=decision") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-40):], "\n")
}
