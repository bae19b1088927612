package cli

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/api"
	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/interpose"
)

// serveDefaultListen is where `caracal serve` listens without --listen.
const serveDefaultListen = "127.0.0.1:8090"

type serveFlags struct {
	listen         string
	reservationTTL time.Duration
	maxBodyBytes   int64
	server         serverFlags
	obs            obsFlags
}

func newServeCmd(f *Factory) *cobra.Command {
	var fl serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the admin and metering JSON API",
		Long: `Serve the JSON HTTP API under /v1: the admin operations of this CLI
(agents, keys, policies, delegations, the pricebook, budgets, the ledger,
Merkle proofs) for holders of an admin token (caracal admin token create),
and metering (POST /v1/reservations, then settle or release) for any
program holding an agent key. The OpenAPI document is served at
/v1/openapi.json; /healthz, /readyz and /metrics as on the other servers.

It runs the reservation expiry sweep and the Merkle integrator, as
caracal proxy does. See docs/api.md.`,
		Example: `  caracal admin token create --name ops
  caracal serve --listen 127.0.0.1:8090
  curl -H "Authorization: Bearer $CARACAL_ADMIN_TOKEN" http://127.0.0.1:8090/v1/agents`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), f, fl)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&fl.listen, "listen", serveDefaultListen, "address to listen on")
	fs.DurationVar(&fl.reservationTTL, "reservation-ttl", interpose.DefaultReservationTTL, "how long a reservation may stay open before the sweep settles it as unconfirmed")
	fs.Int64Var(&fl.maxBodyBytes, "max-request-bytes", 1<<20, "largest request body (a pricebook import is the largest)")
	addServerFlags(fs, &fl.server, "the API")
	bindObsFlags(fs, &fl.obs, false)
	return cmd
}

func runServe(ctx context.Context, f *Factory, fl serveFlags) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--reservation-ttl", fl.reservationTTL}} {
		if d.v <= 0 {
			return Usagef("%s: must be positive", d.name)
		}
	}
	if fl.maxBodyBytes <= 0 {
		return Usagef("--max-request-bytes: must be positive")
	}
	timeouts, err := fl.server.timeouts("serve", ServerTimeouts{})
	if err != nil {
		return err
	}
	shutdown, err := fl.server.shutdownTimeout("serve", ServerTimeouts{})
	if err != nil {
		return err
	}
	obs, err := f.newObservability(cfg, fl.obs)
	if err != nil {
		return err
	}
	cert, err := fl.server.certificate(cfg.TLS, obs.log)
	if err != nil {
		return err
	}
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	if err := obs.attachFactory(ctx, f, cfg); err != nil {
		return err
	}
	log := obs.log
	observer, stopAlerts, err := withAlerts(ctx, cfg, store, obs.observer(log), log)
	if err != nil {
		return err
	}
	defer stopAlerts()
	engine := newEngine(cfg, store, fl.reservationTTL, log, observer)
	handler, err := api.New(api.Options{
		Store: store, Engine: engine, Logger: log, MaxDepth: cfg.Delegation.MaxDepth, MaxBodyBytes: fl.maxBodyBytes,
	})
	if err != nil {
		return err
	}
	web, err := withDashboard(handler, store, log, ctx.Done())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fl.listen)
	if err != nil {
		return Usagef("--listen: %v", err)
	}
	srv := httpserver.New(web, timeouts, log)
	srv.Handler = obs.handler(srv.Handler)

	home, err := f.Home()
	if err != nil {
		return err
	}
	bg, err := startBackground(ctx, cfg, engine, store, home, log)
	if err != nil {
		bg.stop()
		return err
	}
	fmt.Fprintf(f.IO.Out, "caracal serve: listening on %s://%s (API under /v1, dashboard at /)\n", scheme(cert), ln.Addr())

	serveErr := httpserver.Serve(ctx, srv, ln, httpserver.ServeOptions{
		TLS:             cert,
		ShutdownTimeout: shutdown,
		Draining:        obs.ready.SetDraining,
		Logger:          log,
	})
	bg.stop()
	return serveErr
}
