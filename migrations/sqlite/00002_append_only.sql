-- The ledger and its Merkle tables are append-only. These triggers refuse
-- UPDATE and DELETE on them for every connection, as defence in depth: the
-- Merkle tree and its signed checkpoints are what detect an edit made by
-- anyone who can bypass them (by dropping a trigger or editing the file).

-- +goose Up
-- +goose StatementBegin
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER leaves_no_update BEFORE UPDATE ON leaves
BEGIN SELECT RAISE(ABORT, 'leaves is append-only: UPDATE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER leaves_no_delete BEFORE DELETE ON leaves
BEGIN SELECT RAISE(ABORT, 'leaves is append-only: DELETE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER merkle_hashes_no_update BEFORE UPDATE ON merkle_hashes
BEGIN SELECT RAISE(ABORT, 'merkle_hashes is append-only: UPDATE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER merkle_hashes_no_delete BEFORE DELETE ON merkle_hashes
BEGIN SELECT RAISE(ABORT, 'merkle_hashes is append-only: DELETE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: UPDATE refused'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: DELETE refused'); END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER checkpoints_no_delete;
DROP TRIGGER checkpoints_no_update;
DROP TRIGGER merkle_hashes_no_delete;
DROP TRIGGER merkle_hashes_no_update;
DROP TRIGGER leaves_no_delete;
DROP TRIGGER leaves_no_update;
DROP TRIGGER events_no_delete;
DROP TRIGGER events_no_update;
