package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/caracal-dev/caracal/internal/httpserver"
	"github.com/caracal-dev/caracal/internal/telemetry"
	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
)

// LogConfig is the `log` section: the serving commands' stderr log.
type LogConfig struct {
	Level  string `json:"level"`  // debug, info, warn or error
	Format string `json:"format"` // text or json
}

// MetricsConfig is the `metrics` section.
type MetricsConfig struct {
	// AgentLabel keeps the agent label on caracal_charged_total and
	// caracal_budget_used_ratio (default true).
	AgentLabel bool `json:"agent_label"`
	// Listen serves /metrics, /healthz and /readyz on an address of their
	// own; `caracal mcp` on stdio has no other listener.
	Listen string `json:"listen,omitempty"`
}

type fileLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type fileMetrics struct {
	AgentLabel string `yaml:"agent_label"`
	Listen     string `yaml:"listen"`
}

// loadObservability resolves and checks the log and metrics keys.
func (c *Config) loadObservability(set *settings) error {
	c.Log.Level = setting(set, "log.level", "info", func(s string) (string, error) {
		_, err := telemetry.ParseLevel(s)
		return strings.ToLower(s), err
	})
	c.Log.Format = setting(set, "log.format", telemetry.FormatText, telemetry.ParseFormat)
	c.Metrics.AgentLabel = setting(set, "metrics.agent_label", true, parseBool)
	c.Metrics.Listen = setting(set, "metrics.listen", "", checked(validateListen))
	return set.err
}

// obsFlags are the observability flags of the serving commands; empty
// means the configuration decides.
type obsFlags struct {
	logLevel      string
	logFormat     string
	metricsListen string
}

func bindObsFlags(fs *pflag.FlagSet, fl *obsFlags, metricsListen bool) {
	fs.StringVar(&fl.logLevel, "log-level", "", "stderr log level: debug, info, warn or error (default log.level, then info)")
	fs.StringVar(&fl.logFormat, "log-format", "", "stderr log format: text or json (default log.format, then text)")
	if metricsListen {
		fs.StringVar(&fl.metricsListen, "metrics-listen", "", "also serve /metrics, /healthz and /readyz on this address (default metrics.listen)")
	}
}

// observability is what a serving command logs and measures with.
type observability struct {
	log     *slog.Logger
	metrics *telemetry.Metrics
	ready   *telemetry.Readiness
	listen  string // the metrics listener's address, "" for none
}

// newObservability resolves the log flags over the configuration and
// builds the logger; decisions are logged and measured once the store is
// known (see attach).
func (f *Factory) newObservability(cfg *Config, fl obsFlags) (*observability, error) {
	levelText, src := cfg.Log.Level, "config: log.level"
	if fl.logLevel != "" {
		levelText, src = fl.logLevel, "--log-level"
	}
	level, err := telemetry.ParseLevel(levelText)
	if err != nil {
		return nil, Usagef("%s: %v", src, err)
	}
	format := cfg.Log.Format
	if fl.logFormat != "" {
		if format, err = telemetry.ParseFormat(fl.logFormat); err != nil {
			return nil, Usagef("--log-format: %v", err)
		}
	}
	listen := cfg.Metrics.Listen
	if fl.metricsListen != "" {
		if err := validateListen(fl.metricsListen); err != nil {
			return nil, Usagef("--metrics-listen: %v", err)
		}
		listen = fl.metricsListen
	}
	return &observability{
		log:    telemetry.NewLogger(f.IO.ErrOut, level, format),
		ready:  telemetry.NewReadiness(),
		listen: listen,
	}, nil
}

// attach creates the metrics over store and adds the store readiness check.
func (o *observability) attach(cfg *Config, store *sqlstore.Store) {
	o.metrics = telemetry.NewMetrics(telemetry.MetricsOptions{NoAgentLabel: !cfg.Metrics.AgentLabel, Store: store, Process: true})
	o.ready.Add(telemetry.CheckStore, telemetry.StoreCheck(store))
}

// observer is the engine's Observer: a log line and metrics per decision.
func (o *observability) observer(log *slog.Logger) interpose.Observer {
	return interpose.Observers{telemetry.LogObserver{Logger: log}, o.metrics}
}

// handler wraps next with /healthz, /readyz and /metrics.
func (o *observability) handler(next http.Handler) http.Handler {
	return telemetry.Handler(next, o.metrics.Registry, o.ready)
}

// serveMetrics serves the metrics listener, if one is configured, over
// TLS with cert if set. When ctx ends /readyz turns 503, and the listener
// keeps answering until stop is called, so probes see the drain. A failure
// to listen is a usage error, returned at once.
func (o *observability) serveMetrics(ctx context.Context, cert *httpserver.Certificate) (stop func(), err error) {
	if o.listen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, Usagef("--metrics-listen: %v", err)
	}
	srv := httpserver.New(o.handler(nil), httpserver.Timeouts{}, o.log)
	o.log.Info("serving metrics", "addr", ln.Addr().String(), "scheme", scheme(cert))
	context.AfterFunc(ctx, o.ready.SetDraining)
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := httpserver.Serve(mctx, srv, ln, httpserver.ServeOptions{TLS: cert, ShutdownTimeout: 2 * time.Second, Logger: o.log})
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// attachFactory is attach over the factory's store.
func (o *observability) attachFactory(ctx context.Context, f *Factory, cfg *Config) error {
	s, err := f.SQLStore(ctx)
	if err != nil {
		return err
	}
	o.attach(cfg, s)
	return nil
}
