-- A price rule may charge every round of a multi-round MCP tool call
-- (charge_rounds); NULL and 0 mean the rounds are one call.

-- +goose Up
ALTER TABLE prices ADD COLUMN charge_rounds INTEGER;

-- +goose Down
ALTER TABLE prices DROP COLUMN charge_rounds;
