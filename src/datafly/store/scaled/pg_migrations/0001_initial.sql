-- The management documents (UI-managed integrations, sources, users, tokens, encrypted secrets),
-- dead letters and the delivery log. Queues, profiles and dedup keys live in Redis.
CREATE TABLE documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data JSONB NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    sink_id TEXT NOT NULL UNIQUE,          -- the Redis sink entry it came from (idempotent copy)
    integration_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    mapping TEXT NOT NULL,
    first_in_session BOOLEAN NOT NULL,
    event BYTEA NOT NULL,
    attempts INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    last_request TEXT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX dead_letters_by_integration ON dead_letters (integration_id, id);

CREATE TABLE delivery_log (
    id BIGSERIAL PRIMARY KEY,
    sink_id TEXT NOT NULL UNIQUE,
    at DOUBLE PRECISION NOT NULL,
    integration_id TEXT NOT NULL,
    message_ids TEXT[] NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    request TEXT NOT NULL,
    status INTEGER,
    response TEXT NOT NULL,
    latency_ms DOUBLE PRECISION,
    attempt INTEGER NOT NULL
);
CREATE INDEX delivery_log_by_integration ON delivery_log (integration_id, id);
CREATE INDEX delivery_log_by_message ON delivery_log USING GIN (message_ids);
CREATE INDEX delivery_log_at ON delivery_log (at);
