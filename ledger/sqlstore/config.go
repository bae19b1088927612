package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/caracal-dev/caracal/policy"
)

// How fresh what a process caches of agents, policies and keys is. A
// change made through this process is seen at once; one made by another
// process is seen at the next poll of config_clock (a counter every change
// to agents, policies or api_keys bumps, by trigger), and in any case once
// the entry is older than configMaxAge. So a suspended agent, a revoked
// key, a deactivated policy or a lowered limit takes effect in every
// process within configMaxAge. docs/ledger-format.md gives the bound.
const (
	configPollInterval = 250 * time.Millisecond
	configMaxAge       = time.Second
)

// configCache holds each agent's enforcement chain as last read, so a
// decision reads nothing. Its zero value is ready.
type configCache struct {
	mu      sync.Mutex
	version int64
	polled  bool
	chains  map[string]chainEntry
}

// chainEntry is an agent's chain and the active policies on it.
type chainEntry struct {
	chain  []policy.Agent
	pols   []policy.PolicyUsage // usage fields zero
	loaded time.Time
}

// configTx is tx for a change to agents, policies or keys: once it
// commits, this process forgets what it cached of them and freezes its
// leases, so the change applies to the very next decision.
func (s *Store) configTx(ctx context.Context, fn func(*sql.Tx) error) error {
	err := s.tx(ctx, fn)
	s.configChanged()
	return err
}

// configChanged drops cached chains and stops admissions under current
// leases until each is acquired again against the changed policies.
func (s *Store) configChanged() {
	s.config.mu.Lock()
	s.config.chains = nil
	s.config.mu.Unlock()
	s.lz.mu.Lock()
	for _, l := range s.lz.leases {
		l.frozen = true
	}
	s.lz.mu.Unlock()
}

// chainFor returns the agent's chain and its active policies, from the
// cache when fresh.
func (s *Store) chainFor(ctx context.Context, agentID string) (chainEntry, error) {
	now := time.Now()
	s.config.mu.Lock()
	e, ok := s.config.chains[agentID]
	s.config.mu.Unlock()
	if ok && now.Sub(e.loaded) < configMaxAge {
		return e, nil
	}
	chain, pols, err := s.loadEnforceChain(ctx, s.rdb, agentID)
	if err != nil {
		return chainEntry{}, s.wrap(err)
	}
	e = chainEntry{chain: chain, pols: pols, loaded: now}
	s.config.mu.Lock()
	if s.config.chains == nil {
		s.config.chains = make(map[string]chainEntry)
	}
	s.config.chains[agentID] = e
	s.config.mu.Unlock()
	return e, nil
}

// pollConfig reads config_clock and, if another process changed agents,
// policies or keys since the last poll, acts as configChanged.
func (s *Store) pollConfig(ctx context.Context) error {
	var v int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT version FROM config_clock WHERE id = 1`).Scan(&v); err != nil {
		return s.wrap(fmt.Errorf("read config clock: %w", err))
	}
	s.config.mu.Lock()
	changed := s.config.polled && v != s.config.version
	s.config.version, s.config.polled = v, true
	s.config.mu.Unlock()
	if changed {
		s.configChanged()
	}
	return nil
}
