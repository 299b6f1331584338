-- SLA deadlines; see the PostgreSQL migration for the rationale. Times are unix
-- microseconds (UTC) as in the events table.
CREATE TABLE deadlines (
    stream_id     TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    due_at        INTEGER NOT NULL,
    claimed_until INTEGER,
    PRIMARY KEY (stream_id, key)
) STRICT;

CREATE INDEX deadlines_due_at ON deadlines (due_at);
