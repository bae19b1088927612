package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/caracal-dev/caracal/ledger"
)

// startIntegrator starts the Merkle integrator of a serving process, or
// returns nil when this process does not sign: merkle.sign is never, or
// (auto) this home does not hold the database's active signing key. Every
// process queues its events in the store, so a process that does not sign
// still has its events integrated by one that does; among several signers
// the store's integrator lock lets one at a time integrate.
func startIntegrator(ctx context.Context, cfg *Config, store ledger.Merkle, home string, log *slog.Logger) (*ledger.Integrator, error) {
	if cfg.Merkle.Sign == SignNever {
		log.Info("merkle.sign is never: this process queues its events and does not integrate or sign checkpoints; a signing process integrates them")
		return nil, nil
	}
	signer, err := ledger.LoadSigner(ctx, store, home)
	if errors.Is(err, ledger.ErrNoSigningKey) {
		log.Info("no checkpoint signing key in this home: this process queues its events and does not sign; a process holding the key integrates them", "reason", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint signing key: %w", err)
	}
	log.Info("integrating events and signing checkpoints", "key", signer.KeyID())
	return ledger.StartIntegrator(ctx, store, signer, ledger.IntegratorConfig{Logger: log, ReloadSigner: ledger.SignerLoader(store, home)}), nil
}

// stopIntegrator stops in (nil when this process does not sign) and
// integrates what is still queued.
func stopIntegrator(ctx context.Context, in *ledger.Integrator) error {
	if in == nil {
		return nil
	}
	return in.Stop(ctx)
}
