-- Budget alerts waiting for, or done with, webhook delivery (an outbox).
-- One row per alert: dedupe_key is unique, so a threshold crossed by many
-- processes at once, or seen again after a restart, is enqueued once.
-- id is derived from dedupe_key and is the idempotency key receivers see.
-- A sender claims a row by setting lease_owner and lease_until_ns while
-- the previous lease has expired; delivered_ns ends its life.

-- +goose Up
CREATE TABLE alert_outbox (
    id               TEXT PRIMARY KEY,
    dedupe_key       TEXT NOT NULL UNIQUE,
    webhook          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_ns       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns  INTEGER NOT NULL,
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_until_ns   INTEGER NOT NULL DEFAULT 0,
    delivered_ns     INTEGER,
    last_error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_due ON alert_outbox(webhook, delivered_ns, next_attempt_ns);

-- +goose Down
DROP TABLE alert_outbox;
