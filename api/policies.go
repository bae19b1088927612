package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// budgetFields are a policy's settable fields. On create a missing field
// takes the CLI's default (USD, daily, calendar, UTC, no allowlist); on
// update it keeps the current value.
type budgetFields struct {
	Limit      *string   `json:"limit,omitempty"`
	Currency   *string   `json:"currency,omitempty"`
	Window     *string   `json:"window,omitempty"`
	WindowType *string   `json:"window_type,omitempty"`
	Timezone   *string   `json:"timezone,omitempty"`
	Allow      *[]string `json:"allow,omitempty"`
}

type createPolicyRequest struct {
	Agent string `json:"agent"`
	budgetFields
}

// apply overlays the fields given on np; the store checks every field
// with policy.ValidatePolicy, the one rule for budgets.
func (b budgetFields) apply(np *ledger.NewPolicy) error {
	if b.Limit != nil {
		lim, err := policy.ParseLimit(*b.Limit)
		if err != nil {
			return badRequest("limit: %v", err)
		}
		np.Limit = lim
	}
	if b.Currency != nil {
		np.Currency = *b.Currency
	}
	if b.Window != nil {
		np.Window = policy.Window(*b.Window)
	}
	if b.WindowType != nil {
		np.WindowType = policy.WindowType(*b.WindowType)
	}
	if b.Timezone != nil {
		np.Timezone = *b.Timezone
	}
	if b.Allow != nil {
		np.Allow = *b.Allow
	}
	return nil
}

// newPolicy is the policy a create request describes, defaults filled.
func (b budgetFields) newPolicy(agentID string) (ledger.NewPolicy, error) {
	if b.Limit == nil {
		return ledger.NewPolicy{}, badRequest("limit: required")
	}
	np := ledger.NewPolicy{AgentID: agentID, Currency: money.DefaultCurrency, Window: policy.WindowDaily,
		WindowType: policy.WindowCalendar, Timezone: "UTC"}
	if err := b.apply(&np); err != nil {
		return ledger.NewPolicy{}, err
	}
	return np, nil
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req createPolicyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	np, err := req.newPolicy("")
	if err != nil {
		return err
	}
	a, err := s.agentRef(r, "agent", req.Agent)
	if err != nil {
		return err
	}
	np.AgentID = a.ID
	p, err := s.opts.Store.CreatePolicy(r.Context(), np)
	if err != nil {
		return storeError("create policy", err)
	}
	return writeJSON(w, http.StatusCreated, p)
}

// queryBool reads a boolean query parameter; absent is false.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s: invalid boolean %q: want true or false", name, v)
	}
	return b, nil
}

// optionalAgent resolves the `agent` query parameter, "" if absent.
func (s *Server) optionalAgent(r *http.Request) (string, error) {
	ref := r.URL.Query().Get("agent")
	if ref == "" {
		return "", nil
	}
	a, err := s.agentRef(r, "agent", ref)
	return a.ID, err
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, _ principal) error {
	all, err := queryBool(r, "all")
	if err != nil {
		return err
	}
	agentID, err := s.optionalAgent(r)
	if err != nil {
		return err
	}
	pols, err := s.opts.Store.ListPolicies(r.Context(), agentID, all)
	if err != nil {
		return storeError("list policies", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(pols))
}

// policyByID reads the policy in the path; a malformed ID is not found,
// as in the CLI.
func (s *Server) policyByID(r *http.Request) (policy.Policy, error) {
	id := r.PathValue("policy")
	p, err := s.opts.Store.GetPolicy(r.Context(), id)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrInvalid) {
			return policy.Policy{}, notFound("policy %q not found", id)
		}
		return policy.Policy{}, storeError("read policy", err)
	}
	return p, nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	p, err := s.policyByID(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req budgetFields
	if err := decode(r, &req); err != nil {
		return err
	}
	if req == (budgetFields{}) {
		return badRequest("nothing to change: give limit, currency, window, window_type, timezone or allow")
	}
	cur, err := s.policyByID(r)
	if err != nil {
		return err
	}
	np := ledger.NewPolicy{AgentID: cur.AgentID, Limit: cur.Limit, Currency: cur.Currency, Window: cur.Window,
		WindowType: cur.WindowType, Timezone: cur.Timezone, Allow: cur.Allow, DelegatedFrom: cur.DelegatedFrom}
	if err := req.apply(&np); err != nil {
		return err
	}
	p, err := s.opts.Store.UpdatePolicy(r.Context(), cur.ID, np)
	if err != nil {
		return storeError("update policy", err)
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) deactivatePolicy(w http.ResponseWriter, r *http.Request, _ principal) error {
	cur, err := s.policyByID(r)
	if err != nil {
		return err
	}
	p, err := s.opts.Store.DeactivatePolicy(r.Context(), cur.ID)
	if err != nil {
		return storeError("deactivate policy", err)
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) policyHistory(w http.ResponseWriter, r *http.Request, _ principal) error {
	cur, err := s.policyByID(r)
	if err != nil {
		return err
	}
	vs, err := s.opts.Store.PolicyHistory(r.Context(), cur.ID)
	if err != nil {
		return storeError("policy history", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(vs))
}
