package policy

import (
	"fmt"
	"math/big"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
)

// Budget is what one policy has used and has left at a moment: the view
// `caracal budget status` prints and any other reader of budgets should
// share, computed from a PolicyUsage by PolicyUsage.Budget.
type Budget struct {
	PolicyID   string     `json:"policy_id"`
	AgentID    string     `json:"agent_id"`
	Agent      string     `json:"agent"`
	Window     Window     `json:"window"`
	WindowType WindowType `json:"window_type"`
	// WindowStart is the start of the window that counts at the moment:
	// the calendar window's start, or for a rolling window the oldest
	// minute still counted. Nil for a total window, which covers all time.
	WindowStart *time.Time `json:"window_start,omitempty"`
	// ResetsAt is when the calendar window ends and usage starts again at
	// zero. Nil for rolling windows (usage ages out minute by minute) and
	// total windows (never reset).
	ResetsAt *time.Time `json:"resets_at,omitempty"`
	// Span is how far back a rolling window reaches; zero otherwise.
	Span      time.Duration `json:"-"`
	Limit     money.Amount  `json:"limit"`
	Spent     money.Amount  `json:"spent"`
	Reserved  money.Amount  `json:"reserved"`
	Remaining money.Amount  `json:"remaining"`
	Currency  string        `json:"currency"`
	// PercentUsed is (spent + reserved) / limit × 100 with two decimals,
	// truncated: see PolicyUsage.PercentUsed.
	PercentUsed Percent `json:"percent_used"`
}

// Percent is a percentage with exactly two decimals, kept as its decimal
// text so that it is never rounded through a float. It encodes in JSON as
// a number: 12.5% is 12.50.
type Percent string

// MarshalJSON writes the percentage as a JSON number.
func (p Percent) MarshalJSON() ([]byte, error) {
	if p == "" {
		return []byte("0.00"), nil
	}
	return []byte(p), nil
}

// RemainingAfter is what the policy has left once spend is also taken:
// limit − spent − reserved − spend, floored at zero (a budget already
// overspent has nothing left, not a negative amount).
func (pu PolicyUsage) RemainingAfter(spend money.Amount) money.Amount {
	left := pu.Policy.Limit
	for _, used := range [...]money.Amount{pu.Spent, pu.Reserved, spend} {
		var err error
		if left, err = left.Sub(used); err != nil {
			return 0
		}
	}
	if left < 0 {
		return 0
	}
	return left
}

// Remaining is limit − spent − reserved, floored at zero: what a new call
// may still reserve. It is the figure Decide reports.
func (pu PolicyUsage) Remaining() money.Amount { return pu.RemainingAfter(0) }

// PercentUsed is (spent + reserved) / limit × 100, computed exactly and
// truncated (not rounded) to two decimals, so that "100.00" means the
// budget is fully used and a budget one nano-unit short of it shows
// "99.99". It exceeds 100 when usage went over the limit (an unconfirmed
// charge larger than its reservation). A zero limit reads "100.00": nothing
// may be spent.
func (pu PolicyUsage) PercentUsed() Percent {
	used := new(big.Int).Add(big.NewInt(int64(pu.Spent)), big.NewInt(int64(pu.Reserved)))
	if pu.Policy.Limit <= 0 {
		return "100.00"
	}
	// Hundredths of a percent: used × 10000 / limit.
	q := new(big.Int).Quo(used.Mul(used, big.NewInt(10000)), big.NewInt(int64(pu.Policy.Limit)))
	neg := q.Sign() < 0
	q.Abs(q)
	frac := new(big.Int)
	whole, _ := new(big.Int).QuoRem(q, big.NewInt(100), frac)
	s := fmt.Sprintf("%s.%02d", whole, frac.Int64())
	if neg {
		s = "-" + s
	}
	return Percent(s)
}

// Budget returns the policy's status at now, the moment its Spent and
// Reserved were read at. The window boundaries come from the same
// functions that place spends in buckets.
func (pu PolicyUsage) Budget(now time.Time) (Budget, error) {
	p := pu.Policy
	wt := p.WindowType
	if wt == "" {
		wt = WindowCalendar
	}
	b := Budget{
		PolicyID:    p.ID,
		AgentID:     p.AgentID,
		Agent:       pu.AgentName,
		Window:      p.Window,
		WindowType:  wt,
		Limit:       p.Limit,
		Spent:       pu.Spent,
		Reserved:    pu.Reserved,
		Remaining:   pu.Remaining(),
		Currency:    p.Currency,
		PercentUsed: pu.PercentUsed(),
	}
	if b.Agent == "" {
		b.Agent = p.AgentID
	}
	if p.Window == WindowTotal {
		return b, nil
	}
	start, err := WindowStart(p, now)
	if err != nil {
		return b, fmt.Errorf("policy %s: %w", p.ID, err)
	}
	start = start.UTC()
	b.WindowStart = &start
	if wt == WindowRolling {
		b.Span = rollingDuration(p.Window)
		return b, nil
	}
	end, err := WindowEnd(p, now)
	if err != nil {
		return b, fmt.Errorf("policy %s: %w", p.ID, err)
	}
	b.ResetsAt = &end
	return b, nil
}

// WindowEnd returns when the calendar window containing now ends: the
// start of the next window, in UTC. Total and rolling windows have no end
// and are an error.
func WindowEnd(p Policy, now time.Time) (time.Time, error) {
	if p.Window == WindowTotal || p.WindowType == WindowRolling {
		return time.Time{}, fmt.Errorf("a %s %s window does not reset", p.WindowType, p.Window)
	}
	loc, err := policyLocation(p)
	if err != nil {
		return time.Time{}, err
	}
	start, err := BucketStartIn(p, loc, now)
	if err != nil {
		return time.Time{}, err
	}
	if p.Window == WindowHourly {
		// The next hour starts where the clock next shows a new hour; an
		// offset change of a fraction of an hour can move that earlier than
		// start + 1h, so the next window is found from its bucket.
		next := start.Add(time.Hour)
		if s, err := BucketStartIn(p, loc, next.Add(-time.Nanosecond)); err == nil && s.After(start) {
			next = s
		}
		return next.UTC(), nil
	}
	local := start.In(loc)
	y, m, d := local.Date()
	switch p.Window {
	case WindowDaily:
		d++
	case WindowWeekly:
		d += 7
	case WindowMonthly:
		m, d = m+1, 1
	}
	return dayStart(y, m, d, loc).UTC(), nil
}
