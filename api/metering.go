package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// reserveRequest is POST /v1/reservations.
type reserveRequest struct {
	// Resource names what the call spends on, such as llm:openai/gpt-4o or
	// http:search/query; the pricebook prices it and allowlists match it.
	Resource string `json:"resource"`
	// Operation labels the call in the ledger; "reserve" if empty.
	Operation string `json:"operation,omitempty"`
	// Amount, if set, is reserved instead of the pricebook's price: the
	// worst case of a call settled later from its usage.
	Amount *money.Amount `json:"amount,omitempty"`
	// Arguments are the call's JSON arguments, for per-unit price rules.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// RequestID is the reservation's ID, generated if empty. A second
	// reservation with an ID already reserved is refused with 409.
	RequestID string `json:"request_id,omitempty"`
	Quantity  string `json:"quantity,omitempty"`
	Unit      string `json:"unit,omitempty"`
}

// reservation is an admitted reservation.
type reservation struct {
	Allowed   bool               `json:"allowed"`
	ID        string             `json:"id"`
	Code      policy.Code        `json:"code"`
	Reason    string             `json:"reason"`
	Amount    money.Amount       `json:"amount"`
	Currency  string             `json:"currency"`
	Unpriced  bool               `json:"unpriced"`
	Remaining []policy.Remaining `json:"remaining"`
}

// reserve decides and reserves one call through interpose.Engine.Begin, as
// the proxies do. Admitted: 201 with the reservation. Denied: 402 Payment
// Required, a problem whose code is the decision code (budget_exceeded,
// not_allowed, unpriced, no_policy, currency_mismatch, …) with
// allowed: false and what each policy has left; the denial is in the
// ledger. A ledger that cannot be reached denies (fail closed) with 503
// and code unavailable.
func (s *Server) reserve(w http.ResponseWriter, r *http.Request, p principal) error {
	var req reserveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Resource == "" {
		return badRequest("resource: required")
	}
	if err := policy.ValidateResourcePattern(req.Resource); err != nil {
		return badRequest("resource: invalid resource %q: %v", req.Resource, err)
	}
	if req.Amount != nil && req.Amount.IsNegative() {
		return badRequest("amount: must not be negative")
	}
	if len(req.Arguments) > 0 && !json.Valid(req.Arguments) {
		return badRequest("arguments: invalid JSON")
	}
	for _, f := range []struct{ name, v string }{{"operation", req.Operation}, {"request_id", req.RequestID}, {"quantity", req.Quantity}, {"unit", req.Unit}} {
		if err := policy.ValidateText(f.v); err != nil {
			return badRequest("%s: %v", f.name, err)
		}
	}
	if req.Operation == "" {
		req.Operation = "reserve"
	}
	t, d := s.opts.Engine.Begin(r.Context(), interpose.Call{
		AgentID: p.agent.ID, Resource: req.Resource, Operation: req.Operation, Upstream: "api",
		Arguments: req.Arguments, Reserve: req.Amount, Quantity: req.Quantity, Unit: req.Unit, RequestID: req.RequestID,
	})
	if t == nil {
		if req.RequestID != "" {
			// A request ID already reserved is refused by the engine as a
			// store error, or by the budget its first attempt holds; a
			// client retrying with its own ID should learn instead that
			// the first attempt went through.
			if _, err := s.opts.Store.GetReservation(r.Context(), req.RequestID); err == nil {
				return conflict("request_id %q is already reserved: settle or release it by that ID", req.RequestID)
			}
		}
		return denial(d)
	}
	return writeJSON(w, http.StatusCreated, reservation{
		Allowed: true, ID: t.RequestID, Code: d.Code, Reason: d.Reason, Amount: t.Reserved,
		Currency: t.Quote.Currency, Unpriced: t.Quote.Unpriced, Remaining: nonNil(d.Remaining),
	})
}

// denial is a refused reservation as a problem: 402, or 503 when the
// ledger could not decide.
func denial(d policy.Decision) error {
	status := http.StatusPaymentRequired
	if d.Code == policy.CodeUnavailable {
		status = http.StatusServiceUnavailable
	}
	extra := map[string]any{
		"allowed":   false,
		"price":     d.Price,
		"currency":  d.Currency,
		"remaining": nonNil(d.Remaining),
	}
	if d.PolicyID != "" {
		extra["policy_id"] = d.PolicyID
	}
	return &Error{Status: status, Code: string(d.Code), Detail: d.Reason, Extra: extra}
}

// settleRequest is POST /v1/reservations/{id}/settle. With neither amount
// nor tokens the reserved amount is charged.
type settleRequest struct {
	// Amount is what the call cost.
	Amount *money.Amount `json:"amount,omitempty"`
	// Tokens are an LLM call's usage, priced under the resource's rule.
	Tokens *policy.Tokens `json:"tokens,omitempty"`
	// Arguments are the call's arguments again, for a per-unit rule
	// priced with tokens.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// IsError marks a call that failed after it ran: charged unless the
	// price rule's charge_errors is false.
	IsError  bool   `json:"is_error,omitempty"`
	Quantity string `json:"quantity,omitempty"`
	Unit     string `json:"unit,omitempty"`
}

// ticket resumes the reservation in the path for the calling agent; a
// reservation of another agent is not found.
func (s *Server) ticket(r *http.Request, p principal, args []byte) (*interpose.Ticket, error) {
	id := r.PathValue("id")
	t, _, err := s.opts.Engine.Resume(r.Context(), p.agent.ID, id, args)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, notFound("reservation %q not found", id)
	}
	if err != nil {
		return nil, storeError("read reservation", err)
	}
	return t, nil
}

// settle charges a reservation through interpose.Engine.Settle and
// returns the ledger event. Settling again returns the first event.
func (s *Server) settle(w http.ResponseWriter, r *http.Request, p principal) error {
	var req settleRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	switch {
	case req.Amount != nil && req.Tokens != nil:
		return badRequest("give amount or tokens, not both")
	case req.Amount != nil && req.Amount.IsNegative():
		return badRequest("amount: must not be negative")
	case len(req.Arguments) > 0 && !json.Valid(req.Arguments):
		return badRequest("arguments: invalid JSON")
	}
	if t := req.Tokens; t != nil && (t.Input < 0 || t.Output < 0 || t.CachedRead < 0 || t.CacheWrite < 0 || t.Reasoning < 0) {
		return badRequest("tokens: counts must not be negative")
	}
	for _, f := range []struct{ name, v string }{{"quantity", req.Quantity}, {"unit", req.Unit}} {
		if err := policy.ValidateText(f.v); err != nil {
			return badRequest("%s: %v", f.name, err)
		}
	}
	t, err := s.ticket(r, p, req.Arguments)
	if err != nil {
		return err
	}
	ev, err := s.opts.Engine.Settle(r.Context(), t, interpose.Result{
		Amount: req.Amount, Tokens: req.Tokens, ToolError: req.IsError, Quantity: req.Quantity, Unit: req.Unit,
	})
	if err != nil {
		return storeError("settle", err)
	}
	return writeJSON(w, http.StatusOK, ev)
}

type releaseRequest struct {
	// Reason is recorded on the refunded event.
	Reason string `json:"reason,omitempty"`
}

// release frees a reservation whose call never ran, through
// interpose.Engine.Release: a refunded event of amount zero. Releasing
// again (or after settling) returns the first event.
func (s *Server) release(w http.ResponseWriter, r *http.Request, p principal) error {
	var req releaseRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	if err := policy.ValidateText(req.Reason); err != nil {
		return badRequest("reason: %v", err)
	}
	if req.Reason == "" {
		req.Reason = "released by the client"
	}
	t, err := s.ticket(r, p, nil)
	if err != nil {
		return err
	}
	ev, err := s.opts.Engine.Release(r.Context(), t, req.Reason)
	if err != nil {
		return storeError("release", err)
	}
	return writeJSON(w, http.StatusOK, ev)
}
