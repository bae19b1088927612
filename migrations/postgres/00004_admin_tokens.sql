-- Admin tokens authenticate the operators of `caracal serve`. Like agent
-- keys, only the SHA-256 hash of a token is stored, with its first
-- characters in clear so a listing can tell tokens apart.

-- +goose Up
CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    read_only   BOOLEAN NOT NULL,
    created_ns  BIGINT NOT NULL,
    revoked_ns  BIGINT
);

-- +goose Down
DROP TABLE admin_tokens;
