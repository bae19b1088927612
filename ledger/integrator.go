package ledger

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Integrator defaults. With a 200 ms interval an event committed just after
// a run waits at most one interval plus one batch, keeping the lag from
// commit to signed checkpoint well under the one second that
// docs/ledger-format.md promises.
const (
	DefaultIntegrateInterval = 200 * time.Millisecond
	DefaultIntegrateBatch    = 10000
)

// IntegratorConfig configures an Integrator. Zero values take the defaults.
type IntegratorConfig struct {
	Interval time.Duration
	Batch    int
	Logger   *slog.Logger
	// OnCheckpoint, if set, is called after each batch is committed.
	OnCheckpoint func(Checkpoint)
	// ReloadSigner, if set, is asked for the current signing key when an
	// integration fails, so a key rotated while this process runs (its old
	// key now retired in the store) is picked up at the next integration
	// instead of failing every retry until a restart.
	ReloadSigner func(context.Context) (Signer, error)
}

// Integrator moves committed events into the Merkle tree: every Interval
// (or sooner when triggered) it calls Store.Integrate until the queue is
// empty. Several processes may each run one against a shared PostgreSQL;
// the store's integrator lock makes them take turns.
type Integrator struct {
	m    Merkle
	sign Signer
	cfg  IntegratorConfig
	log  *slog.Logger

	// mu serialises Integrate calls from the loop and from Flush.
	mu sync.Mutex
	// checked is set once Integrate has run, which also writes the first
	// (empty-tree) checkpoint of a new ledger; until then an empty queue
	// is not a reason to skip it.
	checked bool

	stop context.CancelFunc
	done chan struct{}
}

// NewIntegrator returns an integrator that is not yet running; call Run, or
// use StartIntegrator.
func NewIntegrator(m Merkle, sign Signer, cfg IntegratorConfig) *Integrator {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultIntegrateInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultIntegrateBatch
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Integrator{m: m, sign: sign, cfg: cfg, log: log.With("component", "integrator")}
}

// StartIntegrator starts an integrator in a goroutine. Stop it with Stop.
func StartIntegrator(ctx context.Context, m Merkle, sign Signer, cfg IntegratorConfig) *Integrator {
	i := NewIntegrator(m, sign, cfg)
	ctx, i.stop = context.WithCancel(ctx)
	i.done = make(chan struct{})
	go func() {
		defer close(i.done)
		i.Run(ctx)
	}()
	return i
}

// Stop stops a started integrator, waits for it, and then integrates what
// is still queued (bounded by ctx), so a clean shutdown leaves nothing behind.
func (i *Integrator) Stop(ctx context.Context) error {
	if i.stop != nil {
		i.stop()
		<-i.done
	}
	_, err := i.Flush(ctx)
	return err
}

// Run integrates every Interval until ctx ends. Errors are logged and
// retried with backoff (up to 5 s); the durable queue means nothing is lost
// while the store is unavailable.
func (i *Integrator) Run(ctx context.Context) {
	t := time.NewTimer(i.cfg.Interval)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := i.Flush(ctx)
		wait := i.cfg.Interval
		switch {
		case err == nil:
			backoff = 0
		case ctx.Err() != nil:
			return
		default:
			backoff = min(max(2*backoff, i.cfg.Interval), 5*time.Second)
			wait = backoff
			i.log.ErrorContext(ctx, "merkle integration failed", "err", err, "retry_in", wait)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// Flush integrates batches until the queue is empty and returns the latest
// checkpoint. Tests and shutdown use it to be sure every committed event
// is in a signed checkpoint.
func (i *Integrator) Flush(ctx context.Context) (Checkpoint, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for {
		// An idle ledger costs one read per tick, not a write transaction
		// competing with settlements for SQLite's single writer.
		if i.checked {
			pending, _, err := i.m.PendingEvents(ctx)
			if err != nil {
				return Checkpoint{}, err
			}
			if pending == 0 {
				return i.m.LatestCheckpoint(ctx)
			}
		}
		start := time.Now()
		cp, integrated, err := i.m.Integrate(ctx, i.cfg.Batch, i.sign)
		if err != nil && i.reloadSigner(ctx) {
			cp, integrated, err = i.m.Integrate(ctx, i.cfg.Batch, i.sign)
		}
		if err != nil {
			return Checkpoint{}, err
		}
		i.checked = true
		if !integrated {
			return cp, nil
		}
		i.log.DebugContext(ctx, "merkle checkpoint", "size", cp.Size, "key", cp.KeyID, "took", time.Since(start))
		if i.cfg.OnCheckpoint != nil {
			i.cfg.OnCheckpoint(cp)
		}
	}
}

// reloadSigner asks ReloadSigner for the current key and reports whether it
// differs from the one in use. The store does not say why Integrate failed,
// so any failure triggers a reload; a failed reload keeps the old key and
// the original error is what the caller reports.
func (i *Integrator) reloadSigner(ctx context.Context) bool {
	if i.cfg.ReloadSigner == nil || ctx.Err() != nil {
		return false
	}
	s, err := i.cfg.ReloadSigner(ctx)
	if err != nil {
		i.log.WarnContext(ctx, "reloading the checkpoint signing key failed", "key", i.sign.KeyID(), "err", err)
		return false
	}
	if s == nil || s.KeyID() == i.sign.KeyID() {
		return false
	}
	i.log.InfoContext(ctx, "checkpoint signing key changed; signing with the new key", "old", i.sign.KeyID(), "new", s.KeyID())
	i.sign = s
	return true
}
