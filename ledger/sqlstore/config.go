package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
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

// configCache holds each agent's enforcement chain and each API key (with
// its agent) as last read, so a decision or an authentication reads
// nothing. Its zero value is ready.
type configCache struct {
	mu      sync.Mutex
	version int64
	polled  bool
	chains  map[string]cached[chainEntry]
	// keys are by key hash. Unknown hashes are not cached: they would let
	// anyone fill the cache, and a key made by another process must work
	// at once.
	keys map[string]cached[keyEntry]
	// names are agent names by ID, for the events a finish writes.
	names map[string]cached[string]
	// gen counts configChanged calls, so that a read that started before
	// a change is not cached after it.
	gen uint64
}

// cached is a value as read at loaded.
type cached[V any] struct {
	v      V
	loaded time.Time
}

// lookup returns (*m)[key] if it was read less than configMaxAge ago, or
// else load's value, which it keeps unless the configuration changed
// while load ran (what was read may then predate the change). Every
// cache of agents, policies and keys goes through it, under c.mu.
func lookup[V any](c *configCache, m *map[string]cached[V], key string, load func() (V, error)) (V, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := (*m)[key]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Sub(e.loaded) < configMaxAge {
		return e.v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		if *m == nil {
			*m = make(map[string]cached[V])
		}
		(*m)[key] = cached[V]{v: v, loaded: now}
	}
	return v, nil
}

// keyEntry is an API key and its agent.
type keyEntry struct {
	key   policy.APIKey
	agent policy.Agent
}

// chainEntry is an agent's chain and the active policies on it.
type chainEntry struct {
	chain []policy.Agent
	pols  []policy.PolicyUsage // usage fields zero
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
	s.config.chains, s.config.keys, s.config.names = nil, nil, nil
	s.config.gen++
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
	return lookup(&s.config, &s.config.chains, agentID, func() (chainEntry, error) {
		chain, pols, err := s.loadEnforceChain(ctx, s.rdb, agentID)
		if err != nil {
			return chainEntry{}, s.wrap(err)
		}
		return chainEntry{chain: chain, pols: pols}, nil
	})
}

// KeyByHash implements ledger.Agents: it returns the key with this hash and
// its agent, from the cache when fresh (as chainFor), so a revoked or
// expired key or a suspended agent takes effect at once in this process
// and within configMaxAge in every other.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (policy.APIKey, policy.Agent, error) {
	e, err := lookup(&s.config, &s.config.keys, string(hash), func() (keyEntry, error) {
		k, a, err := s.readKeyByHash(ctx, hash)
		return keyEntry{key: k, agent: a}, err
	})
	if err != nil {
		return policy.APIKey{}, policy.Agent{}, err
	}
	return e.copy()
}

// copy returns the entry's key and agent, sharing nothing a caller could
// change with the cache.
func (e keyEntry) copy() (policy.APIKey, policy.Agent, error) {
	k, a := e.key, e.agent
	if k.ExpiresAt != nil {
		t := *k.ExpiresAt
		k.ExpiresAt = &t
	}
	if k.RevokedAt != nil {
		t := *k.RevokedAt
		k.RevokedAt = &t
	}
	a.Metadata = maps.Clone(a.Metadata)
	return k, a, nil
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

// agentName returns the name of the agent with this ID, from the cache
// when fresh (as chainFor) or else read through q.
func (s *Store) agentName(ctx context.Context, q querier, agentID string) (string, error) {
	return lookup(&s.config, &s.config.names, agentID, func() (string, error) {
		var name string
		if err := q.QueryRowContext(ctx, s.q(agentNameSQL), agentID).Scan(&name); err != nil {
			return "", fmt.Errorf("read the name of agent %s: %w", agentID, err)
		}
		return name, nil
	})
}
