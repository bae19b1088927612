package api

import (
	"errors"
	"net/http"

	"github.com/caracal-dev/caracal/ledger"
)

type createDelegationRequest struct {
	Parent string `json:"parent"`
	Child  string `json:"child"`
	budgetFields
}

// createDelegation is `caracal delegation create`: one store transaction
// (ledger.Store.CreateDelegation) that links the child and writes its
// delegated budget, or refuses and writes nothing.
func (s *Server) createDelegation(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req createDelegationRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	np, err := req.newPolicy("")
	if err != nil {
		return err
	}
	// Resolved here only to blame the right member for an unknown agent
	// and to name them in the answer; every rule is the store's.
	parent, err := s.agentRef(r, "parent", req.Parent)
	if err != nil {
		return err
	}
	child, err := s.agentRef(r, "child", req.Child)
	if err != nil {
		return err
	}
	p, err := s.opts.Store.CreateDelegation(r.Context(), ledger.NewDelegation{Parent: parent.ID, Child: child.ID, Policy: np, MaxDepth: s.opts.MaxDepth})
	if err != nil {
		var deep *ledger.ChainDepthError
		switch {
		case errors.As(err, &deep):
			return conflict("child: %s", depthDetail(deep, s.opts.MaxDepth))
		case errors.Is(err, ledger.ErrDelegateToSelf):
			return badRequest("child: %v", err)
		case errors.Is(err, ledger.ErrOverParentLimit):
			return badRequest("limit: %v", err)
		case errors.Is(err, ledger.ErrConflict):
			return conflict("child: %v", err)
		}
		return storeError("create delegation", err)
	}
	return writeJSON(w, http.StatusCreated, ledger.ViewDelegation(p, parent.Name, child.Name))
}

// listDelegations is `caracal delegation list`: the delegated policies,
// with agent those from or to that agent, with all the inactive ones too.
func (s *Server) listDelegations(w http.ResponseWriter, r *http.Request, _ principal) error {
	all, err := queryBool(r, "all")
	if err != nil {
		return err
	}
	agentID, err := s.optionalAgent(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	pols, err := s.opts.Store.ListPolicies(ctx, "", all)
	if err != nil {
		return storeError("list policies", err)
	}
	names, err := s.agentNames(r)
	if err != nil {
		return err
	}
	ds := []ledger.DelegationView{}
	for _, p := range pols {
		if p.DelegatedFrom == "" || (agentID != "" && p.AgentID != agentID && p.DelegatedFrom != agentID) {
			continue
		}
		ds = append(ds, ledger.ViewDelegation(p, names[p.DelegatedFrom], names[p.AgentID]))
	}
	return writeJSON(w, http.StatusOK, ds)
}

// revokeDelegation is `caracal delegation revoke`: the store writes the
// delegated policy's zero-limit version (ledger.Store.RevokeDelegation).
func (s *Server) revokeDelegation(w http.ResponseWriter, r *http.Request, _ principal) error {
	id := r.PathValue("policy")
	p, err := s.opts.Store.RevokeDelegation(r.Context(), id)
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrNotDelegation):
			return badRequest("%v; deactivate it as a policy instead", err)
		case errors.Is(err, ledger.ErrNotFound):
			return notFound("%v", err)
		case errors.Is(err, ledger.ErrInvalid):
			return notFound("policy %q not found", id)
		case errors.Is(err, ledger.ErrConflict):
			return conflict("%v", err)
		}
		return storeError("revoke delegation", err)
	}
	names, err := s.agentNames(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ledger.ViewDelegation(p, names[p.DelegatedFrom], names[p.AgentID]))
}

// agentNames maps agent IDs to names.
func (s *Server) agentNames(r *http.Request) (map[string]string, error) {
	agents, err := s.opts.Store.ListAgents(r.Context())
	if err != nil {
		return nil, storeError("list agents", err)
	}
	m := make(map[string]string, len(agents))
	for _, a := range agents {
		m[a.ID] = a.Name
	}
	return m, nil
}
