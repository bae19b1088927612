package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// StatsStore is what the scrape-time collector reads. *sqlstore.Store
// satisfies it.
type StatsStore interface {
	OpenReservations(ctx context.Context) (int64, error)
	PendingEvents(ctx context.Context) (count int64, oldest time.Time, err error)
	LatestCheckpoint(ctx context.Context) (ledger.Checkpoint, error)
	ListPolicies(ctx context.Context, agentID string, includeInactive bool) ([]policy.Policy, error)
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
}

// Scrape-time reads are cached for statsTTL, so frequent scrapes (or
// several Prometheus servers) cost the store one round of queries per
// period; statsTimeout bounds one round.
const (
	statsTTL     = 5 * time.Second
	statsTimeout = 5 * time.Second
)

// storeCollector reads the ledger's gauges when scraped.
type storeCollector struct {
	s          StatsStore
	agentLabel bool
	now        func() time.Time

	up, open, pending, oldest, checkpoint, budget *prometheus.Desc

	mu   sync.Mutex
	at   time.Time
	snap snapshot
}

type budgetRow struct {
	policyID, agent, window, currency string
	ratio                             float64
}

type snapshot struct {
	ok                    bool
	open, pending, cpSize int64
	oldestAge             float64
	budgets               []budgetRow
}

func newStoreCollector(s StatsStore, agentLabel bool) *storeCollector {
	budgetLabels := []string{"policy", "window", "currency"}
	if agentLabel {
		budgetLabels = append(budgetLabels, "agent")
	}
	return &storeCollector{
		s: s, agentLabel: agentLabel, now: time.Now,
		up:         prometheus.NewDesc("caracal_store_up", "1 if the last scrape-time read of the store succeeded, else 0 (the store gauges are then absent).", nil, nil),
		open:       prometheus.NewDesc("caracal_reservations_open", "Reservations open in the store (all processes sharing it).", nil, nil),
		pending:    prometheus.NewDesc("caracal_integration_pending_events", "Ledger events waiting to be integrated into the Merkle log.", nil, nil),
		oldest:     prometheus.NewDesc("caracal_integration_oldest_pending_age_seconds", "Age of the oldest event waiting for integration; 0 when none waits.", nil, nil),
		checkpoint: prometheus.NewDesc("caracal_checkpoint_size", "Tree size (events) of the latest signed checkpoint; 0 before the first.", nil, nil),
		budget:     prometheus.NewDesc("caracal_budget_used_ratio", "Spent share of each active policy's limit in its current window (1 = exhausted).", budgetLabels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.open, c.pending, c.oldest, c.checkpoint, c.budget} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	if !s.ok {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.open))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.pending))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.oldestAge)
	ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(s.cpSize))
	for _, b := range s.budgets {
		labels := []string{b.policyID, b.window, b.currency}
		if c.agentLabel {
			labels = append(labels, b.agent)
		}
		ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, b.ratio, labels...)
	}
}

// read returns the cached snapshot, refreshing it when older than statsTTL.
// The lock is held across the refresh so concurrent scrapes share one.
func (c *storeCollector) read() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.at.IsZero() && now.Sub(c.at) < statsTTL {
		return c.snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	s, err := c.load(ctx, now)
	if err != nil {
		s = snapshot{}
	}
	c.snap, c.at = s, now
	return s
}

func (c *storeCollector) load(ctx context.Context, now time.Time) (snapshot, error) {
	var s snapshot
	var err error
	if s.open, err = c.s.OpenReservations(ctx); err != nil {
		return s, err
	}
	var oldest time.Time
	if s.pending, oldest, err = c.s.PendingEvents(ctx); err != nil {
		return s, err
	}
	if s.pending > 0 && !oldest.IsZero() {
		s.oldestAge = max(0, now.Sub(oldest).Seconds())
	}
	cp, err := c.s.LatestCheckpoint(ctx)
	switch {
	case err == nil:
		s.cpSize = cp.Size
	case !errors.Is(err, ledger.ErrNotFound):
		return s, err
	}
	if s.budgets, err = c.budgets(ctx, now); err != nil {
		return s, err
	}
	s.ok = true
	return s, nil
}

// budgets reads the usage of every active policy: one Usage read per agent
// that has one.
func (c *storeCollector) budgets(ctx context.Context, now time.Time) ([]budgetRow, error) {
	ps, err := c.s.ListPolicies(ctx, "", false)
	if err != nil {
		return nil, err
	}
	agents := map[string]bool{}
	var order []string
	for _, p := range ps {
		if !agents[p.AgentID] {
			agents[p.AgentID] = true
			order = append(order, p.AgentID)
		}
	}
	var out []budgetRow
	for _, id := range order {
		us, err := c.s.Usage(ctx, id, now)
		if err != nil {
			return nil, err
		}
		for _, u := range us {
			if u.Policy.AgentID != id {
				continue // an ancestor's policy: reported with its own agent
			}
			out = append(out, budgetRow{
				policyID: u.Policy.ID, agent: agentLabel(u.AgentName, id), window: string(u.Policy.Window),
				currency: u.Policy.Currency, ratio: ratio(u.Spent, u.Policy.Limit),
			})
		}
	}
	return out, nil
}

// ratio is spent/limit; a zero limit is exhausted by any spending.
func ratio(spent, limit money.Amount) float64 {
	if limit <= 0 {
		if spent > 0 {
			return 1
		}
		return 0
	}
	return float64(spent.Nanos()) / float64(limit.Nanos())
}
