package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/internal/telemetry"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/ledger/storetest"
	"github.com/caracal-dev/caracal/policy"
)

// scrape GETs path from h and returns the status and body.
func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rr.Body)
	return rr.Code, string(b)
}

// wantLines checks that every line is in the exposition text, exactly.
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("missing line %q", l)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}

func noLinePrefix(t *testing.T, text, prefix string) {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			t.Errorf("unexpected line %q", l)
		}
	}
}

type fixture struct {
	ctx   context.Context
	store *sqlstore.Store
	eng   *interpose.Engine
	m     *telemetry.Metrics
	agent policy.Agent
	pol   policy.Policy
}

func newFixture(t *testing.T, o telemetry.MetricsOptions) *fixture {
	t.Helper()
	s := storetest.OpenSQLite(t)
	ctx := context.Background()
	a, err := s.CreateAgent(ctx, ledger.NewAgent{Name: "bot", Owner: "tests"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.CreatePolicy(ctx, ledger.NewPolicy{AgentID: a.ID, Limit: money.MustParse("5"), Window: policy.WindowTotal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPrice(ctx, policy.PriceRule{Resource: "mcp:fs/*", Currency: "USD", PerCall: money.MustParse("1.5")}); err != nil {
		t.Fatal(err)
	}
	o.Store = s
	m := telemetry.NewMetrics(o)
	eng := interpose.New(interpose.Options{Store: s, PriceCacheTTL: -1, Observer: m})
	return &fixture{ctx: ctx, store: s, eng: eng, m: m, agent: a, pol: p}
}

// TestMetricsAfterKnownDecisions runs two settled calls, a released one, an
// open one and a denial, then scrapes: every count and amount is exact.
func TestMetricsAfterKnownDecisions(t *testing.T) {
	f := newFixture(t, telemetry.MetricsOptions{})
	call := interpose.Call{AgentID: f.agent.ID, Resource: "mcp:fs/read", Operation: "tools/call"}
	for range 2 {
		tk, d := f.eng.Begin(f.ctx, call)
		if tk == nil {
			t.Fatalf("denied: %+v", d)
		}
		if _, err := f.eng.Settle(f.ctx, tk, interpose.Result{}); err != nil {
			t.Fatal(err)
		}
	}
	tk, _ := f.eng.Begin(f.ctx, call) // 3 spent + 1.5 reserved of 5: the next is denied
	if tk == nil {
		t.Fatal("third call denied")
	}
	if tk2, _ := f.eng.Begin(f.ctx, call); tk2 != nil {
		t.Fatal("over-budget call admitted")
	}
	h := telemetry.Handler(nil, f.m.Registry, nil)
	code, text := scrape(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	wantLines(t, text,
		`caracal_decisions_total{code="allowed",kind="mcp",outcome="allowed"} 3`,
		`caracal_decisions_total{code="charged",kind="mcp",outcome="settled"} 2`,
		`caracal_decisions_total{code="budget_exceeded",kind="mcp",outcome="denied"} 1`,
		`caracal_charged_total{agent="bot",currency="USD"} 3`,
		`caracal_charged_nanos_total{agent="bot",currency="USD"} 3e+09`,
		`caracal_decision_duration_seconds_count{kind="mcp",outcome="allowed"} 3`,
		`caracal_upstream_duration_seconds_count{kind="mcp",outcome="settled"} 2`,
		`caracal_reservations_open 1`,
		`caracal_store_up 1`,
		`caracal_checkpoint_size 0`,
		// 2 settled + 1 denial are events; a reservation is not.
		`caracal_integration_pending_events 3`,
		`caracal_budget_used_ratio{agent="bot",currency="USD",policy="`+f.pol.ID+`",window="total"} 0.6`,
		`caracal_mcp_sessions_active 0`,
	)
	noLinePrefix(t, text, "go_goroutines") // no process collectors unless asked

	if _, err := f.eng.Release(f.ctx, tk, "never ran"); err != nil {
		t.Fatal(err)
	}
	_, text = scrape(t, h, "/metrics")
	wantLines(t, text,
		`caracal_decisions_total{code="refunded",kind="mcp",outcome="released"} 1`,
		`caracal_charged_total{agent="bot",currency="USD"} 3`,
	)
}

// TestMetricsWithoutAgentLabel: metrics.agent_label false drops the label.
func TestMetricsWithoutAgentLabel(t *testing.T) {
	f := newFixture(t, telemetry.MetricsOptions{NoAgentLabel: true})
	tk, _ := f.eng.Begin(f.ctx, interpose.Call{AgentID: f.agent.ID, Resource: "mcp:fs/read"})
	if _, err := f.eng.Unconfirmed(f.ctx, tk, "lost"); err != nil {
		t.Fatal(err)
	}
	_, text := scrape(t, telemetry.Handler(nil, f.m.Registry, nil), "/metrics")
	wantLines(t, text,
		`caracal_decisions_total{code="unconfirmed",kind="mcp",outcome="unconfirmed"} 1`,
		`caracal_charged_total{currency="USD"} 1.5`,
		`caracal_budget_used_ratio{currency="USD",policy="`+f.pol.ID+`",window="total"} 0.3`,
	)
	if strings.Contains(text, `agent="`) {
		t.Errorf("agent label present:\n%s", text)
	}
}

// TestMetricsUpstreamsAndSessions covers the mcp.Monitor side.
func TestMetricsUpstreamsAndSessions(t *testing.T) {
	m := telemetry.NewMetrics(telemetry.MetricsOptions{})
	ctx := context.Background()
	if err := m.UpstreamsReady(ctx); !errors.Is(err, telemetry.ErrUpstreamsNotStarted) {
		t.Fatalf("ready before the session: %v", err)
	}
	m.UpstreamStarted("fs")
	m.SessionOpened()
	if err := m.UpstreamsReady(ctx); err != nil {
		t.Fatal(err)
	}
	m.UpstreamDown("fs")
	if err := m.UpstreamsReady(ctx); err == nil {
		t.Fatal("ready with an upstream down")
	}
	h := telemetry.Handler(nil, m.Registry, nil)
	_, text := scrape(t, h, "/metrics")
	wantLines(t, text, `caracal_upstream_up{upstream="fs"} 0`)
	m.UpstreamRestarted("fs")
	m.CountHTTPSessions(func() int { return 2 })
	_, text = scrape(t, h, "/metrics")
	wantLines(t, text,
		`caracal_upstream_up{upstream="fs"} 1`,
		`caracal_upstream_restarts_total{upstream="fs"} 1`,
		`caracal_mcp_sessions_active 3`,
	)
	noLinePrefix(t, text, "caracal_store_up") // no store, no store gauges
	if err := m.UpstreamsReady(ctx); err != nil {
		t.Fatal(err)
	}
	m.Observe(ctx, interpose.Record{Outcome: interpose.Unconfirmed, Code: interpose.CodeExpired, Count: 4})
	_, text = scrape(t, h, "/metrics")
	wantLines(t, text, `caracal_reservations_expired_total 4`)
	noLinePrefix(t, text, "caracal_decisions_total")
}

// TestMetricsStoreDown: a scrape while the store fails still answers,
// with caracal_store_up 0 and no stale gauges.
func TestMetricsStoreDown(t *testing.T) {
	f := newFixture(t, telemetry.MetricsOptions{})
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	code, text := scrape(t, telemetry.Handler(nil, f.m.Registry, nil), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	wantLines(t, text, `caracal_store_up 0`)
	noLinePrefix(t, text, "caracal_reservations_open")
}
