package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/mcp"
)

// MetricsOptions configure Metrics.
type MetricsOptions struct {
	// NoAgentLabel drops the agent label from the charged and budget
	// metrics, for deployments with many agents.
	NoAgentLabel bool
	// Store, if set, is read at scrape time for the ledger gauges
	// (reservations, integration queue, checkpoint, budgets).
	Store StatsStore
	// Process adds the Go runtime and process collectors. Tests leave it
	// off so that their scrapes hold only Caracal's metrics.
	Process bool
}

// Metrics holds Caracal's Prometheus metrics in a registry of its own. It
// is an interpose.Observer (decisions) and an mcp.Monitor (upstreams and
// sessions).
type Metrics struct {
	Registry *prometheus.Registry

	agentLabel bool

	decisions        *prometheus.CounterVec
	charged          *prometheus.CounterVec
	chargedNanos     *prometheus.CounterVec
	decisionSeconds  *prometheus.HistogramVec
	upstreamSeconds  *prometheus.HistogramVec
	expired          prometheus.Counter
	upstreamUp       *prometheus.GaugeVec
	upstreamRestarts *prometheus.CounterVec

	stdioSessions atomic.Int64
	mu            sync.Mutex
	httpSessions  func() int
	upstreams     map[string]bool // name → up
}

var (
	_ interpose.Observer = (*Metrics)(nil)
	_ mcp.Monitor        = (*Metrics)(nil)
)

// Histogram buckets, in seconds. A decision is a store round trip or two;
// an upstream call is a tool or a model answering, up to minutes.
var (
	decisionBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	upstreamBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// NewMetrics returns the metrics registered in a new private registry.
func NewMetrics(o MetricsOptions) *Metrics {
	agentLabels := []string{"currency"}
	if !o.NoAgentLabel {
		agentLabels = append(agentLabels, "agent")
	}
	m := &Metrics{
		Registry:   prometheus.NewRegistry(),
		agentLabel: !o.NoAgentLabel,
		upstreams:  map[string]bool{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caracal_decisions_total",
			Help: "Decisions taken by the engine, by mode (mcp, llm, http), outcome (allowed, denied, settled, released, unconfirmed) and code.",
		}, []string{"kind", "outcome", "code"}),
		charged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caracal_charged_total",
			Help: "Amount charged (settled and unconfirmed), in currency units.",
		}, agentLabels),
		chargedNanos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caracal_charged_nanos_total",
			Help: "Amount charged (settled and unconfirmed), in billionths of a currency unit; exact up to 2^53.",
		}, agentLabels),
		decisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caracal_decision_duration_seconds",
			Help:    "Time the engine took to decide or record a decision, by mode and outcome.",
			Buckets: decisionBuckets,
		}, []string{"kind", "outcome"}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caracal_upstream_duration_seconds",
			Help:    "Time from admitting a call to settling it (the upstream's answer), by mode and outcome.",
			Buckets: upstreamBuckets,
		}, []string{"kind", "outcome"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "caracal_reservations_expired_total",
			Help: "Reservations the expiry sweep of this process settled as unconfirmed.",
		}),
		upstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "caracal_upstream_up",
			Help: "1 while a stdio MCP upstream's latest process is running, 0 after it exited until it is restarted.",
		}, []string{"upstream"}),
		upstreamRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caracal_upstream_restarts_total",
			Help: "Restarts of stdio MCP upstream processes after an unexpected exit.",
		}, []string{"upstream"}),
	}
	m.Registry.MustRegister(m.decisions, m.charged, m.chargedNanos, m.decisionSeconds, m.upstreamSeconds,
		m.expired, m.upstreamUp, m.upstreamRestarts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "caracal_mcp_sessions_active",
			Help: "Open MCP sessions (stdio and Streamable HTTP).",
		}, m.sessions))
	if o.Store != nil {
		m.Registry.MustRegister(newStoreCollector(o.Store, !o.NoAgentLabel))
	}
	if o.Process {
		m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Observe implements interpose.Observer.
func (m *Metrics) Observe(_ context.Context, r interpose.Record) {
	if r.Code == interpose.CodeExpired {
		m.expired.Add(float64(r.Count))
		return
	}
	m.decisions.WithLabelValues(r.Kind, r.Outcome, r.Code).Inc()
	m.decisionSeconds.WithLabelValues(r.Kind, r.Outcome).Observe(r.Duration.Seconds())
	if r.Outcome == interpose.Settled || r.Outcome == interpose.Unconfirmed {
		if r.Upstream > 0 {
			m.upstreamSeconds.WithLabelValues(r.Kind, r.Outcome).Observe(r.Upstream.Seconds())
		}
		if r.Code != interpose.CodeError && r.Amount > 0 {
			labels := []string{r.Currency}
			if m.agentLabel {
				labels = append(labels, agentLabel(r.AgentName, r.AgentID))
			}
			m.charged.WithLabelValues(labels...).Add(units(r.Amount))
			m.chargedNanos.WithLabelValues(labels...).Add(float64(r.Amount.Nanos()))
		}
	}
}

// units is an amount in currency units, as Prometheus's float.
func units(a money.Amount) float64 {
	return float64(a.Nanos()) / money.Scale
}

// agentLabel is the agent's name, else its ID.
func agentLabel(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// UpstreamStarted implements mcp.Monitor.
func (m *Metrics) UpstreamStarted(name string) { m.setUp(name, true) }

// UpstreamDown implements mcp.Monitor.
func (m *Metrics) UpstreamDown(name string) { m.setUp(name, false) }

// UpstreamRestarted implements mcp.Monitor.
func (m *Metrics) UpstreamRestarted(name string) {
	m.upstreamRestarts.WithLabelValues(name).Inc()
	m.setUp(name, true)
}

func (m *Metrics) setUp(name string, up bool) {
	m.mu.Lock()
	m.upstreams[name] = up
	m.mu.Unlock()
	v := 0.0
	if up {
		v = 1
	}
	m.upstreamUp.WithLabelValues(name).Set(v)
}

// SessionOpened implements mcp.Monitor.
func (m *Metrics) SessionOpened() { m.stdioSessions.Add(1) }

// SessionClosed implements mcp.Monitor.
func (m *Metrics) SessionClosed() { m.stdioSessions.Add(-1) }

// CountHTTPSessions makes caracal_mcp_sessions_active include n(), the
// HTTP front's open sessions.
func (m *Metrics) CountHTTPSessions(n func() int) {
	m.mu.Lock()
	m.httpSessions = n
	m.mu.Unlock()
}

func (m *Metrics) sessions() float64 {
	m.mu.Lock()
	n := m.httpSessions
	m.mu.Unlock()
	total := m.stdioSessions.Load()
	if n != nil {
		total += int64(n())
	}
	return float64(total)
}

// ErrUpstreamsNotStarted is UpstreamsReady's error before the stdio
// session has started its upstreams.
var ErrUpstreamsNotStarted = errors.New("upstreams not started")

// UpstreamsReady is a readiness check for the stdio front: the session has
// started its upstreams and none of the stdio ones is down.
func (m *Metrics) UpstreamsReady(context.Context) error {
	if m.stdioSessions.Load() == 0 {
		return ErrUpstreamsNotStarted
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var down []string
	for name, up := range m.upstreams {
		if !up {
			down = append(down, name)
		}
	}
	if len(down) > 0 {
		sort.Strings(down)
		return fmt.Errorf("upstreams down: %s", strings.Join(down, ", "))
	}
	return nil
}
