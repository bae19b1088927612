package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

// TestSignKnownAnswer: the value was computed outside Go, with
// `printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac whsec_test`.
func TestSignKnownAnswer(t *testing.T) {
	got := Sign("whsec_test", time.Unix(1700000000, 0), []byte(`{"id":"x"}`))
	want := "t=1700000000,v1=80e8d098018f757aa814ab1abb924f35d304affa1d93d29611a54696207eb7c3"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(1700000000, 0)
	body := []byte(`{"id":"x"}`)
	good := Sign("s3cret", at, body)
	for _, tc := range []struct {
		name, secret, header string
		body                 []byte
		now                  time.Time
		ok                   bool
	}{
		{"valid", "s3cret", good, body, at.Add(time.Minute), true},
		{"second v1 valid", "s3cret", strings.Replace(good, ",v1=", ",v1=00,v1=", 1), body, at, true},
		{"body changed", "s3cret", good, []byte(`{"id":"y"}`), at, false},
		{"wrong secret", "other", good, body, at, false},
		{"timestamp changed", "s3cret", strings.Replace(good, "t=1700000000", "t=1700000001", 1), body, at, false},
		{"too old", "s3cret", good, body, at.Add(10 * time.Minute), false},
		{"malformed", "s3cret", "v1=abc", body, at, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.body, tc.now, 5*time.Minute)
			if (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestCrossed(t *testing.T) {
	ths := []int{50, 80, 100}
	for _, tc := range []struct {
		percent policy.Percent
		want    []int
	}{
		{"0.00", nil},
		{"49.99", nil},
		{"50.00", []int{50}},
		{"79.99", []int{50}},
		{"80.00", []int{50, 80}},
		{"99.99", []int{50, 80}},
		{"100.00", []int{50, 80, 100}},
		{"250.00", []int{50, 80, 100}},
		{"-1.00", nil},
		{"", nil},
		{"80", nil}, // not Percent's form: never guessed at
	} {
		if got := Crossed(tc.percent, ths); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Crossed(%q) = %v, want %v", tc.percent, got, tc.want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	lo := func(int64) int64 { return 0 }
	hi := func(n int64) int64 { return n - 1 }
	prev := time.Duration(0)
	for n := -1; n <= 100; n++ {
		a, b := Backoff(n, lo), Backoff(n, hi)
		if a <= 0 || b > maxBackoff || a > b {
			t.Fatalf("Backoff(%d) spans [%s, %s], want within (0, %s]", n, a, b, maxBackoff)
		}
		if a < prev {
			t.Fatalf("Backoff(%d) lower bound %s fell below the previous %s", n, a, prev)
		}
		prev = a
	}
	if got := Backoff(1, hi); got > time.Second {
		t.Errorf("first retry waits up to %s, want at most 1s", got)
	}
	if got := Backoff(100, lo); got != maxBackoff/2 {
		t.Errorf("late retries wait at least %s, want %s", got, maxBackoff/2)
	}
}

func TestWindowKey(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 34, 56, 0, time.UTC)
	day := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	rollStart := now.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		b    policy.Budget
		want string
	}{
		{"total", policy.Budget{Window: policy.WindowTotal}, "total"},
		{"calendar", policy.Budget{WindowType: policy.WindowCalendar, WindowStart: &day}, fmt.Sprint(day.UnixNano())},
		{"rolling hour", policy.Budget{WindowType: policy.WindowRolling, WindowStart: &rollStart, Span: time.Hour},
			fmt.Sprint(time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC).UnixNano())},
	} {
		if got := windowKey(tc.b, now); got != tc.want {
			t.Errorf("%s: windowKey = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// decodePayload reads a payload; percent_used is a JSON number, which
// policy.Percent does not decode, so it is read as its text.
func decodePayload(body []byte) (Payload, error) {
	var p struct {
		Payload
		PercentUsed json.Number `json:"percent_used"`
	}
	err := json.Unmarshal(body, &p)
	p.Payload.PercentUsed = policy.Percent(p.PercentUsed)
	return p.Payload, err
}

// receiver is a webhook that checks signatures and answers 503 to the
// first attempt of every alert, 200 after.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	tries  map[string]int
	got    []Payload // accepted, in order
	change chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := Verify(r.secret, req.Header.Get(SignatureHeader), body, time.Now(), time.Minute); err != nil {
		r.t.Errorf("delivery with a bad signature: %v", err)
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	p, err := decodePayload(body)
	if err != nil {
		r.t.Errorf("payload %s: %v", body, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries[p.ID]++
	if r.tries[p.ID] == 1 {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	r.got = append(r.got, p)
	select {
	case r.change <- struct{}{}:
	default:
	}
}

func (r *receiver) waitFor(n int) []Payload {
	r.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.change:
		case <-deadline:
			r.t.Fatalf("receiver has %d alerts, want %d: %+v", len(got), n, got)
		}
	}
}

// TestAlerterThresholdsAndDenials drives the engine with an Alerter as its
// observer: each threshold crossed is delivered once (after one refused
// attempt), a denial is delivered once, and nothing else arrives.
func TestAlerterThresholdsAndDenials(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	ag, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "agent-a", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "agent-b", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	var pol policy.Policy
	for _, id := range []string{ag.ID, other.ID} {
		p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: id, Limit: money.MustParse("10"), Window: policy.WindowDaily})
		if err != nil {
			t.Fatal(err)
		}
		if id == ag.ID {
			pol = p
		}
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: money.MustParse("2.5")}); err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{t: t, secret: "s3cret", tries: map[string]int{}, change: make(chan struct{}, 1)}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	al := New(Options{
		Store: s, Poll: 20 * time.Millisecond,
		Webhooks: []Webhook{{URL: srv.URL, Secret: "s3cret", Thresholds: []int{50, 80, 100}, Denied: true, Agents: []string{"agent-a"}}},
	})
	eng := interpose.New(interpose.Options{Store: s, Observer: al, PriceCacheTTL: -1})
	rctx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- al.Run(rctx) }()

	call := func(agentID string) bool {
		tk, _ := eng.Begin(ctx, interpose.Call{AgentID: agentID, Resource: "mcp:fs/read", Operation: "tools/call"})
		if tk == nil {
			return false
		}
		if _, err := eng.Settle(ctx, tk, interpose.Result{}); err != nil {
			t.Fatal(err)
		}
		return true
	}
	// 25%, 50%, 75%, 100%, then a denial. agent-b is not watched.
	for i := range 5 {
		if ok := call(ag.ID); ok != (i < 4) {
			t.Fatalf("call %d admitted=%v", i+1, ok)
		}
		call(other.ID)
	}
	got := rcv.waitFor(4)
	// The receiver answered 200; the outbox row is marked just after.
	for _, p := range got {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if a, err := s.GetAlert(ctx, p.ID); err == nil && a.DeliveredAt != nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("alert %s accepted but not marked delivered: %+v, %v", p.ID, a, err)
			}
		}
	}
	cancel()
	<-runDone

	var summary []string
	for _, p := range got {
		summary = append(summary, fmt.Sprintf("%s/%d/%s", p.Kind, p.Threshold, p.Code))
		if p.AgentName != "agent-a" || p.AgentID != ag.ID || p.PolicyID != pol.ID || p.Limit == nil || p.Limit.String() != "10.00" || p.Currency != "USD" {
			t.Errorf("payload %+v", p)
		}
	}
	slices.Sort(summary)
	if want := "[denied/0/budget_exceeded threshold/100/ threshold/50/ threshold/80/]"; fmt.Sprint(summary) != want {
		t.Errorf("alerts = %v, want %s", summary, want)
	}
	for _, p := range got {
		// The figures are those the check read, possibly a charge or a
		// reservation later than the one that crossed the threshold.
		if p.Kind == KindThreshold {
			used, err := p.Spent.Add(*p.Reserved)
			var x money.Exact
			ferr := x.AddProduct(int64(money.MustParse("10")), int64(p.Threshold))
			floor, qerr := x.Quo(100, money.RoundUp)
			ferr = errors.Join(ferr, qerr)
			if err != nil || ferr != nil || !slices.Contains(Crossed(p.PercentUsed, []int{p.Threshold}), p.Threshold) || used < floor {
				t.Errorf("%d%% alert: percent %s, spent %s, reserved %s", p.Threshold, p.PercentUsed, p.Spent, p.Reserved)
			}
		}
		a, err := s.GetAlert(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if a.DeliveredAt == nil || a.Attempts != 1 {
			t.Errorf("outbox row %s: delivered %v after %d failed attempts", p.ID, a.DeliveredAt, a.Attempts)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, n := range rcv.tries {
		if n != 2 {
			t.Errorf("alert %s reached the receiver %d times, want 2 (one 503, one 200)", id, n)
		}
	}
	if len(rcv.tries) != 4 {
		t.Errorf("receiver saw %d alert ids, want 4", len(rcv.tries))
	}
}

// TestTwoSendersDeliverEachAlertOnce runs two Alerters (two lease owners,
// as two processes would be) over one outbox: each alert reaches the
// receiver once.
func TestTwoSendersDeliverEachAlertOnce(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		all  = make(chan struct{})
	)
	const n = 30
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		p, err := decodePayload(body)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		defer mu.Unlock()
		seen[p.ID]++
		if len(seen) == n && seen[p.ID] == 1 {
			close(all)
		}
	}))
	defer srv.Close()
	hooks := []Webhook{{URL: srv.URL, Secret: "k", Denied: true}}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		a := New(Options{Store: s, Webhooks: hooks, Poll: 10 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(rctx)
		}()
	}
	for i := range n {
		id := AlertID(fmt.Sprint("k", i))
		if _, err := s.EnqueueAlert(ctx, ledger.Alert{ID: id, Key: fmt.Sprint("k", i), Webhook: srv.URL, Payload: []byte(`{"id":"` + id + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every alert arrived")
	}
	// Every row is marked before the senders stop, so none is sent again.
	for i := range n {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if a, err := s.GetAlert(ctx, AlertID(fmt.Sprint("k", i))); err == nil && a.DeliveredAt != nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("alert %d not marked delivered", i)
			}
		}
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("alert %s delivered %d times", id, c)
		}
	}
}

// TestAlerterFlushesOnStop: a charge observed just before the process
// stops still has its alert enqueued and delivered by Run's last round.
func TestAlerterFlushesOnStop(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenSQLite(t)
	ag, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "agent-a", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: ag.ID, Limit: money.MustParse("1"), Window: policy.WindowTotal}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Reserve(ctx, ledger.ReserveRequest{RequestID: "r1", AgentID: ag.ID, Resource: "mcp:x/y", Operation: "tools/call", Amount: money.MustParse("0.6"), Currency: "USD", TTL: time.Minute}); err != nil || !d.Allow {
		t.Fatalf("reserve: %+v %v", d, err)
	}
	if _, err := s.Settle(ctx, ledger.SettleRequest{RequestID: "r1", Amount: money.MustParse("0.6"), Outcome: policy.OutcomeCharged}); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []Payload
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		p, err := decodePayload(body)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer srv.Close()
	// Polling never comes round: only the last round can deliver.
	a := New(Options{Store: s, Poll: time.Hour, Webhooks: []Webhook{{URL: srv.URL, Secret: "k", Thresholds: []int{50}}}})
	a.Observe(ctx, interpose.Record{Outcome: interpose.Settled, Code: "charged", AgentID: ag.ID, RequestID: "r1"})
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Run(stopped); err == nil {
		t.Error("Run on an ended context returned nil")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Threshold != 50 || got[0].PercentUsed != "60.00" {
		t.Fatalf("delivered %+v, want the 50%% alert", got)
	}
	if al, err := s.GetAlert(ctx, got[0].ID); err != nil || al.DeliveredAt == nil {
		t.Errorf("outbox row %+v, %v: want delivered", al, err)
	}
}
