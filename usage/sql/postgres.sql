-- Plain PostgreSQL: the same relation names and columns as on TimescaleDB,
-- kept exact by statement-level triggers. Every insert into api_calls adds
-- its counts to the hourly and daily tables; every update (quantities merged
-- in) adds the difference. Deleting old raw rows (retention) leaves them.
CREATE TABLE api_calls_hourly (
    bucket timestamptz NOT NULL,
    account_id bigint NOT NULL,
    endpoint text NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    words bigint NOT NULL,
    characters bigint NOT NULL,
    PRIMARY KEY (account_id, bucket, endpoint)
);
CREATE TABLE api_calls_daily (LIKE api_calls_hourly INCLUDING ALL);

-- The triggers' function is in rollup.sql, created before this file.
CREATE TRIGGER api_calls_rollup_insert AFTER INSERT ON api_calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION api_calls_rollup();
CREATE TRIGGER api_calls_rollup_update AFTER UPDATE ON api_calls
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION api_calls_rollup();
