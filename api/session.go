package api

import (
	"context"
	"errors"

	"github.com/caracal-dev/caracal/ledger"
)

// ErrInvalidAdminToken is CheckAdminToken's answer for an unknown,
// revoked or malformed admin token.
var ErrInvalidAdminToken = errors.New("invalid admin token")

// CheckAdminToken resolves an admin token with the same rules as the
// API's bearer authentication, for the dashboard's sign-in: one rule in
// one place.
func (s *Server) CheckAdminToken(ctx context.Context, tok string) (ledger.AdminToken, error) {
	t, err := s.adminToken(ctx, tok)
	if errors.Is(err, errUnauthorized) {
		return t, ErrInvalidAdminToken
	}
	return t, err
}
