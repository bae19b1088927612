-- A price rule may charge every round of a multi-round MCP tool call
-- (charge_rounds); NULL and false mean the rounds are one call.

-- +goose Up
ALTER TABLE prices ADD COLUMN charge_rounds BOOLEAN;

-- +goose Down
ALTER TABLE prices DROP COLUMN charge_rounds;
