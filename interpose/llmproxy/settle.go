package llmproxy

import (
	"context"
	"io"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/policy"
)

// settleCtx returns the context settlement runs in, detached from the
// client: the outcome must be recorded even when the client has gone.
func (c *call) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.upCtx), 30*time.Second)
}

// settle charges the call from reported usage (nil: the quoted price).
func (c *call) settle(t *policy.Tokens) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	r := interpose.Result{Tokens: t}
	switch rule := c.ticket.Quote.Rule; {
	case rule == nil || t == nil:
		// Unpriced or per-request: the quoted price, stated explicitly.
		price := c.ticket.Quote.Price
		r.Amount = &price
	default:
		if amount, err := policy.Cost(*rule, nil, billable(*rule, *t)); err == nil {
			r.Amount = &amount
		}
	}
	if _, err := c.p.opts.Engine.Settle(ctx, c.ticket, r); err != nil {
		c.p.log.Error("settle", "request_id", c.ticket.RequestID, "err", err)
	}
}

func (c *call) release(reason string) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	if _, err := c.p.opts.Engine.Release(ctx, c.ticket, reason); err != nil {
		c.p.log.Error("release", "request_id", c.ticket.RequestID, "err", err)
	}
}

func (c *call) unconfirmed(reason string) {
	if !c.finished.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := c.settleCtx()
	defer cancel()
	c.p.log.Warn("charged unconfirmed", "request_id", c.ticket.RequestID, "reason", reason)
	if _, err := c.p.opts.Engine.Unconfirmed(ctx, c.ticket, reason); err != nil {
		c.p.log.Error("unconfirmed", "request_id", c.ticket.RequestID, "err", err)
	}
}

// done releases the exchange's resources once the response is finished.
func (c *call) done() {
	c.stopWatch()
	c.cancel()
}

// closeBody ends the exchange when a passed-through body is closed.
type closeBody struct {
	io.ReadCloser
	c *call
}

func (b *closeBody) Close() error {
	err := b.ReadCloser.Close()
	b.c.done()
	return err
}
