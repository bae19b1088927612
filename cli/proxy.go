package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/interpose/llmproxy"
)

// proxyDefaultListen is where `caracal proxy` listens when neither
// --listen nor proxy.listen says otherwise.
const proxyDefaultListen = "127.0.0.1:8080"

type proxyFlags struct {
	listen          string
	upstreamTimeout time.Duration
	maxDuration     time.Duration
	drainTimeout    time.Duration
	maxRequestBytes int64
	server          serverFlags
	obs             obsFlags
}

func newProxyCmd(f *Factory) *cobra.Command {
	var fl proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Serve the metering reverse proxy for LLM APIs (OpenAI-compatible, Anthropic)",
		Long: `Serve the metering reverse proxy for LLM APIs.

Agents call http://HOST/<provider>/<provider path> with their Caracal key
where the SDK expects its API key; the provider's key, from proxy.providers
in the configuration (api_key_env or api_key_file), is injected by the proxy.
Each request's worst-case cost is reserved before it is relayed and settled
from the usage the provider reports.

  OpenAI SDK:    base_url = http://HOST/openai/v1     api_key = crk_…
  Anthropic SDK: base_url = http://HOST/anthropic     api_key = crk_…

See docs/http-proxy.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxy(cmd.Context(), f, fl)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&fl.listen, "listen", "", "address to listen on (default proxy.listen, then "+proxyDefaultListen+")")
	fs.DurationVar(&fl.upstreamTimeout, "upstream-timeout", 10*time.Minute, "longest wait for a provider's response headers (then 504)")
	fs.DurationVar(&fl.maxDuration, "max-duration", 15*time.Minute, "longest exchange with a provider, streams included")
	fs.DurationVar(&fl.drainTimeout, "drain-timeout", time.Minute, "how long to keep reading a response whose client left, to learn its usage")
	fs.Int64Var(&fl.maxRequestBytes, "max-request-bytes", 32<<20, "largest metered request body")
	addServerFlags(fs, &fl.server, "the proxy")
	bindObsFlags(fs, &fl.obs, false)
	return cmd
}

func runProxy(ctx context.Context, f *Factory, fl proxyFlags) error {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	configured := cfg.Proxy.Providers
	if len(configured) == 0 {
		configured = defaultProviders(os.Getenv)
	}
	if len(configured) == 0 {
		return Usagef("config: proxy.providers: none configured, and neither OPENAI_API_KEY nor ANTHROPIC_API_KEY is set; add a provider (see `caracal proxy --help`)")
	}
	providers := make([]llmproxy.Provider, 0, len(configured))
	for i, p := range configured {
		key, err := providerKey(i, p)
		if err != nil {
			return err
		}
		providers = append(providers, llmproxy.Provider{Name: p.Name, BaseURL: p.BaseURL, APIKey: key, Timeout: fl.upstreamTimeout})
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--upstream-timeout", fl.upstreamTimeout}, {"--max-duration", fl.maxDuration}, {"--drain-timeout", fl.drainTimeout}} {
		if d.v <= 0 {
			return Usagef("%s: must be positive", d.name)
		}
	}
	if fl.maxRequestBytes <= 0 {
		return Usagef("--max-request-bytes: must be positive")
	}
	timeouts, err := fl.server.timeouts("proxy", cfg.Proxy.ServerTimeouts)
	if err != nil {
		return err
	}
	shutdown, err := fl.server.shutdownTimeout("proxy", cfg.Proxy.ServerTimeouts)
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
	listen := fl.listen
	if listen == "" {
		listen = cfg.Proxy.Listen
	}
	if listen == "" {
		listen = proxyDefaultListen
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
	// A reservation must outlive the longest exchange and its drain, or
	// the expiry sweep would settle a live stream as unconfirmed.
	engine := newEngine(cfg, store, interpose.ReservationTTL(fl.maxDuration+fl.drainTimeout), log, observer)
	px, err := llmproxy.New(llmproxy.Options{
		Engine:          engine,
		Providers:       providers,
		Logger:          log,
		MaxRequestBytes: fl.maxRequestBytes,
		UpstreamTimeout: fl.upstreamTimeout,
		MaxDuration:     fl.maxDuration,
		DrainTimeout:    fl.drainTimeout,
	})
	if err != nil {
		return Usagef("config: proxy.providers: %v", err)
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return Usagef("--listen: %v", err)
	}
	srv := httpserver.New(px, timeouts, log)
	srv.Handler = obs.handler(srv.Handler)

	// Every charge reaches a signed checkpoint within a second of its commit
	// (docs/ledger-format.md).
	home, err := f.Home()
	if err != nil {
		return err
	}
	bg, err := startBackground(ctx, cfg, engine, store, home, log)
	if err != nil {
		bg.stop()
		return err
	}
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = "/" + p.Name + "/ → " + p.BaseURL
	}
	fmt.Fprintf(f.IO.Out, "caracal proxy: listening on %s://%s (%s)\n", scheme(cert), ln.Addr(), strings.Join(names, ", "))

	// Finish in-flight requests, then the settlements of responses whose
	// clients left; at the deadline, cut what is left so that it is
	// recorded unconfirmed (or released if never relayed) before exit.
	serveErr := httpserver.Serve(ctx, srv, ln, httpserver.ServeOptions{
		TLS:             cert,
		ShutdownTimeout: shutdown,
		Draining:        obs.ready.SetDraining,
		Abort:           px.Abort,
		Pending:         px.Wait,
		Logger:          log,
	})
	bg.stop()
	return serveErr
}

// providerKey reads a provider's API key from its environment variable or
// file. The key itself never appears in an error or a log line.
func providerKey(i int, p Provider) (string, error) {
	field := fmt.Sprintf("config: proxy.providers[%d]", i)
	switch {
	case p.APIKeyEnv != "":
		k := strings.TrimSpace(os.Getenv(p.APIKeyEnv))
		if k == "" {
			return "", Usagef("%s.api_key_env: environment variable %s is not set", field, p.APIKeyEnv)
		}
		return k, nil
	case p.APIKeyFile != "":
		b, err := os.ReadFile(p.APIKeyFile)
		if err != nil {
			return "", Usagef("%s.api_key_file: %v", field, err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", Usagef("%s.api_key_file: %s is empty", field, p.APIKeyFile)
		}
		return k, nil
	}
	return "", Usagef("%s: set api_key_env or api_key_file", field)
}

// defaultProviders is what `caracal proxy` fronts when the configuration
// names no provider: OpenAI and Anthropic at their public addresses, each
// only if its usual key variable is set, so a bare `caracal proxy` works the
// way the SDKs themselves find their keys.
func defaultProviders(getenv func(string) string) []Provider {
	var out []Provider
	for _, p := range []Provider{
		{Name: "openai", BaseURL: "https://api.openai.com", APIKeyEnv: "OPENAI_API_KEY"},
		{Name: "anthropic", BaseURL: "https://api.anthropic.com", APIKeyEnv: "ANTHROPIC_API_KEY"},
	} {
		if getenv(p.APIKeyEnv) != "" {
			out = append(out, p)
		}
	}
	return out
}
