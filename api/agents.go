package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

type registerAgentRequest struct {
	Name     string            `json:"name"`
	Owner    string            `json:"owner"`
	Parent   string            `json:"parent,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (s *Server) registerAgent(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req registerAgentRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := policy.ValidateAgentName(req.Name); err != nil {
		return badRequest("name: %v", err)
	}
	owner := strings.TrimSpace(req.Owner)
	if owner == "" {
		return badRequest("owner: required")
	}
	if err := policy.ValidateText(owner); err != nil {
		return badRequest("owner: %v", err)
	}
	for k, v := range req.Metadata {
		if strings.TrimSpace(k) == "" {
			return badRequest("metadata: empty key")
		}
		if err := policy.ValidateText(k + "=" + v); err != nil {
			return badRequest("metadata: entry %q: %v", k, err)
		}
	}
	na := ledger.NewAgent{Name: req.Name, Owner: owner, Metadata: req.Metadata}
	ctx := r.Context()
	if req.Parent != "" {
		p, err := s.agentRef(r, "parent", req.Parent)
		if err != nil {
			return err
		}
		na.ParentID, na.MaxDepth = p.ID, s.opts.MaxDepth
	}
	a, err := s.opts.Store.CreateAgent(ctx, na)
	if err != nil {
		var deep *ledger.ChainDepthError
		switch {
		case errors.As(err, &deep):
			return conflict("parent: %s", depthDetail(deep, s.opts.MaxDepth))
		case errors.Is(err, ledger.ErrConflict):
			return conflict("name: agent %q already exists", req.Name)
		case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrInvalid) && na.ParentID != "":
			return badRequest("parent: agent %q not found", req.Parent)
		}
		return storeError("register agent", err)
	}
	return writeJSON(w, http.StatusCreated, a)
}

// agentRef resolves an agent by name or ID; field names the request
// member it came from ("" for the path), so a missing agent in a body is
// a bad request and a missing agent in the path is not found.
func (s *Server) agentRef(r *http.Request, field, ref string) (policy.Agent, error) {
	if strings.TrimSpace(ref) == "" {
		return policy.Agent{}, badRequest("%s: required", field)
	}
	a, err := s.opts.Store.GetAgent(r.Context(), ref)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			if field == "" {
				return policy.Agent{}, notFound("agent %q not found", ref)
			}
			return policy.Agent{}, badRequest("%s: agent %q not found", field, ref)
		}
		return policy.Agent{}, storeError("find agent", err)
	}
	return a, nil
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, _ principal) error {
	agents, err := s.opts.Store.ListAgents(r.Context())
	if err != nil {
		return storeError("list agents", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(agents))
}

// agentDetail is an agent with its keys, its active policies and the
// status of every budget that binds it, as `caracal agent get -o json`.
type agentDetail struct {
	policy.Agent
	Keys     []policy.APIKey `json:"keys"`
	Policies []policy.Policy `json:"policies"`
	Budgets  []policy.Budget `json:"budgets"`
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request, _ principal) error {
	ctx := r.Context()
	a, err := s.agentRef(r, "", r.PathValue("agent"))
	if err != nil {
		return err
	}
	keys, err := s.opts.Store.ListKeys(ctx, a.ID)
	if err != nil {
		return storeError("list keys", err)
	}
	pols, err := s.opts.Store.ListPolicies(ctx, a.ID, false)
	if err != nil {
		return storeError("list policies", err)
	}
	budgets, err := ledger.Budgets(ctx, s.opts.Store, s.now(), []string{a.ID})
	if err != nil {
		return storeError("read budgets", err)
	}
	return writeJSON(w, http.StatusOK, agentDetail{Agent: a, Keys: nonNil(keys), Policies: nonNil(pols), Budgets: budgets})
}

func (s *Server) suspendAgent(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.setAgentStatus(w, r, policy.StatusSuspended)
}

func (s *Server) resumeAgent(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.setAgentStatus(w, r, policy.StatusActive)
}

func (s *Server) setAgentStatus(w http.ResponseWriter, r *http.Request, st policy.AgentStatus) error {
	a, err := s.agentRef(r, "", r.PathValue("agent"))
	if err != nil {
		return err
	}
	a, err = s.opts.Store.SetAgentStatus(r.Context(), a.ID, st)
	if err != nil {
		return storeError("set agent status", err)
	}
	return writeJSON(w, http.StatusOK, a)
}

type createKeyRequest struct {
	// ExpiresIn is a lifetime such as 720h or 30d; empty: never expires.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// createdKey is a new key with its secret, shown once.
type createdKey struct {
	policy.APIKey
	AgentName string `json:"agent_name"`
	Key       string `json:"key"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req createKeyRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	var expiresAt *time.Time
	if req.ExpiresIn != "" {
		d, err := policy.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return badRequest("expires_in: invalid duration %q: want a positive duration such as 720h or 30d", req.ExpiresIn)
		}
		t := s.now().Add(d).UTC()
		expiresAt = &t
	}
	a, err := s.agentRef(r, "", r.PathValue("agent"))
	if err != nil {
		return err
	}
	secret, hash, prefix, err := apikey.Generate()
	if err != nil {
		return err
	}
	k, err := s.opts.Store.CreateKey(r.Context(), a.ID, hash, prefix, expiresAt)
	if err != nil {
		return storeError("create key", err)
	}
	return writeJSON(w, http.StatusCreated, createdKey{APIKey: k, AgentName: a.Name, Key: secret})
}

func (s *Server) listAgentKeys(w http.ResponseWriter, r *http.Request, _ principal) error {
	a, err := s.agentRef(r, "", r.PathValue("agent"))
	if err != nil {
		return err
	}
	keys, err := s.opts.Store.ListKeys(r.Context(), a.ID)
	if err != nil {
		return storeError("list keys", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(keys))
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ principal) error {
	ctx := r.Context()
	agents, err := s.opts.Store.ListAgents(ctx)
	if err != nil {
		return storeError("list agents", err)
	}
	keys := []policy.APIKey{}
	for _, a := range agents {
		ks, err := s.opts.Store.ListKeys(ctx, a.ID)
		if err != nil {
			return storeError("list keys", err)
		}
		keys = append(keys, ks...)
	}
	return writeJSON(w, http.StatusOK, keys)
}

// revokeKey revokes a key by its ID. (The CLI also takes a unique prefix,
// a convenience for typing; a program holds the ID.)
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, _ principal) error {
	id := r.PathValue("key")
	k, err := s.opts.Store.RevokeKey(r.Context(), id)
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrInvalid):
			return notFound("key %q not found", id)
		case errors.Is(err, ledger.ErrConflict):
			return conflict("key %q is already revoked", id)
		}
		return storeError("revoke key", err)
	}
	return writeJSON(w, http.StatusOK, k)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// depthDetail says why a chain is too deep, naming delegation.max_depth
// when that is the limit that refused it (as the CLI does).
func depthDetail(e *ledger.ChainDepthError, maxDepth int) string {
	if e.Max != maxDepth {
		return e.Error() // the store's own cap, lower than delegation.max_depth
	}
	return fmt.Sprintf("the chain would hold %d agents (%s), more than delegation.max_depth %d", e.Agents, e.Path, maxDepth)
}
