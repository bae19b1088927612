package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/caracal-dev/caracal/ledger"
)

// SignatureHeader carries a delivery's signature:
//
//	Caracal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// The timestamp is inside the signed text, so a receiver that also checks
// it is recent refuses replays of an old delivery.
const SignatureHeader = "Caracal-Signature"

// Sign returns the Caracal-Signature value for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Retry schedule. Each failed delivery waits Backoff(attempts) before the
// next: exponential so that a receiver that is down is not hammered,
// capped so that one back after a long outage hears within maxBackoff,
// and jittered (a random point in the upper half of the step) so that
// the many alerts a receiver's outage failed together, in this process
// and others, do not all retry in the same instant. The attempt count is
// stored with the alert, so the schedule carries across restarts.
const (
	baseBackoff = time.Second
	maxBackoff  = 10 * time.Minute
)

// Backoff is the wait after the n-th failed attempt (n ≥ 1): in
// [d/2, d] where d = min(1 s × 2^(n−1), 10 min).
func Backoff(n int, rnd func(int64) int64) time.Duration {
	d := maxBackoff
	if n < 1 {
		n = 1
	}
	if n <= 30 {
		d = min(baseBackoff<<(n-1), maxBackoff)
	}
	return d/2 + time.Duration(rnd(int64(d/2)+1))
}

// claimBatch is how many alerts one claim leases. The batch is sent one
// alert after another, so it is kept small enough that even a receiver
// that times out every request (10 s each) is done with the batch before
// the default one-minute lease ends; past the lease another process may
// take the rest and send them too.
const claimBatch = 5

// deliverLoop sends due alerts every Poll, and at once after an enqueue,
// until ctx ends.
func (a *Alerter) deliverLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.send:
		}
		a.deliverDue(ctx)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(a.o.Poll)
	}
}

// deliverDue claims and sends every alert due now, webhook by webhook.
// Only configured webhooks are read: an alert for a URL removed from the
// configuration stays in the outbox, undelivered.
func (a *Alerter) deliverDue(ctx context.Context) {
	for _, w := range a.o.Webhooks {
		for ctx.Err() == nil {
			batch, err := a.o.Store.ClaimAlerts(ctx, w.URL, a.owner, a.o.Now(), a.o.Lease, claimBatch)
			if err != nil {
				a.log.WarnContext(ctx, "alerts: could not read the outbox", "webhook", w.URL, "err", err)
				break
			}
			for _, al := range batch {
				a.deliver(ctx, w, al)
			}
			if len(batch) < claimBatch {
				break
			}
		}
	}
}

// deliver POSTs one alert and records the outcome. Any 2xx is delivery;
// anything else, or no answer, is retried after Backoff.
func (a *Alerter) deliver(ctx context.Context, w Webhook, al ledger.Alert) {
	err := a.post(ctx, w, al)
	now := a.o.Now()
	// The outcome is recorded even when ctx ended mid-send, so a delivered
	// alert is not sent again after a restart.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err == nil {
		if err := a.o.Store.AlertDelivered(rctx, al.ID, now); err != nil {
			a.log.WarnContext(ctx, "alerts: delivered but not marked; it may be sent again", "id", al.ID, "err", err)
		}
		a.log.InfoContext(ctx, "alert delivered", "id", al.ID, "webhook", w.URL, "attempt", al.Attempts+1)
		return
	}
	next := now.Add(Backoff(al.Attempts+1, rand.Int64N))
	a.log.WarnContext(ctx, "alert delivery failed", "id", al.ID, "webhook", w.URL, "attempt", al.Attempts+1, "retry_at", next, "err", err)
	if err := a.o.Store.AlertFailed(rctx, al.ID, a.owner, next, err.Error()); err != nil {
		a.log.WarnContext(ctx, "alerts: could not record a failed delivery; it is retried when its lease ends", "id", al.ID, "err", err)
	}
}

func (a *Alerter) post(ctx context.Context, w Webhook, al ledger.Alert) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(al.Payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "caracal-alerts")
	req.Header.Set(SignatureHeader, Sign(w.Secret, a.o.Now(), al.Payload))
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
