-- whistle event store, SQLite schema v1 (the embedded default).
--
-- Same logical schema as PostgreSQL: uuids as TEXT (lowercase, hyphenated),
-- timestamps as INTEGER unix microseconds (UTC), payload as TEXT JSON.
-- AUTOINCREMENT keeps positions strictly increasing and never reused; SQLite
-- has a single writer, so commit order is position order by construction.
CREATE TABLE events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL CHECK (json_valid(payload)),
    actor_id    TEXT    NOT NULL,
    actor_role  TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
) STRICT;

CREATE TABLE idempotency_keys (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    fingerprint    TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    first_version  INTEGER NOT NULL,
    last_version   INTEGER NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;

-- Reserved for later migrations (written in the same transaction as the events
-- that cause them): 0002_deadlines.sql and 0003_projection_checkpoints.sql.
