-- Caracal schema, PostgreSQL dialect. Times are Unix nanoseconds (UTC) in
-- BIGINT columns named *_ns; money is int64 nano-units in *_nanos columns.

-- +goose Up
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    owner       TEXT NOT NULL,
    parent_id   TEXT REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_ns  BIGINT NOT NULL
);
CREATE INDEX agents_parent ON agents(parent_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    prefix      TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    created_ns  BIGINT NOT NULL,
    expires_ns  BIGINT,
    revoked_ns  BIGINT
);
CREATE INDEX api_keys_agent ON api_keys(agent_id);

CREATE TABLE policies (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    version         BIGINT NOT NULL,
    limit_nanos     BIGINT NOT NULL CHECK (limit_nanos >= 0),
    currency        TEXT NOT NULL,
    win             TEXT NOT NULL,
    win_type        TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    allow           TEXT NOT NULL DEFAULT '[]',
    active          BOOLEAN NOT NULL,
    delegated_from  TEXT,
    created_ns      BIGINT NOT NULL
);
CREATE INDEX policies_agent ON policies(agent_id);

-- Every version of every policy, including the current one.
CREATE TABLE policy_versions (
    policy_id       TEXT NOT NULL REFERENCES policies(id),
    version         BIGINT NOT NULL,
    agent_id        TEXT NOT NULL,
    limit_nanos     BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    win             TEXT NOT NULL,
    win_type        TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    allow           TEXT NOT NULL,
    active          BOOLEAN NOT NULL,
    delegated_from  TEXT,
    created_ns      BIGINT NOT NULL,
    PRIMARY KEY (policy_id, version)
);

-- Usage per policy and bucket (the calendar window's start, or the minute
-- for rolling windows). Reserve and settle move amounts between columns.
CREATE TABLE usage (
    policy_id       TEXT NOT NULL REFERENCES policies(id),
    bucket_ns       BIGINT NOT NULL,
    spent_nanos     BIGINT NOT NULL DEFAULT 0,
    reserved_nanos  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (policy_id, bucket_ns)
);

CREATE TABLE prices (
    resource                  TEXT PRIMARY KEY,
    currency                  TEXT NOT NULL,
    per_call_nanos            BIGINT NOT NULL DEFAULT 0,
    input_per_million_nanos   BIGINT NOT NULL DEFAULT 0,
    output_per_million_nanos  BIGINT NOT NULL DEFAULT 0,
    cached_per_million_nanos  BIGINT NOT NULL DEFAULT 0,
    cache_write_per_million_nanos BIGINT NOT NULL DEFAULT 0,
    reasoning_per_million_nanos   BIGINT NOT NULL DEFAULT 0,
    per_unit_path             TEXT,
    per_unit_nanos            BIGINT NOT NULL DEFAULT 0,
    charge_errors             BOOLEAN,
    updated_ns                BIGINT NOT NULL
);

CREATE TABLE reservations (
    request_id     TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents(id),
    chain          TEXT NOT NULL,
    resource       TEXT NOT NULL,
    operation      TEXT NOT NULL,
    upstream       TEXT NOT NULL DEFAULT '',
    amount_nanos   BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    unpriced       BOOLEAN NOT NULL DEFAULT false,
    quantity       TEXT NOT NULL DEFAULT '',
    unit           TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL CHECK (status IN ('open', 'settled', 'released', 'expired')),
    event_id       TEXT,
    created_ns     BIGINT NOT NULL,
    expires_ns     BIGINT NOT NULL
);
CREATE INDEX reservations_open ON reservations(status, expires_ns);

-- The usage buckets a reservation holds, so settlement moves exactly what
-- was reserved.
CREATE TABLE reservation_buckets (
    request_id  TEXT NOT NULL REFERENCES reservations(request_id),
    policy_id   TEXT NOT NULL,
    bucket_ns   BIGINT NOT NULL,
    PRIMARY KEY (request_id, policy_id)
);

-- The append-only ledger. pk orders events by commit for the integrator;
-- the Merkle sequence number lives in leaves.
CREATE TABLE events (
    pk                  BIGSERIAL PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    time_ns             BIGINT NOT NULL,
    agent_id            TEXT NOT NULL,
    agent_name          TEXT NOT NULL,
    chain               TEXT NOT NULL,
    resource            TEXT NOT NULL,
    operation           TEXT NOT NULL,
    quantity            TEXT NOT NULL DEFAULT '',
    unit                TEXT NOT NULL DEFAULT '',
    amount_nanos        BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    outcome             TEXT NOT NULL CHECK (outcome IN ('charged', 'denied', 'unconfirmed', 'refunded')),
    code                TEXT NOT NULL DEFAULT '',
    reason              TEXT NOT NULL DEFAULT '',
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0,
    cached_tokens       BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens  BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens    BIGINT NOT NULL DEFAULT 0,
    upstream            TEXT NOT NULL DEFAULT '',
    unpriced            BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX events_agent_time ON events(agent_id, time_ns);
CREATE INDEX events_time ON events(time_ns);
CREATE INDEX events_request ON events(request_id);

-- Committed events not yet in the Merkle tree, in commit order of pk. The
-- integrator deletes a row when it writes the event's leaf; the ledger
-- itself is never updated.
CREATE TABLE integration_queue (
    event_pk   BIGINT PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    queued_ns  BIGINT NOT NULL
);

-- Merkle leaves: seq is the leaf index.
CREATE TABLE leaves (
    seq        BIGINT PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE REFERENCES events(id),
    leaf_hash  BYTEA NOT NULL
);

-- tlog stored hashes by storage index.
CREATE TABLE merkle_hashes (
    idx   BIGINT PRIMARY KEY,
    hash  BYTEA NOT NULL
);

CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    retired_ns  BIGINT
);

CREATE TABLE checkpoints (
    size        BIGINT PRIMARY KEY,
    root        BYTEA NOT NULL,
    note        TEXT NOT NULL,
    key_id      TEXT NOT NULL REFERENCES signing_keys(id),
    created_ns  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE checkpoints;
DROP TABLE signing_keys;
DROP TABLE merkle_hashes;
DROP TABLE leaves;
DROP TABLE integration_queue;
DROP TABLE events;
DROP TABLE reservation_buckets;
DROP TABLE reservations;
DROP TABLE prices;
DROP TABLE usage;
DROP TABLE policy_versions;
DROP TABLE policies;
DROP TABLE api_keys;
DROP TABLE agents;
