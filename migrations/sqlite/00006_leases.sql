-- Budget leases. A process holds, per policy and usage bucket, a share of
-- the budget's headroom (leases.grant_nanos, also counted in
-- usage.leased_nanos) and admits calls against it in memory; each
-- reservation it writes names it as holder, and its charge stays inside
-- the lease until the holder folds it into usage.spent_nanos. A holder
-- whose heartbeat (lease_holders.expires_ns) lapses is reclaimed by any
-- other process. See docs/ledger-format.md, "Leases".
--
-- config_clock counts changes to agents, policies and keys, so that every
-- process drops what it has cached of them within a bounded time.

-- +goose Up
ALTER TABLE usage ADD COLUMN leased_nanos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN holder TEXT;
ALTER TABLE reservations ADD COLUMN charge_nanos INTEGER;
CREATE INDEX reservations_holder ON reservations(holder) WHERE holder IS NOT NULL;
-- Only open reservations need finding by expiry (the sweep, the open
-- count): a partial index stays small and a finish removes the entry
-- instead of moving it.
DROP INDEX reservations_open;
CREATE INDEX reservations_open ON reservations(expires_ns) WHERE status = 'open';
-- No query looks events up by request ID (a reservation names its event),
-- and with callers' random request IDs the index cost every append a
-- page write at a random place.
DROP INDEX events_request;

CREATE TABLE lease_holders (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    started_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL
);

CREATE TABLE leases (
    holder_id    TEXT NOT NULL REFERENCES lease_holders(id),
    policy_id    TEXT NOT NULL REFERENCES policies(id),
    bucket_ns    INTEGER NOT NULL,
    grant_nanos  INTEGER NOT NULL,
    wanted       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (holder_id, policy_id, bucket_ns)
);
CREATE INDEX leases_policy ON leases(policy_id, bucket_ns);

CREATE TABLE config_clock (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO config_clock (id, version) VALUES (1, 0);

-- +goose StatementBegin
CREATE TRIGGER agents_config_insert AFTER INSERT ON agents
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER agents_config_update AFTER UPDATE ON agents
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER agents_config_delete AFTER DELETE ON agents
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER policies_config_insert AFTER INSERT ON policies
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER policies_config_update AFTER UPDATE ON policies
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER policies_config_delete AFTER DELETE ON policies
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER api_keys_config_insert AFTER INSERT ON api_keys
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER api_keys_config_update AFTER UPDATE ON api_keys
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER api_keys_config_delete AFTER DELETE ON api_keys
BEGIN UPDATE config_clock SET version = version + 1 WHERE id = 1; END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER api_keys_config_delete;
DROP TRIGGER api_keys_config_update;
DROP TRIGGER api_keys_config_insert;
DROP TRIGGER policies_config_delete;
DROP TRIGGER policies_config_update;
DROP TRIGGER policies_config_insert;
DROP TRIGGER agents_config_delete;
DROP TRIGGER agents_config_update;
DROP TRIGGER agents_config_insert;
DROP TABLE config_clock;
DROP TABLE leases;
DROP TABLE lease_holders;
CREATE INDEX events_request ON events(request_id);
DROP INDEX reservations_open;
CREATE INDEX reservations_open ON reservations(status, expires_ns);
DROP INDEX reservations_holder;
ALTER TABLE reservations DROP COLUMN charge_nanos;
ALTER TABLE reservations DROP COLUMN holder;
ALTER TABLE usage DROP COLUMN leased_nanos;
