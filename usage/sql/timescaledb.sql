-- TimescaleDB: api_calls as a hypertable, rolled up by continuous aggregates
-- (hourly, and daily on top of hourly) with real-time aggregation, a refresh
-- policy, raw retention and the columnstore.
SELECT create_hypertable('api_calls', by_range('time', INTERVAL '7 days'));

CREATE MATERIALIZED VIEW api_calls_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, account_id, endpoint,
       count(*) AS requests,
       count(*) FILTER (WHERE status >= 400) AS errors,
       sum(words)::bigint AS words,
       sum(characters)::bigint AS characters
FROM api_calls
GROUP BY bucket, account_id, endpoint
WITH NO DATA;

CREATE MATERIALIZED VIEW api_calls_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, account_id, endpoint,
       sum(requests)::bigint AS requests,
       sum(errors)::bigint AS errors,
       sum(words)::bigint AS words,
       sum(characters)::bigint AS characters
FROM api_calls_hourly
GROUP BY time_bucket(INTERVAL '1 day', bucket), account_id, endpoint
WITH NO DATA;

-- Quantities arrive within seconds and are merged into recent rows: refresh
-- the last three days (the newest bucket is left to real-time aggregation).
SELECT add_continuous_aggregate_policy('api_calls_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('api_calls_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour');
-- Raw events are kept longer than any refresh window reaches back.
SELECT add_retention_policy('api_calls', drop_after => INTERVAL '{{RETENTION_DAYS}} days');
ALTER TABLE api_calls SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'account_id', timescaledb.orderby = 'time DESC');
CALL add_columnstore_policy('api_calls', after => INTERVAL '7 days');
