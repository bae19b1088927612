package interpose_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/pgtest"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/postgres"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

func m(s string) money.Amount { return money.MustParse(s) }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is an engine over a fresh SQLite store with one agent.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *sqlstore.Store
	eng   *interpose.Engine
	clk   *clock
	agent policy.Agent
	logs  *bytes.Buffer
}

func newEnv(t *testing.T, mod func(*interpose.Options)) *env {
	t.Helper()
	s := storetest.OpenSQLite(t)
	ctx := context.Background()
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "agent-a", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)}
	logs := &bytes.Buffer{}
	o := interpose.Options{
		Store: s, Now: clk.Now, PriceCacheTTL: -1,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil)),
	}
	if mod != nil {
		mod(&o)
	}
	return &env{t: t, ctx: ctx, store: s, eng: interpose.New(o), clk: clk, agent: a, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) budget(limit string) policy.Policy {
	e.t.Helper()
	p, err := e.store.CreatePolicy(e.ctx, ledger.NewPolicy{AgentID: e.agent.ID, Limit: m(limit), Window: policy.WindowDaily})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) price(r policy.PriceRule) {
	e.t.Helper()
	if _, err := e.store.SetPrice(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) events() []ledger.Event {
	e.t.Helper()
	var out []ledger.Event
	if err := e.store.QueryEvents(e.ctx, ledger.EventFilter{}, func(ev ledger.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	mk := func(agentID string, expires *time.Time) string {
		t.Helper()
		secret, hash, prefix, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.CreateKey(e.ctx, agentID, hash, prefix, expires); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	good := mk(e.agent.ID, nil)
	past := e.clk.Now().Add(-time.Second)
	expired := mk(e.agent.ID, &past)
	future := e.clk.Now().Add(time.Hour)
	notYet := mk(e.agent.ID, &future)
	revoked := mk(e.agent.ID, nil)
	keys, err := e.store.ListKeys(e.ctx, e.agent.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(revoked, k.Prefix) {
			if _, err := e.store.RevokeKey(e.ctx, k.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	sus, err := e.store.CreateAgent(e.ctx, ledger.NewAgent{Name: "sleepy", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	suspendedKey := mk(sus.ID, nil)
	if _, err := e.store.SetAgentStatus(e.ctx, sus.ID, policy.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	unknown, _, _, _ := apikey.Generate()

	tests := []struct {
		name    string
		key     string
		wantErr error
		msg     string
	}{
		{"valid", good, nil, ""},
		{"valid until later", notYet, nil, ""},
		{"unknown", unknown, interpose.ErrUnknownKey, "unknown API key"},
		{"malformed", "crk_short", interpose.ErrUnknownKey, "unknown API key"},
		{"wrong scheme", "sk-" + good[4:], interpose.ErrUnknownKey, "unknown API key"},
		{"empty", "", interpose.ErrUnknownKey, "unknown API key"},
		{"one character changed", flipFirst(good), interpose.ErrUnknownKey, "unknown API key"},
		{"revoked", revoked, interpose.ErrKeyRevoked, "API key revoked"},
		{"expired", expired, interpose.ErrKeyExpired, "API key expired"},
		{"suspended agent", suspendedKey, interpose.ErrAgentSuspended, `agent "sleepy" is suspended`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := e.eng.Authenticate(e.ctx, tc.key)
			if tc.wantErr == nil {
				if err != nil || a.ID != e.agent.ID {
					t.Fatalf("Authenticate = %+v, %v; want agent %s", a, err, e.agent.ID)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || err.Error() != tc.msg {
				t.Fatalf("Authenticate error %v, want %q", err, tc.msg)
			}
		})
	}
}

// flipFirst changes the first secret character of a key.
func flipFirst(key string) string {
	c := byte('A')
	if key[4] == 'A' {
		c = 'B'
	}
	return key[:4] + string(c) + key[5:]
}

func TestGenerateKey(t *testing.T) {
	s1, h1, p1, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	s2, _, _, _ := apikey.Generate()
	if !strings.HasPrefix(s1, "crk_") || len(s1) != 47 || s1 == s2 || !strings.HasPrefix(s1, p1) || len(h1) != 32 {
		t.Fatalf("key %q prefix %q hash %x", s1, p1, h1)
	}
}

func TestQuote(t *testing.T) {
	e := newEnv(t, func(o *interpose.Options) { o.DefaultPrice = m("0.005") })
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("0.01")})
	e.price(policy.PriceRule{Resource: "mcp:fs/read_file", Currency: "USD", PerCall: m("0.001")})
	e.price(policy.PriceRule{Resource: "mcp:search/*", Currency: "EUR", PerCall: m("0.01"), PerUnit: &policy.PerUnit{Path: "count", Price: m("0.002")}})
	declared := &policy.PriceRule{Resource: "mcp:fs/read_file", Currency: "USD", PerCall: m("9")}
	declaredOther := &policy.PriceRule{Resource: "mcp:web/get", Currency: "USD", PerCall: m("0.3")}
	tests := []struct {
		name     string
		resource string
		args     string
		declared *policy.PriceRule
		want     interpose.Quote
	}{
		{"most specific rule", "mcp:fs/read_file", "", nil, interpose.Quote{Price: m("0.001"), Currency: "USD"}},
		{"glob rule", "mcp:fs/write_file", "", nil, interpose.Quote{Price: m("0.01"), Currency: "USD"}},
		{"per unit", "mcp:search/query", `{"count": 5}`, nil, interpose.Quote{Price: m("0.02"), Currency: "EUR"}},
		{"pricebook wins over declared", "mcp:fs/read_file", "", declared, interpose.Quote{Price: m("0.001"), Currency: "USD"}},
		{"declared when no rule", "mcp:web/get", "", declaredOther, interpose.Quote{Price: m("0.3"), Currency: "USD", Declared: true}},
		{"unpriced", "mcp:web/get", "", nil, interpose.Quote{Price: m("0.005"), Currency: "USD", Unpriced: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := e.eng.Quote(e.ctx, tc.resource, []byte(tc.args), tc.declared)
			if err != nil {
				t.Fatal(err)
			}
			if q.Price != tc.want.Price || q.Currency != tc.want.Currency || q.Unpriced != tc.want.Unpriced || q.Declared != tc.want.Declared {
				t.Fatalf("Quote = %+v, want %+v", q, tc.want)
			}
			if !tc.want.Unpriced && q.Rule == nil {
				t.Fatal("priced quote without its rule")
			}
		})
	}
}

func TestPriceCache(t *testing.T) {
	e := newEnv(t, func(o *interpose.Options) { o.PriceCacheTTL = time.Hour })
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("1")})
	q1, _ := e.eng.Quote(e.ctx, "mcp:fs/x", nil, nil)
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("2")})
	q2, _ := e.eng.Quote(e.ctx, "mcp:fs/x", nil, nil)
	e.eng.InvalidatePrices()
	q3, _ := e.eng.Quote(e.ctx, "mcp:fs/x", nil, nil)
	// The cache lives at most one second whatever the option says, so q2
	// may already be fresh; q1 and q3 may not be stale.
	if q1.Price != m("1") || q3.Price != m("2") || (q2.Price != m("1") && q2.Price != m("2")) {
		t.Fatalf("quotes %s %s %s", q1.Price, q2.Price, q3.Price)
	}
}

func TestBeginSettleRelease(t *testing.T) {
	e := newEnv(t, nil)
	p := e.budget("1.00")
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("0.25")})
	noErrors := false
	e.price(policy.PriceRule{Resource: "mcp:lenient/*", Currency: "USD", PerCall: m("0.10"), ChargeErrors: &noErrors})
	e.price(policy.PriceRule{Resource: "llm:openai/gpt-4o", Currency: "USD", InputPerMillion: m("2.50"), OutputPerMillion: m("10.00")})

	tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read", Operation: "tools/call"})
	if tk == nil || !d.Allow || tk.RequestID == "" || tk.Reserved != m("0.25") {
		t.Fatalf("Begin = %+v, %+v", tk, d)
	}
	ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{})
	if err != nil || ev.Amount != m("0.25") || ev.Outcome != policy.OutcomeCharged || ev.RequestID != tk.RequestID {
		t.Fatalf("Settle = %+v, %v", ev, err)
	}
	again, err := e.eng.Settle(e.ctx, tk, interpose.Result{Amount: new(m("0.5"))})
	if err != nil || again.ID != ev.ID {
		t.Fatalf("second Settle = %+v, %v; want the first event", again, err)
	}

	// A tool error under a rule that does not charge errors costs nothing.
	tk, _ = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:lenient/x", RequestID: "lenient-1"})
	if tk == nil || tk.RequestID != "lenient-1" {
		t.Fatalf("Begin with a request id = %+v", tk)
	}
	if ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{ToolError: true}); err != nil || ev.Amount != 0 || ev.Outcome != policy.OutcomeCharged {
		t.Fatalf("Settle tool error = %+v, %v", ev, err)
	}
	// A tool error under an ordinary rule is charged.
	tk, _ = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/fail"})
	if ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{ToolError: true}); err != nil || ev.Amount != m("0.25") {
		t.Fatalf("Settle charged tool error = %+v, %v", ev, err)
	}

	// An LLM call reserves a worst case and settles from its tokens.
	worst := m("0.30")
	tk, d = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "llm:openai/gpt-4o", Operation: "chat.completions", Reserve: &worst})
	if tk == nil || tk.Reserved != worst {
		t.Fatalf("Begin LLM = %+v, %+v", tk, d)
	}
	tokens := policy.Tokens{Input: 1000, Output: 500}
	ev, err = e.eng.Settle(e.ctx, tk, interpose.Result{Tokens: &tokens})
	// 1000 × 2.50/1M + 500 × 10/1M = 0.0025 + 0.005
	if err != nil || ev.Amount != m("0.0075") || ev.Tokens != tokens {
		t.Fatalf("Settle LLM = %+v, %v", ev, err)
	}

	// Release frees the budget; Unconfirmed charges the reservation.
	tk, _ = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read"})
	if ev, err := e.eng.Release(e.ctx, tk, "upstream refused"); err != nil || ev.Outcome != policy.OutcomeRefunded || ev.Reason != "upstream refused" {
		t.Fatalf("Release = %+v, %v", ev, err)
	}
	tk, _ = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read"})
	if ev, err := e.eng.Unconfirmed(e.ctx, tk, "client gone"); err != nil || ev.Outcome != policy.OutcomeUnconfirmed || ev.Amount != m("0.25") {
		t.Fatalf("Unconfirmed = %+v, %v", ev, err)
	}
	// Spent: 0.25 + 0 + 0.25 + 0.0075 + 0.25 = 0.7575; 0.25 more is too much.
	tk, d = e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read"})
	if tk != nil || d.Code != policy.CodeBudgetExceeded || d.PolicyID != p.ID {
		t.Fatalf("Begin over budget = %+v, %+v", tk, d)
	}
	evs := e.events()
	if last := evs[len(evs)-1]; last.Outcome != policy.OutcomeDenied || last.Code != policy.CodeBudgetExceeded {
		t.Fatalf("the denial is not in the ledger: %+v", last)
	}
}

func TestBeginDenials(t *testing.T) {
	t.Run("StrictRefusesUnpricedAndRecordsIt", func(t *testing.T) {
		e := newEnv(t, func(o *interpose.Options) { o.Strict = true })
		tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:web/get"})
		if tk != nil || d.Allow || d.Code != policy.CodeUnpriced || !strings.Contains(d.Reason, "mcp:web/get") {
			t.Fatalf("Begin = %+v, %+v", tk, d)
		}
		evs := e.events()
		if len(evs) != 1 || evs[0].Outcome != policy.OutcomeDenied || evs[0].Code != policy.CodeUnpriced || evs[0].AgentName != "agent-a" {
			t.Fatalf("events %+v", evs)
		}
	})
	t.Run("UnpricedChargesTheDefault", func(t *testing.T) {
		e := newEnv(t, func(o *interpose.Options) { o.DefaultPrice = m("0.01") })
		e.budget("10")
		tk, _ := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:web/get"})
		if tk == nil || !tk.Quote.Unpriced {
			t.Fatalf("Begin = %+v", tk)
		}
		ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{})
		if err != nil || !ev.Unpriced || ev.Amount != m("0.01") {
			t.Fatalf("Settle = %+v, %v", ev, err)
		}
	})
	t.Run("UnknownAgent", func(t *testing.T) {
		e := newEnv(t, nil)
		tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: "no-such-agent", Resource: "mcp:web/get"})
		if tk != nil || d.Code != policy.CodeUnknownAgent {
			t.Fatalf("Begin = %+v, %+v", tk, d)
		}
	})
	t.Run("Allowlist", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, err := e.store.CreatePolicy(e.ctx, ledger.NewPolicy{AgentID: e.agent.ID, Limit: m("10"), Window: policy.WindowDaily, Allow: []string{"mcp:fs/*"}}); err != nil {
			t.Fatal(err)
		}
		ok, err := e.eng.Allowlist(e.ctx, e.agent.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !ok("mcp:fs/read") || ok("mcp:web/get") {
			t.Fatal("allowlist does not follow the policy")
		}
		tk, d := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:web/get"})
		if tk != nil || d.Code != policy.CodeNotAllowed {
			t.Fatalf("Begin = %+v, %+v", tk, d)
		}
	})
}

func TestDo(t *testing.T) {
	e := newEnv(t, nil)
	e.budget("0.70")
	e.price(policy.PriceRule{Resource: "go:summarise", Currency: "USD", PerCall: m("0.20")})
	call := interpose.Call{AgentID: e.agent.ID, Resource: "go:summarise", Operation: "call"}
	ran := 0
	fn := func(context.Context) (interpose.Result, error) { ran++; return interpose.Result{}, nil }
	for i := 0; i < 2; i++ {
		if d, err := e.eng.Do(e.ctx, call, fn); err != nil || !d.Allow {
			t.Fatalf("Do %d = %+v, %v", i, d, err)
		}
	}
	// A failing function is released, not charged.
	boom := errors.New("boom")
	if _, err := e.eng.Do(e.ctx, call, func(context.Context) (interpose.Result, error) { return interpose.Result{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Do failing = %v, want boom", err)
	}
	// A panicking function is charged as unconfirmed and the panic goes on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		_, _ = e.eng.Do(e.ctx, call, func(context.Context) (interpose.Result, error) { panic("crash") })
	}()
	// 0.60 spent; 0.80 would exceed 0.70: denied without running.
	d, err := e.eng.Do(e.ctx, call, fn)
	if !errors.Is(err, interpose.ErrDenied) || d.Code != policy.CodeBudgetExceeded || ran != 2 {
		t.Fatalf("Do over budget = %+v, %v (ran %d)", d, err, ran)
	}
	var outcomes []policy.Outcome
	for _, ev := range e.events() {
		outcomes = append(outcomes, ev.Outcome)
	}
	want := []policy.Outcome{policy.OutcomeCharged, policy.OutcomeCharged, policy.OutcomeRefunded, policy.OutcomeUnconfirmed, policy.OutcomeDenied}
	if strings.Join(toStrings(outcomes), ",") != strings.Join(toStrings(want), ",") {
		t.Fatalf("outcomes %v, want %v", outcomes, want)
	}
}

func toStrings(o []policy.Outcome) []string {
	s := make([]string, len(o))
	for i, v := range o {
		s[i] = string(v)
	}
	return s
}

func TestSweepAndRun(t *testing.T) {
	e := newEnv(t, func(o *interpose.Options) {
		o.ReservationTTL = time.Minute
		o.SweepInterval = time.Millisecond
	})
	e.budget("1")
	e.price(policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("0.4")})
	tk, _ := e.eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read"})
	if tk == nil {
		t.Fatal("not admitted")
	}
	if n := e.eng.Sweep(e.ctx); n != 0 {
		t.Fatalf("sweep before expiry settled %d", n)
	}
	e.clk.Add(time.Minute)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error)
	go func() { done <- e.eng.Run(ctx) }()
	var r ledger.Reservation
	for i := 0; i < 1000; i++ {
		var err error
		if r, err = e.store.GetReservation(e.ctx, tk.RequestID); err != nil {
			t.Fatal(err)
		}
		if r.Status != "open" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if r.Status != "expired" {
		t.Fatalf("reservation %+v, want expired", r)
	}
	ev, err := e.eng.Settle(e.ctx, tk, interpose.Result{Amount: new(m("0"))})
	if err != nil || ev.Outcome != policy.OutcomeUnconfirmed || ev.Amount != m("0.4") {
		t.Fatalf("late Settle = %+v, %v; want the unconfirmed charge", ev, err)
	}
}

// failingStore fails or panics on demand, standing in for a broken ledger.
type failingStore struct {
	ledger.Store
	mode string // "error" or "panic"
}

func (f failingStore) Reserve(ctx context.Context, r ledger.ReserveRequest) (policy.Decision, error) {
	if f.mode == "panic" {
		panic("store exploded")
	}
	return policy.Decision{}, ledger.ErrUnavailable
}

func TestFailClosedOnStoreErrors(t *testing.T) {
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, nil)
			eng := interpose.New(interpose.Options{Store: failingStore{Store: e.store, mode: mode}, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: e.logs}, nil))})
			tk, d := eng.Begin(e.ctx, interpose.Call{AgentID: e.agent.ID, Resource: "mcp:fs/read"})
			if tk != nil || d.Allow || d.Code != policy.CodeUnavailable {
				t.Fatalf("Begin = %+v, %+v; want unavailable", tk, d)
			}
			if !strings.Contains(e.logs.String(), "call denied") {
				t.Fatalf("nothing logged: %q", e.logs.String())
			}
		})
	}
}

// TestFailClosedPostgresDown stops the PostgreSQL server under a running
// engine: calls are denied with code unavailable and nothing panics while
// it is down, a call admitted before the outage can be settled after it,
// and service resumes once the server is back.
func TestFailClosedPostgresDown(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, c.URL(t), postgres.Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "pg-agent", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: m("100"), Window: policy.WindowDaily}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: m("1")}); err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	eng := interpose.New(interpose.Options{Store: s, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil))})
	call := interpose.Call{AgentID: a.ID, Resource: "mcp:fs/read"}
	okFn := func(context.Context) (interpose.Result, error) { return interpose.Result{}, nil }

	if d, err := eng.Do(ctx, call, okFn); err != nil || !d.Allow {
		t.Fatalf("before the outage: %+v, %v", d, err)
	}
	inflight, d := eng.Begin(ctx, call)
	if inflight == nil {
		t.Fatalf("Begin before the outage: %+v", d)
	}

	c.Stop(t)
	// Callers keep calling while the store is down.
	var wg sync.WaitGroup
	decisions := make(chan policy.Decision, 40)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				d, _ := eng.Do(ctx, call, okFn)
				decisions <- d
			}
		}()
	}
	wg.Wait()
	close(decisions)
	for d := range decisions {
		if d.Allow || d.Code != policy.CodeUnavailable {
			t.Fatalf("while down: %+v, want unavailable", d)
		}
	}
	if _, err := eng.Settle(ctx, inflight, interpose.Result{}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Settle while down = %v, want ErrUnavailable", err)
	}

	c.Start(t)
	// The pool may hand out a connection that died with the server; it is
	// dropped on first use, so service resumes within a few calls.
	resumed := false
	for i := 0; i < 50 && !resumed; i++ {
		d, err := eng.Do(ctx, call, okFn)
		resumed = err == nil && d.Allow
		if !resumed {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !resumed {
		t.Fatal("service did not resume after the store came back")
	}
	ev, err := eng.Settle(ctx, inflight, interpose.Result{})
	if err != nil || ev.Outcome != policy.OutcomeCharged || ev.Amount != m("1") {
		t.Fatalf("Settle after the outage = %+v, %v", ev, err)
	}
	if !strings.Contains(logs.String(), "call denied") {
		t.Fatal("the outage was not logged")
	}
}
