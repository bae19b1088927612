package ledger

import (
	"context"
	"time"
)

// Alert is one budget alert in the outbox: enqueued once per dedupe key,
// then delivered to its webhook at least once.
type Alert struct {
	// ID is the alert's idempotency key, the `id` of its payload; the
	// enqueuer derives it from Key so that every process names the same
	// alert the same way.
	ID string
	// Key is the dedupe key: at most one alert per key is ever enqueued.
	Key string
	// Webhook is the URL the alert is for.
	Webhook string
	// Payload is the JSON body, fixed when the alert is enqueued so that
	// every attempt sends the same bytes.
	Payload   []byte
	CreatedAt time.Time
	// Attempts counts failed deliveries; NextAttempt is when the next may start.
	Attempts    int
	NextAttempt time.Time
	DeliveredAt *time.Time
	LastError   string
}

// Alerts is the durable outbox of budget alerts. Each method is its own
// small transaction, apart from the enforcement path's.
type Alerts interface {
	// EnqueueAlert inserts a unless an alert with its Key (or ID) exists,
	// and reports whether it inserted it.
	EnqueueAlert(ctx context.Context, a Alert) (inserted bool, err error)
	// ClaimAlerts leases to owner, until now+lease, up to max undelivered
	// alerts of webhook whose next attempt is due at now and whose previous
	// lease (if any) has expired, oldest first. A row is claimed by one
	// caller only, across processes.
	ClaimAlerts(ctx context.Context, webhook, owner string, now time.Time, lease time.Duration, max int) ([]Alert, error)
	// AlertDelivered marks the alert delivered at at. Marking it again, or
	// after its lease passed to another owner, changes nothing.
	AlertDelivered(ctx context.Context, id string, at time.Time) error
	// AlertFailed records a failed attempt by owner: attempts+1, the error,
	// the next attempt's time, and the lease released. It does nothing if
	// owner no longer holds the lease or the alert was delivered.
	AlertFailed(ctx context.Context, id, owner string, next time.Time, reason string) error
	// GetAlert reads one alert, or ErrNotFound.
	GetAlert(ctx context.Context, id string) (Alert, error)
}
