package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/caracal-dev/caracal/api"
	"github.com/caracal-dev/caracal/internal/dashboard"
	"github.com/caracal-dev/caracal/ledger"
)

// dashboardTokens checks a dashboard sign-in with the API's own admin
// token rules.
type dashboardTokens struct{ api *api.Server }

func (d dashboardTokens) CheckAdminToken(ctx context.Context, tok string) (dashboard.Identity, error) {
	t, err := d.api.CheckAdminToken(ctx, tok)
	if errors.Is(err, api.ErrInvalidAdminToken) {
		return dashboard.Identity{}, dashboard.ErrBadToken
	}
	if err != nil {
		return dashboard.Identity{}, err
	}
	return dashboard.Identity{Name: t.Name, ReadOnly: t.ReadOnly}, nil
}

// withDashboard serves the web dashboard at / in front of the API; its
// live streams end when stop is closed, as the shutdown starts.
func withDashboard(a *api.Server, store ledger.Store, log *slog.Logger, stop <-chan struct{}) (http.Handler, error) {
	return dashboard.New(dashboard.Options{API: a, Tokens: dashboardTokens{a}, Events: store, Logger: log, Stop: stop})
}
