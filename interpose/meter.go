package interpose

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// Meter is the budget side every front drives (the MCP relay, the MCP
// middleware, the LLM proxy): what an agent may call, what a call costs,
// then a reservation that is settled, released or settled as unconfirmed.
// *Engine satisfies it; the fronts hold no budget logic of their own.
type Meter interface {
	Allowlist(ctx context.Context, agentID string) (func(resource string) bool, error)
	Quote(ctx context.Context, resource string, args []byte, declared *policy.PriceRule) (Quote, error)
	Begin(ctx context.Context, c Call) (*Ticket, policy.Decision)
	Settle(ctx context.Context, t *Ticket, r Result) (ledger.Event, error)
	Release(ctx context.Context, t *Ticket, reason string) (ledger.Event, error)
	Unconfirmed(ctx context.Context, t *Ticket, reason string) (ledger.Event, error)
}

// Authenticator resolves an agent key presented to a front. *Engine
// satisfies it.
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (policy.Agent, error)
}

var (
	_ Meter         = (*Engine)(nil)
	_ Authenticator = (*Engine)(nil)
)

// Do meters fn through m: it begins the call, runs fn if admitted, and
// settles with fn's Result, releasing the reservation if fn returns an
// error. Settlement runs on a context detached from ctx, so a caller that
// gives up does not leave the reservation open.
//
// A refused call does not run fn and returns the Decision with an error
// wrapping ErrDenied. An error from fn means nothing was spent: the
// reservation is released and fn's error returned. If fn panics, the call's
// outcome is unknown, so it is settled as unconfirmed before the panic
// continues. A settlement failure is returned as the error (the call ran;
// the expiry sweep will settle it as unconfirmed); release and unconfirmed
// failures are logged to log.
func Do(ctx context.Context, m Meter, log *slog.Logger, c Call, fn func(ctx context.Context) (Result, error)) (policy.Decision, error) {
	t, d := m.Begin(ctx, c)
	if t == nil {
		return d, fmt.Errorf("%w: %s", ErrDenied, d.Reason)
	}
	sctx := context.WithoutCancel(ctx)
	finished := false
	defer func() {
		if finished {
			return
		}
		// fn panicked: its spending is unknown, so nothing is refunded.
		p := recover()
		if _, err := m.Unconfirmed(sctx, t, fmt.Sprintf("metered function panicked: %v", p)); err != nil {
			log.Error("settling after a panic failed", "request_id", t.RequestID, "err", err)
		}
		panic(p)
	}()
	res, err := fn(ctx)
	finished = true
	if err != nil {
		if _, rerr := m.Release(sctx, t, "metered function failed: "+err.Error()); rerr != nil {
			log.Error("releasing a failed call failed", "request_id", t.RequestID, "err", rerr)
		}
		return d, err
	}
	if _, err := m.Settle(sctx, t, res); err != nil {
		return d, err
	}
	return d, nil
}
