package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/internal/telemetry"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/mcp"
	"github.com/caracal-dev/caracal/policy"
)

type mcpFlags struct {
	agent           string
	listen          string
	name            string
	upstreamURL     string
	headers         []string
	trusted         bool
	maxMessageSize  int64
	callTimeout     time.Duration
	maxCallDuration time.Duration
	allowedOrigins  []string
	allowedHosts    []string
	server          serverFlags
	obs             obsFlags

	sessionIdleTimeout time.Duration
	maxSessions        int
}

// defaultMaxSessions bounds the HTTP front's open sessions by default:
// each runs its own stdio upstream processes.
const defaultMaxSessions = 100

func newMCPCmd(f *Factory) *cobra.Command {
	var fl mcpFlags
	cmd := &cobra.Command{
		Use:   "mcp [flags] [-- COMMAND ARGS...]",
		Short: "Run the metering MCP proxy in front of MCP servers",
		Long: `Run the metering MCP proxy between an MCP host and MCP servers.

Every tools/call is priced, checked against the agent's budgets before it is
relayed, and recorded in the ledger; tools/list shows each tool's price in
_meta["dev.caracal/price"]; every other message passes through unchanged.

Upstreams, in order of precedence:
  -- COMMAND ARGS...     one stdio server, launched and supervised by Caracal
  --upstream-url URL     one Streamable HTTP (or legacy SSE) server
  mcp.upstreams          from the configuration file; with several, tool
                         names are prefixed <server>__<tool> (gateway mode)

Fronts:
  stdio (default)        the host launches caracal; the agent is --agent or
                         $CARACAL_AGENT
  --listen ADDR          Streamable HTTP at http://ADDR/mcp; agents send
                         Authorization: Bearer <agent key>. With --agent on a
                         loopback address, requests without a key are charged
                         to that agent.

See docs/mcp.md.`,
		Example: `  caracal mcp --agent claude -- npx -y @modelcontextprotocol/server-everything
  caracal mcp --agent claude --upstream-url https://mcp.example.com/mcp
  caracal mcp --listen 127.0.0.1:8090 --config ~/.caracal/config.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() < 0 && len(args) > 0 {
				return Usagef("unexpected argument %q: put the upstream command after --", args[0])
			}
			if cmd.ArgsLenAtDash() > 0 {
				return Usagef("unexpected argument %q: put the upstream command after --", args[0])
			}
			return runMCP(cmd.Context(), f, fl, args)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&fl.agent, "agent", "", "agent (name or ID) charged for calls; default $CARACAL_AGENT")
	fs.StringVar(&fl.listen, "listen", "", "serve the Streamable HTTP front on this address instead of stdio (default mcp.listen)")
	fs.StringVar(&fl.name, "name", "", "name of a single upstream in resources (mcp:<name>/<tool>); default the name the server advertises")
	fs.StringVar(&fl.upstreamURL, "upstream-url", "", "URL of a Streamable HTTP (or SSE) upstream")
	fs.StringArrayVar(&fl.headers, "header", nil, "HTTP header for --upstream-url, as Name=Value (repeatable)")
	fs.BoolVar(&fl.trusted, "trusted", false, "use prices the single upstream declares in its tools' _meta (the pricebook still wins)")
	fs.Int64Var(&fl.maxMessageSize, "max-message-size", mcp.DefaultMaxMessageSize, "largest JSON-RPC message accepted from either side, in bytes")
	fs.DurationVar(&fl.callTimeout, "call-timeout", 2*time.Minute, "longest wait for a tools/call response without progress")
	fs.DurationVar(&fl.maxCallDuration, "max-call-duration", 15*time.Minute, "longest a tools/call may run, even while reporting progress")
	fs.StringArrayVar(&fl.allowedOrigins, "allowed-origin", nil, "extra Origin accepted by the HTTP front (repeatable)")
	fs.StringArrayVar(&fl.allowedHosts, "allowed-host", nil, "extra Host accepted by the HTTP front (repeatable)")
	addServerFlags(fs, &fl.server, "the HTTP front")
	bindObsFlags(fs, &fl.obs, true)
	fs.DurationVar(&fl.sessionIdleTimeout, "session-idle-timeout", mcp.DefaultSessionIdleTimeout, "HTTP front: close a session (and end its upstream processes) after it is unused this long")
	fs.IntVar(&fl.maxSessions, "max-sessions", defaultMaxSessions, "HTTP front: most sessions open at once; more are refused with 503 (0: no limit)")
	return cmd
}

func runMCP(ctx context.Context, f *Factory, fl mcpFlags, command []string) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	obs, err := f.newObservability(cfg, fl.obs)
	if err != nil {
		return err
	}
	if fl.maxMessageSize <= 0 {
		return Usagef("--max-message-size: must be positive")
	}
	if fl.callTimeout <= 0 || fl.maxCallDuration <= 0 {
		return Usagef("--call-timeout and --max-call-duration: must be positive")
	}
	timeouts, err := fl.server.timeouts("mcp", cfg.MCP.ServerTimeouts)
	if err != nil {
		return err
	}
	if fl.sessionIdleTimeout <= 0 {
		return Usagef("--session-idle-timeout: must be positive")
	}
	if fl.maxSessions < 0 {
		return Usagef("--max-sessions: must not be negative (0: no limit)")
	}
	shutdown, err := fl.server.shutdownTimeout("mcp", cfg.MCP.ServerTimeouts)
	if err != nil {
		return err
	}
	cert, err := fl.server.certificate(cfg.TLS, obs.log)
	if err != nil {
		return err
	}
	ups, err := mcpUpstreams(cfg, fl, command)
	if err != nil {
		return err
	}
	listen := fl.listen
	if listen == "" {
		listen = cfg.MCP.Listen
	}
	agentRef := fl.agent
	if agentRef == "" {
		agentRef = strings.TrimSpace(os.Getenv("CARACAL_AGENT"))
	}
	if listen == "" && agentRef == "" {
		return Usagef("--agent: required for the stdio front (or set CARACAL_AGENT)")
	}
	if listen != "" && agentRef != "" && !mcp.IsLoopback(listen) {
		return Usagef("--agent: refusing to accept requests without a key on %s; keyless mode (--listen with --agent) needs a loopback address such as 127.0.0.1", listen)
	}

	log := obs.log.With("component", "mcp")
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	if err := obs.attachFactory(ctx, f, cfg); err != nil {
		return err
	}
	observer, stopAlerts, err := withAlerts(ctx, cfg, store, obs.observer(log), obs.log)
	if err != nil {
		return err
	}
	defer stopAlerts()
	popts := mcp.Options{
		Upstreams:       ups,
		MaxMessageSize:  fl.maxMessageSize,
		CallTimeout:     fl.callTimeout,
		MaxCallDuration: fl.maxCallDuration,
		Stderr:          f.IO.ErrOut,
		Logger:          log,
		Version:         buildVersion().Version,
		Monitor:         obs.metrics,
	}
	// A reservation must outlive the longest call the proxy lets run, or
	// the expiry sweep would settle a live call as unconfirmed.
	engine := newEngine(cfg, store, interpose.ReservationTTL(popts.LongestCall()), log, observer)
	agentID := ""
	if agentRef != "" {
		a, err := engine.Agent(ctx, agentRef)
		if err != nil {
			if errors.Is(err, ledger.ErrNotFound) {
				return Usagef("--agent: no agent named %q (see `caracal agent list`)", agentRef)
			}
			return err
		}
		agentID = a.ID
	}
	popts.Meter = engine
	proxy, err := mcp.New(popts)
	if err != nil {
		return Usagef("%v", err)
	}
	if err := proxy.CheckCommands(); err != nil {
		return Usagef("%v", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The sweep and the integrator outlive the signal that starts the
	// shutdown: they settle and log what the drain finishes.
	// The base logger: the integrator adds its own component attribute,
	// and a line must not carry the key twice.
	bg, err := startBackground(ctx, cfg, engine, store, cfg.Home, obs.log)
	if err != nil {
		// A host starts caracal mcp and waits on it: serve, fail closed
		// where the store is needed, and leave signing to another process.
		obs.log.Warn("checkpoints will not be signed by this process; events stay queued for the next integrator", "err", err)
	}
	defer bg.stop()

	if listen == "" {
		obs.ready.Add(telemetry.CheckUpstreams, obs.metrics.UpstreamsReady)
		stopMetrics, err := obs.serveMetrics(ctx, cert)
		if err != nil {
			return err
		}
		defer stopMetrics()
		return proxy.ServeStdio(ctx, agentID, f.IO.In, f.IO.Out)
	}
	front, err := proxy.NewHTTPFront(mcp.FrontOptions{
		Auth:           engine,
		ListenAddr:     listen,
		DefaultAgentID: agentID,
		AllowedHosts:   fl.allowedHosts,
		AllowedOrigins: fl.allowedOrigins,

		IdleTimeout: fl.sessionIdleTimeout,
		MaxSessions: fl.maxSessions,
	})
	if err != nil {
		return Usagef("--listen: %v", err)
	}
	defer front.Close()
	obs.metrics.CountHTTPSessions(front.Sessions)
	stopMetrics, err := obs.serveMetrics(ctx, cert)
	if err != nil {
		return err
	}
	defer stopMetrics()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return Usagef("--listen: %v", err)
	}
	srv := httpserver.New(front, timeouts, log)
	srv.Handler = obs.handler(srv.Handler)
	fmt.Fprintf(f.IO.ErrOut, "caracal mcp: listening on %s://%s/mcp\n", scheme(cert), ln.Addr())
	// POSTs in flight finish; GET streams, which never do, end at once;
	// at the deadline every session is closed, settling its calls.
	return httpserver.Serve(ctx, srv, ln, httpserver.ServeOptions{
		TLS:             cert,
		ShutdownTimeout: shutdown,
		Draining: func() {
			obs.ready.SetDraining()
			front.Drain()
		},
		Abort:  front.Abort,
		Logger: log,
	})
}

// mcpUpstreams picks the upstreams: the command after --, else
// --upstream-url, else mcp.upstreams from the configuration.
func mcpUpstreams(cfg *Config, fl mcpFlags, command []string) ([]mcp.UpstreamSpec, error) {
	if len(command) > 0 && fl.upstreamURL != "" {
		return nil, Usagef("--upstream-url: give either an upstream URL or a command after --, not both")
	}
	if len(fl.headers) > 0 && fl.upstreamURL == "" {
		return nil, Usagef("--header: only applies to --upstream-url")
	}
	if fl.name != "" {
		if err := policy.ValidateUpstreamName(fl.name); err != nil {
			return nil, Usagef("--name: %v", err)
		}
	}
	switch {
	case len(command) > 0:
		return []mcp.UpstreamSpec{{Name: fl.name, Command: command, Trusted: fl.trusted}}, nil
	case fl.upstreamURL != "":
		if err := validateHTTPURL(fl.upstreamURL); err != nil {
			return nil, Usagef("--upstream-url: %v", err)
		}
		h := map[string]string{}
		for _, kv := range fl.headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, Usagef("--header: %q is not Name=Value", kv)
			}
			h[strings.TrimSpace(k)] = expandEnv(v)
		}
		return []mcp.UpstreamSpec{{Name: fl.name, URL: fl.upstreamURL, Headers: h, Trusted: fl.trusted}}, nil
	}
	if len(cfg.MCP.Upstreams) == 0 {
		return nil, Usagef("no upstream: give a command after --, --upstream-url, or mcp.upstreams in the configuration")
	}
	if fl.name != "" {
		return nil, Usagef("--name: only applies to a single upstream given on the command line")
	}
	out := make([]mcp.UpstreamSpec, 0, len(cfg.MCP.Upstreams))
	for _, u := range cfg.MCP.Upstreams {
		out = append(out, mcp.UpstreamSpec{Name: u.Name, Command: u.Command, Env: u.Env, URL: u.URL, Headers: u.Headers, Trusted: u.Trusted})
	}
	return out, nil
}
