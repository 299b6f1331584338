-- SLA deadlines: one row per instant a milestone clock may fire (warn, breach),
-- written in the same transaction as the events that start, move or end the clock,
-- so a deadline exists exactly when the log says it should. Derived state: it can be
-- rebuilt from the log. The scheduler claims due rows with a lease (claimed_until) so
-- two nodes rarely fire the same row; firing itself is idempotent by the case's
-- expected version, so a row fired twice still produces its events once.
CREATE TABLE deadlines (
    stream_id     text        NOT NULL,
    key           text        NOT NULL,
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,
    PRIMARY KEY (stream_id, key)
);

CREATE INDEX deadlines_due_at ON deadlines (due_at);
