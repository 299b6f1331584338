-- Checkpoints of catch-up readers (see the PostgreSQL migration of the same
-- name): `position` is the last event position the reader has finished with,
-- `aux` a reader-specific number (the relay's JetStream stream sequence),
-- `updated_at` unix microseconds (UTC).
CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0),
    aux        INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
