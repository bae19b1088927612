-- The ledger and its Merkle tables are append-only. These triggers refuse
-- UPDATE, DELETE and TRUNCATE on them for the application's role (and any
-- other role that does not first drop or disable them), as defence in
-- depth: the Merkle tree and its signed checkpoints are what detect an edit
-- made by a superuser or the tables' owner who bypasses them.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION caracal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER leaves_append_only BEFORE UPDATE OR DELETE ON leaves
    FOR EACH ROW EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER leaves_no_truncate BEFORE TRUNCATE ON leaves
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER merkle_hashes_append_only BEFORE UPDATE OR DELETE ON merkle_hashes
    FOR EACH ROW EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER merkle_hashes_no_truncate BEFORE TRUNCATE ON merkle_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION caracal_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION caracal_append_only();

-- +goose Down
DROP TRIGGER checkpoints_no_truncate ON checkpoints;
DROP TRIGGER checkpoints_append_only ON checkpoints;
DROP TRIGGER merkle_hashes_no_truncate ON merkle_hashes;
DROP TRIGGER merkle_hashes_append_only ON merkle_hashes;
DROP TRIGGER leaves_no_truncate ON leaves;
DROP TRIGGER leaves_append_only ON leaves;
DROP TRIGGER events_no_truncate ON events;
DROP TRIGGER events_append_only ON events;
DROP FUNCTION caracal_append_only();
