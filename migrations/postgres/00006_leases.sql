-- Budget leases. A process holds, per policy and usage bucket, a share of
-- the budget's headroom (leases.grant_nanos, also counted in
-- usage.leased_nanos) and admits calls against it in memory; each
-- reservation it writes names it as holder, and its charge stays inside
-- the lease until the holder folds it into usage.spent_nanos. A holder
-- whose heartbeat (lease_holders.expires_ns) lapses is reclaimed by any
-- other process. See docs/ledger-format.md, "Leases".
--
-- config_clock counts changes to agents, policies and keys, so that every
-- process drops what it has cached of them within a bounded time. It is a
-- sequence read through a view, not a counter row, so that concurrent
-- administrative transactions never queue (or deadlock) on one row.

-- +goose Up
ALTER TABLE usage ADD COLUMN leased_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN holder TEXT;
ALTER TABLE reservations ADD COLUMN charge_nanos BIGINT;
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
    started_ns  BIGINT NOT NULL,
    expires_ns  BIGINT NOT NULL
);

CREATE TABLE leases (
    holder_id    TEXT NOT NULL REFERENCES lease_holders(id),
    policy_id    TEXT NOT NULL REFERENCES policies(id),
    bucket_ns    BIGINT NOT NULL,
    grant_nanos  BIGINT NOT NULL,
    wanted       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (holder_id, policy_id, bucket_ns)
);
CREATE INDEX leases_policy ON leases(policy_id, bucket_ns);

CREATE SEQUENCE config_clock_seq;
CREATE VIEW config_clock AS SELECT 1 AS id, last_value AS version FROM config_clock_seq;

-- +goose StatementBegin
CREATE FUNCTION caracal_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('config_clock_seq');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER agents_config AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_config_changed();
CREATE TRIGGER policies_config AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_config_changed();
CREATE TRIGGER api_keys_config AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_config_changed();

-- +goose Down
DROP TRIGGER api_keys_config ON api_keys;
DROP TRIGGER policies_config ON policies;
DROP TRIGGER agents_config ON agents;
DROP FUNCTION caracal_config_changed();
DROP VIEW config_clock;
DROP SEQUENCE config_clock_seq;
DROP TABLE leases;
DROP TABLE lease_holders;
CREATE INDEX events_request ON events(request_id);
DROP INDEX reservations_open;
CREATE INDEX reservations_open ON reservations(status, expires_ns);
DROP INDEX reservations_holder;
ALTER TABLE reservations DROP COLUMN charge_nanos;
ALTER TABLE reservations DROP COLUMN holder;
ALTER TABLE usage DROP COLUMN leased_nanos;
