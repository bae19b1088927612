// Package alerts sends budget alerts to webhooks. An Alerter is an
// interpose.Observer: after each charge it reads the agent's chain's
// budgets (Store.Usage, policy.PolicyUsage.Budget) and enqueues one alert
// per (webhook, policy, window start, threshold) crossed, and one per
// denied call, into the store's durable outbox; its delivery loop POSTs
// them, signed, at least once. See docs/operations.md, "Alerts by webhook".
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Webhook is one entry of the `alerts` configuration.
type Webhook struct {
	URL string `json:"url"`
	// Secret signs every delivery; SecretEnv names the environment
	// variable holding it instead. Neither is ever printed.
	Secret    string `json:"-"`
	SecretEnv string `json:"secret_env,omitempty"`
	// Thresholds are whole percents of a policy's limit, ascending.
	Thresholds []int `json:"thresholds,omitempty"`
	// Denied sends an alert for every denied call.
	Denied bool `json:"denied,omitempty"`
	// Agents limits the webhook to these agents (names or IDs); empty
	// means every agent.
	Agents []string `json:"agents,omitempty"`
}

// matches reports whether the webhook covers the agent.
func (w Webhook) matches(id, name string) bool {
	return len(w.Agents) == 0 || slices.Contains(w.Agents, id) || (name != "" && slices.Contains(w.Agents, name))
}

// Alert kinds.
const (
	KindThreshold = "threshold"
	KindDenied    = "denied"
)

// Payload is the JSON body of an alert. Budget fields are absent from a
// denial that no policy refused (an unknown agent, an unpriced resource).
type Payload struct {
	// ID is the same on every delivery of the alert: receivers dedupe by it.
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
	// AgentID and AgentName are the policy's agent for a threshold alert,
	// the calling agent for a denial.
	AgentID     string            `json:"agent_id"`
	AgentName   string            `json:"agent_name"`
	PolicyID    string            `json:"policy_id,omitempty"`
	Window      policy.Window     `json:"window,omitempty"`
	WindowType  policy.WindowType `json:"window_type,omitempty"`
	WindowStart *time.Time        `json:"window_start,omitempty"`
	Spent       *money.Amount     `json:"spent,omitempty"`
	Reserved    *money.Amount     `json:"reserved,omitempty"`
	Limit       *money.Amount     `json:"limit,omitempty"`
	Currency    string            `json:"currency,omitempty"`
	PercentUsed policy.Percent    `json:"percent_used,omitempty"`
	Threshold   int               `json:"threshold,omitempty"`
	// Denials only.
	Code      string `json:"code,omitempty"`
	Reason    string `json:"reason,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Resource  string `json:"resource,omitempty"`
}

// Store is what alerts needs of a ledger.Store.
type Store interface {
	Usage(ctx context.Context, agentID string, now time.Time) ([]policy.PolicyUsage, error)
	ledger.Alerts
}

// Options configure New.
type Options struct {
	Store    Store
	Webhooks []Webhook
	Logger   *slog.Logger
	// Client sends deliveries; nil means one with a 10 s timeout.
	Client *http.Client
	// Poll is how often the outbox is read for alerts due, besides right
	// after an enqueue; 0 means 5 s.
	Poll time.Duration
	// Lease is how long a claimed alert is this process's to send; 0
	// means 1 minute. It should exceed five times the client's timeout
	// (a claim's batch, see claimBatch).
	Lease time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// maxPending bounds the checks waiting for the worker. Past it a check is
// dropped: thresholds are checked again at the agent's next charge, so
// only a denial alert can be lost, and then with a warning.
const maxPending = 10000

// Alerter observes decisions, enqueues alerts and delivers them.
type Alerter struct {
	o     Options
	owner string
	log   *slog.Logger

	mu      sync.Mutex
	agents  map[string]bool    // agents whose budgets need a check
	denials []interpose.Record // denials to enqueue
	work    chan struct{}      // wakes the worker
	send    chan struct{}      // wakes the delivery loop
}

var _ interpose.Observer = (*Alerter)(nil)

// New returns an Alerter; Run must run for it to enqueue and deliver.
func New(o Options) *Alerter {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	return &Alerter{
		o: o, log: o.Logger, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8]),
		agents: map[string]bool{}, work: make(chan struct{}, 1), send: make(chan struct{}, 1),
	}
}

// Observe implements interpose.Observer. It only notes what to check, so
// the decision's caller never waits for the store: the worker in Run
// reads the budgets and writes the outbox.
func (a *Alerter) Observe(_ context.Context, r interpose.Record) {
	switch {
	case r.AgentID == "":
		// The expiry sweep's record names no agent; its charges are
		// checked at the agent's next charge.
		return
	case r.Outcome == interpose.Settled || r.Outcome == interpose.Unconfirmed:
		if r.Code == interpose.CodeError {
			return
		}
		a.mu.Lock()
		if len(a.agents) < maxPending {
			a.agents[r.AgentID] = true
		}
		a.mu.Unlock()
	case r.Outcome == interpose.Denied:
		if !slices.ContainsFunc(a.o.Webhooks, func(w Webhook) bool { return w.Denied }) {
			return
		}
		a.mu.Lock()
		full := len(a.denials) >= maxPending
		if !full {
			r.Err = nil
			a.denials = append(a.denials, r)
		}
		a.mu.Unlock()
		if full {
			a.log.Warn("alerts: too many denials waiting; this one sends no alert", "request_id", r.RequestID)
		}
	default:
		return
	}
	select {
	case a.work <- struct{}{}:
	default:
	}
}

// Run enqueues and delivers alerts until ctx ends, then enqueues what is
// still waiting and makes one last delivery round (for up to 5 s each):
// a short-lived process, such as `caracal mcp` for one host session,
// sends its alerts before it exits. What is still undelivered stays in
// the outbox for the next process.
func (a *Alerter) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.deliverLoop(ctx)
	}()
	for {
		select {
		case <-a.work:
			// A pass is not cut short by ctx: what it took from the
			// pending set would be lost. It is bounded instead.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.process(pctx)
			cancel()
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.process(fctx)
			cancel()
			<-done
			fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.deliverDue(fctx)
			cancel()
			return ctx.Err()
		}
	}
}

// process takes every waiting check and denial and enqueues their alerts.
func (a *Alerter) process(ctx context.Context) {
	a.mu.Lock()
	agents, denials := a.agents, a.denials
	a.agents, a.denials = map[string]bool{}, nil
	a.mu.Unlock()
	for id := range agents {
		if err := a.checkAgent(ctx, id); err != nil {
			a.log.WarnContext(ctx, "alerts: budget check failed; the next charge checks again", "agent_id", id, "err", err)
		}
	}
	for _, r := range denials {
		if err := a.enqueueDenied(ctx, r); err != nil {
			a.log.WarnContext(ctx, "alerts: could not enqueue a denial alert", "request_id", r.RequestID, "err", err)
		}
	}
}

// checkAgent enqueues the threshold alerts of every policy on the agent's
// chain that has crossed a threshold. The check is by level, not by edge:
// a threshold already passed yields the same dedupe key again, which the
// outbox refuses, so a check missed or repeated changes nothing.
func (a *Alerter) checkAgent(ctx context.Context, agentID string) error {
	now := a.o.Now()
	pus, err := a.o.Store.Usage(ctx, agentID, now)
	if err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	var errs []error
	for _, pu := range pus {
		b, err := pu.Budget(now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, w := range a.o.Webhooks {
			if !w.matches(b.AgentID, pu.AgentName) {
				continue
			}
			for _, th := range Crossed(b.PercentUsed, w.Thresholds) {
				key := fmt.Sprintf("threshold|%s|%s|%s|%d", w.URL, b.PolicyID, windowKey(b, now), th)
				p := budgetPayload(b)
				p.Kind, p.Threshold = KindThreshold, th
				errs = append(errs, a.enqueue(ctx, w, key, p, now))
			}
		}
	}
	return errors.Join(errs...)
}

// enqueueDenied enqueues one alert per denial for each webhook that wants
// denials, with the refusing policy's budget when there is one.
func (a *Alerter) enqueueDenied(ctx context.Context, r interpose.Record) error {
	now := a.o.Now()
	p := Payload{AgentID: r.AgentID, AgentName: r.AgentName}
	if r.PolicyID != "" {
		// Best effort: the denial is worth reporting without its figures.
		if pus, err := a.o.Store.Usage(ctx, r.AgentID, now); err == nil {
			for _, pu := range pus {
				if pu.Policy.ID != r.PolicyID {
					continue
				}
				if b, err := pu.Budget(now); err == nil {
					p = budgetPayload(b)
					p.AgentID, p.AgentName = r.AgentID, r.AgentName
				}
			}
		}
		p.PolicyID = r.PolicyID
	}
	p.Kind, p.Code, p.Reason, p.RequestID, p.Resource = KindDenied, r.Code, r.Reason, r.RequestID, r.Resource
	var errs []error
	for _, w := range a.o.Webhooks {
		if w.Denied && w.matches(r.AgentID, r.AgentName) {
			errs = append(errs, a.enqueue(ctx, w, "denied|"+w.URL+"|"+r.RequestID, p, now))
		}
	}
	return errors.Join(errs...)
}

// alertNamespace makes alert IDs: a UUID (v5) of the dedupe key, so every
// process that finds the same alert names it the same way.
var alertNamespace = uuid.MustParse("6f1b7a52-3c8e-4d0a-9a57-2f3cde1a8b10")

// AlertID is the ID of the alert with this dedupe key.
func AlertID(key string) string { return uuid.NewSHA1(alertNamespace, []byte(key)).String() }

func (a *Alerter) enqueue(ctx context.Context, w Webhook, key string, p Payload, now time.Time) error {
	p.ID, p.CreatedAt = AlertID(key), now.UTC()
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	inserted, err := a.o.Store.EnqueueAlert(ctx, ledger.Alert{ID: p.ID, Key: key, Webhook: w.URL, Payload: body, CreatedAt: now})
	if err != nil {
		return fmt.Errorf("enqueue alert %s: %w", p.ID, err)
	}
	if inserted {
		a.log.InfoContext(ctx, "alert enqueued", "id", p.ID, "kind", p.Kind, "webhook", w.URL, "policy_id", p.PolicyID, "threshold", p.Threshold)
		select {
		case a.send <- struct{}{}:
		default:
		}
	}
	return nil
}

func budgetPayload(b policy.Budget) Payload {
	spent, reserved, limit := b.Spent, b.Reserved, b.Limit
	return Payload{
		AgentID: b.AgentID, AgentName: b.Agent, PolicyID: b.PolicyID, Window: b.Window, WindowType: b.WindowType,
		WindowStart: b.WindowStart, Spent: &spent, Reserved: &reserved, Limit: &limit, Currency: b.Currency,
		PercentUsed: b.PercentUsed,
	}
}

// windowKey is the window part of a threshold alert's dedupe key: the
// calendar window's start, "total" for a total window, and for a rolling
// window the start of the span-long period (counted from the Unix epoch)
// holding now, since its own start moves every minute: a rolling budget
// kept above a threshold alerts at most once per span.
func windowKey(b policy.Budget, now time.Time) string {
	switch {
	case b.WindowStart == nil:
		return "total"
	case b.WindowType == policy.WindowRolling && b.Span > 0:
		return strconv.FormatInt(now.UnixNano()-now.UnixNano()%int64(b.Span), 10)
	}
	return strconv.FormatInt(b.WindowStart.UnixNano(), 10)
}

// Crossed returns the thresholds (whole percents) that percent, as
// policy.Budget reports it, has reached.
func Crossed(percent policy.Percent, thresholds []int) []int {
	hundredths, ok := parsePercent(percent)
	if !ok {
		return nil
	}
	var out []int
	for _, th := range thresholds {
		if hundredths >= int64(th)*100 {
			out = append(out, th)
		}
	}
	return out
}

// parsePercent reads Percent's exact two-decimal text as hundredths.
func parsePercent(p policy.Percent) (int64, bool) {
	whole, frac, ok := strings.Cut(string(p), ".")
	if !ok || len(frac) != 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	return n, err == nil
}
