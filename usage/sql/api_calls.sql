-- Usage events: one row per API call the forward-auth endpoint decided on.
-- Quantities (words, characters) are filled in later from the model services.
-- The primary key includes time (required on a hypertable); a retried batch
-- carries the same (request_id, time) and is skipped.
CREATE TABLE api_calls (
    time timestamptz NOT NULL,
    account_id bigint NOT NULL,
    token_id bigint,
    endpoint text NOT NULL,
    method text NOT NULL,
    status smallint NOT NULL,
    words integer NOT NULL DEFAULT 0,
    characters integer NOT NULL DEFAULT 0,
    request_id text NOT NULL,
    unchecked boolean NOT NULL DEFAULT false,  -- let through while the rate-limit counters were down
    PRIMARY KEY (request_id, time)
);
