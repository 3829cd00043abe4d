-- Plain PostgreSQL: the function of postgres.sql's triggers. Each inserted batch (and,
-- for an update, the difference it makes) is aggregated once into hours, added to
-- api_calls_hourly, and those hours, aggregated into days, are added to api_calls_daily.
-- Buckets start at whole UTC hours and days (date_bin from 2000-01-01 UTC: as date_trunc
-- in UTC, without a time zone conversion per row).
CREATE OR REPLACE FUNCTION api_calls_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta text := 'SELECT time, account_id, endpoint, 1 AS calls, (status >= 400)::int AS errors, words, characters FROM new_rows';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        delta := delta || ' UNION ALL SELECT time, account_id, endpoint, -1, -(status >= 400)::int, -words, -characters FROM old_rows';
    END IF;
    EXECUTE format($sql$
        WITH hourly AS (
            SELECT date_bin('1 hour', time, '2000-01-01 00:00+00') AS bucket, account_id, endpoint,
                   sum(calls) AS requests, sum(errors) AS errors, sum(words) AS words, sum(characters) AS characters
            FROM (%s) AS delta
            GROUP BY 1, 2, 3
        ), added AS (
            INSERT INTO api_calls_hourly AS total (bucket, account_id, endpoint, requests, errors, words, characters)
            SELECT * FROM hourly
            ON CONFLICT (account_id, bucket, endpoint) DO UPDATE SET
                requests = total.requests + excluded.requests,
                errors = total.errors + excluded.errors,
                words = total.words + excluded.words,
                characters = total.characters + excluded.characters
        )
        INSERT INTO api_calls_daily AS total (bucket, account_id, endpoint, requests, errors, words, characters)
        SELECT date_bin('1 day', bucket, '2000-01-01 00:00+00'), account_id, endpoint,
               sum(requests), sum(errors), sum(words), sum(characters)
        FROM hourly
        GROUP BY 1, 2, 3
        ON CONFLICT (account_id, bucket, endpoint) DO UPDATE SET
            requests = total.requests + excluded.requests,
            errors = total.errors + excluded.errors,
            words = total.words + excluded.words,
            characters = total.characters + excluded.characters
    $sql$, delta);
    RETURN NULL;
END $$;
