-- whistle event store, PostgreSQL schema v1.
--
-- `events` is the log (the source of truth) and doubles as the outbox: a relay
-- follows `position > cursor`. Positions come from a bigserial whose sequence
-- must keep CACHE 1 (the default): together with the transaction-scoped
-- advisory lock every append batch takes, that makes positions become visible
-- strictly in commit order (see src/postgres.rs).
CREATE TABLE events (
    position    bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    actor_id    text        NOT NULL,
    actor_role  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Also the index behind read_stream and "current version of a stream".
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- Committed command idempotency keys. `scope` is the principal, `key` the
-- client's key, `fingerprint` a hash of the request; the result of the original
-- append is kept so a retry can be answered without writing anything.
CREATE TABLE idempotency_keys (
    scope          text        NOT NULL,
    key            text        NOT NULL,
    fingerprint    text        NOT NULL,
    stream_id      text        NOT NULL,
    first_version  bigint      NOT NULL,
    last_version   bigint      NOT NULL,
    first_position bigint      NOT NULL,
    last_position  bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Reserved for later migrations (written in the same transaction as the events
-- that cause them): 0002_deadlines.sql (SLA deadlines, fired once by the
-- scheduler) and 0003_projection_checkpoints.sql (one row per projection).
