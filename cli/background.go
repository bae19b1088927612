package cli

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/caracal-dev/caracal/interpose"
	"github.com/caracal-dev/caracal/ledger"
)

// background is what a serving command runs beside its front: the expiry
// sweep of reservations and the Merkle integrator. Both outlive the signal
// that starts a shutdown (they run on a context the signal does not
// cancel), so they settle and integrate what the drain finishes.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
	integ  *ledger.Integrator
	log    *slog.Logger
}

// startBackground starts the sweep and, where this process signs, the
// integrator. When the integrator cannot start, the sweep still runs and
// the error is returned beside b: the caller decides whether that is fatal.
func startBackground(ctx context.Context, cfg *Config, engine *interpose.Engine, store ledger.Store, home string, log *slog.Logger) (*background, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b := &background{cancel: cancel, done: make(chan struct{}), log: log}
	go func() {
		defer close(b.done)
		if err := engine.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("reservation sweep stopped", "err", err)
		}
	}()
	integ, err := startIntegrator(ctx, cfg, store, home, log)
	b.integ = integ
	return b, err
}

// stop ends the sweep first, then integrates what the last settlements
// queued, giving that at most 10 seconds.
func (b *background) stop() {
	b.cancel()
	<-b.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stopIntegrator(ctx, b.integ); err != nil {
		b.log.Warn("final Merkle integration failed; the next process integrates the rest", "err", err)
	}
}

// newEngine builds the enforcement engine of a serving command from the
// configuration: one mapping of the pricing and enforcement keys for
// proxy, mcp and serve. ttl is how long the command's longest call may
// hold a reservation (interpose.ReservationTTL).
func newEngine(cfg *Config, store ledger.Store, ttl time.Duration, log *slog.Logger, observer interpose.Observer) *interpose.Engine {
	return interpose.New(interpose.Options{
		Store:             store,
		DefaultPrice:      cfg.Pricing.Default,
		Currency:          cfg.Pricing.Currency,
		Strict:            cfg.Pricing.Strict,
		ChargeUnpricedLLM: cfg.Pricing.UnpricedLLM == UnpricedLLMDefault,
		AllowUnbudgeted:   cfg.Enforcement.Unbudgeted == UnbudgetedAllow,
		ReservationTTL:    ttl,
		Logger:            log,
		Observer:          observer,
	})
}
