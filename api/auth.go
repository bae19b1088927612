package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/caracal-dev/caracal/internal/apikey"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// principal is who made a request: an admin token's holder or an agent.
type principal struct {
	admin    *ledger.AdminToken
	agent    *policy.Agent
	readOnly bool
}

var errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
	Detail: "missing or invalid credentials: send Authorization: Bearer with an admin token (cra_…) or an agent key (crk_…)"}

// authenticate resolves the request's bearer credential and checks that it
// may call a route of access a. Tokens are looked up by their SHA-256 hash
// on every request — nothing is cached — so a revoked token is refused on
// its next request; the stored prefix is then compared in constant time.
// No credential is ever logged.
func (s *Server) authenticate(ctx context.Context, r *http.Request, a access) (principal, error) {
	if a == public {
		return principal{}, nil
	}
	tok, ok := interpose.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return principal{}, errUnauthorized
	}
	switch {
	case strings.HasPrefix(tok, apikey.AdminScheme):
		t, err := s.adminToken(ctx, tok)
		if err != nil {
			return principal{}, err
		}
		p := principal{admin: &t, readOnly: t.ReadOnly}
		switch {
		case a == agent:
			return p, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "metering endpoints take an agent key (crk_…), not an admin token"}
		case p.readOnly && r.Method != http.MethodGet && r.Method != http.MethodHead:
			return p, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "admin token " + t.Name + " is read-only: it may only read (GET)"}
		}
		return p, nil
	case strings.HasPrefix(tok, apikey.Scheme):
		ag, err := s.opts.Engine.Authenticate(ctx, tok)
		switch {
		case errors.Is(err, interpose.ErrAgentSuspended):
			return principal{}, &Error{Status: http.StatusForbidden, Code: string(policy.CodeAgentSuspended), Detail: err.Error()}
		case errors.Is(err, interpose.ErrUnknownKey), errors.Is(err, interpose.ErrKeyRevoked), errors.Is(err, interpose.ErrKeyExpired):
			return principal{}, errUnauthorized
		case err != nil:
			return principal{}, err
		}
		if a == admin {
			return principal{}, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Detail: "this endpoint needs an admin token; an agent key reaches only metering and its own budgets"}
		}
		return principal{agent: &ag}, nil
	}
	return principal{}, errUnauthorized
}

// adminToken resolves an admin token; unknown and revoked tokens are 401.
func (s *Server) adminToken(ctx context.Context, tok string) (ledger.AdminToken, error) {
	if !apikey.LooksValidWith(apikey.AdminScheme, tok) {
		return ledger.AdminToken{}, errUnauthorized
	}
	t, err := s.opts.Store.AdminTokenByHash(ctx, apikey.Hash(tok))
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.AdminToken{}, errUnauthorized
	}
	if err != nil {
		return ledger.AdminToken{}, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Prefix), []byte(tok[:min(len(tok), len(t.Prefix))])) != 1 || t.RevokedAt != nil {
		return ledger.AdminToken{}, errUnauthorized
	}
	return t, nil
}
