-- Checkpoints of catch-up readers that live outside the store's transactions,
-- e.g. the NATS relay: `position` is the last event position the reader has
-- finished with (for the relay: published AND acknowledged by JetStream),
-- `aux` a reader-specific number (for the relay: the JetStream stream sequence
-- it had reached, so a stream deleted and recreated empty can be detected).
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    aux        bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
