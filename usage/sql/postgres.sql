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

CREATE FUNCTION api_calls_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta text := 'SELECT time, account_id, endpoint, 1 AS calls, (status >= 400)::int AS errors, words, characters FROM new_rows';
    unit text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        delta := delta || ' UNION ALL SELECT time, account_id, endpoint, -1, -(status >= 400)::int, -words, -characters FROM old_rows';
    END IF;
    FOREACH unit IN ARRAY ARRAY['hour', 'day'] LOOP
        EXECUTE format($sql$
            INSERT INTO %I AS total (bucket, account_id, endpoint, requests, errors, words, characters)
            SELECT date_trunc(%L, time, 'UTC'), account_id, endpoint, sum(calls), sum(errors), sum(words), sum(characters)
            FROM (%s) AS delta
            GROUP BY 1, 2, 3
            ON CONFLICT (account_id, bucket, endpoint) DO UPDATE SET
                requests = total.requests + excluded.requests,
                errors = total.errors + excluded.errors,
                words = total.words + excluded.words,
                characters = total.characters + excluded.characters
        $sql$, CASE unit WHEN 'hour' THEN 'api_calls_hourly' ELSE 'api_calls_daily' END, unit, delta);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER api_calls_rollup_insert AFTER INSERT ON api_calls
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION api_calls_rollup();
CREATE TRIGGER api_calls_rollup_update AFTER UPDATE ON api_calls
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION api_calls_rollup();
