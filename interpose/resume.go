package interpose

import (
	"context"
	"fmt"

	"github.com/caracal-dev/caracal/ledger"
)

// Resume rebuilds the Ticket of a reservation that Begin made earlier — in
// this process or another, or before a restart — from the store, so that a
// caller holding only the request ID (the metering API of `caracal serve`)
// can Settle or Release it through the same code as every other mode.
//
// The ticket's price rule is the one the pricebook matches now (a usage
// settlement is priced at the current rule), args are the call's
// arguments for per-unit rules, and the amount reserved is the stored one.
// A reservation that does not belong to agentID is reported as
// ledger.ErrNotFound, so that one agent cannot learn of another's calls.
// A finished reservation still resumes: settling or releasing it again
// returns its first event, as the store guarantees.
func (e *Engine) Resume(ctx context.Context, agentID, requestID string, args []byte) (*Ticket, ledger.Reservation, error) {
	r, err := e.opts.Store.GetReservation(ctx, requestID)
	if err != nil {
		return nil, ledger.Reservation{}, fmt.Errorf("reservation %q: %w", requestID, err)
	}
	if r.AgentID != agentID {
		return nil, ledger.Reservation{}, fmt.Errorf("reservation %q: %w", requestID, ledger.ErrNotFound)
	}
	q, err := e.Quote(ctx, r.Resource, args, nil)
	if err != nil {
		return nil, ledger.Reservation{}, err
	}
	q.Currency = r.Currency
	t := &Ticket{RequestID: r.RequestID, Quote: q, Reserved: r.Amount, args: args}
	t.obs = ticketObs{agentID: r.AgentID, agentName: e.agentName(ctx, r.AgentID, false), resource: r.Resource, admitted: r.CreatedAt}
	return t, r, nil
}
