package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caracal-dev/caracal/internal/alerts"
	"github.com/caracal-dev/caracal/interpose"
)

// fileAlert is one `alerts` entry as written. Scalars are kept as text so
// that a threshold of 50.5 or a denied of "yes" is refused, not coerced.
type fileAlert struct {
	URL        string   `yaml:"url"`
	Secret     string   `yaml:"secret"`
	SecretEnv  string   `yaml:"secret_env"`
	Thresholds []string `yaml:"thresholds"`
	Denied     string   `yaml:"denied"`
	Agents     []string `yaml:"agents"`
}

// maxThreshold bounds a threshold: usage can pass 100% (an unconfirmed
// charge larger than its reservation), but not by more than this.
const maxThreshold = 1000

var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// loadAlerts checks the `alerts` section. The secret of a secret_env entry
// is read when a serving command starts (AlertsFor), so commands that
// send no alerts do not need it.
func loadAlerts(in []fileAlert) ([]alerts.Webhook, error) {
	var out []alerts.Webhook
	seen := map[string]bool{}
	for i, fa := range in {
		key := fmt.Sprintf("config: alerts[%d]", i)
		w := alerts.Webhook{URL: strings.TrimSpace(expandEnv(fa.URL)), Secret: expandEnv(fa.Secret), SecretEnv: strings.TrimSpace(fa.SecretEnv)}
		switch {
		case w.URL == "":
			return nil, Usagef("%s.url: missing", key)
		case seen[w.URL]:
			return nil, Usagef("%s.url: duplicate url %q", key, w.URL)
		case w.Secret == "" && w.SecretEnv == "":
			return nil, Usagef("%s: set secret or secret_env (deliveries are signed with it)", key)
		case w.Secret != "" && w.SecretEnv != "":
			return nil, Usagef("%s: set secret or secret_env, not both", key)
		case w.SecretEnv != "" && !envVarName.MatchString(w.SecretEnv):
			return nil, Usagef("%s.secret_env: invalid variable name %q", key, w.SecretEnv)
		}
		if err := validateHTTPURL(w.URL); err != nil {
			return nil, Usagef("%s.url: %v", key, err)
		}
		seen[w.URL] = true
		for j, s := range fa.Thresholds {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > maxThreshold {
				return nil, Usagef("%s.thresholds[%d]: invalid threshold %q: want a whole percent from 1 to %d", key, j, s, maxThreshold)
			}
			if slices.Contains(w.Thresholds, n) {
				return nil, Usagef("%s.thresholds[%d]: duplicate threshold %d", key, j, n)
			}
			w.Thresholds = append(w.Thresholds, n)
		}
		slices.Sort(w.Thresholds)
		if s := strings.TrimSpace(fa.Denied); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, Usagef("%s.denied: invalid boolean %q: want true or false", key, s)
			}
			w.Denied = b
		}
		if len(w.Thresholds) == 0 && !w.Denied {
			return nil, Usagef("%s: set thresholds or denied: true, or this webhook is never called", key)
		}
		for j, a := range fa.Agents {
			a = strings.TrimSpace(expandEnv(a))
			if a == "" {
				return nil, Usagef("%s.agents[%d]: empty agent name", key, j)
			}
			w.Agents = append(w.Agents, a)
		}
		out = append(out, w)
	}
	return out, nil
}

// AlertsFor builds the budget alerts of cfg over store: the Observer to
// combine with the engine's others (nil when no webhook is configured)
// and the function that enqueues and delivers until ctx ends (it returns
// at once when there is nothing to do). Every serving command that runs
// an interpose.Engine should use it.
func AlertsFor(cfg *Config, store alerts.Store, log *slog.Logger) (interpose.Observer, func(ctx context.Context), error) {
	if len(cfg.Alerts) == 0 {
		return nil, func(context.Context) {}, nil
	}
	hooks := slices.Clone(cfg.Alerts)
	for i := range hooks {
		w := &hooks[i]
		if w.SecretEnv == "" {
			continue
		}
		if w.Secret = os.Getenv(w.SecretEnv); w.Secret == "" {
			return nil, nil, Usagef("config: alerts[%d].secret_env: environment variable %s is not set", i, w.SecretEnv)
		}
	}
	a := alerts.New(alerts.Options{Store: store, Webhooks: hooks, Logger: log.With("component", "alerts")})
	return a, func(ctx context.Context) { _ = a.Run(ctx) }, nil
}

// withAlerts starts cfg's alerts beside a serving command and returns the
// engine's Observer (base plus the alerts') and a stop function, to defer,
// that waits for the alerts still waiting to be enqueued.
func withAlerts(ctx context.Context, cfg *Config, store alerts.Store, base interpose.Observer, log *slog.Logger) (interpose.Observer, func(), error) {
	obs, run, err := AlertsFor(cfg, store, log)
	if err != nil || obs == nil {
		return base, func() {}, err
	}
	// The alerts outlive ctx until stop: a serving command's ctx ends at
	// the shutdown signal, and the settlements of its drain still count.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return interpose.Observers{base, obs}, func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	}, nil
}
