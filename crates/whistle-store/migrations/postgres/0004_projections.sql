-- Read models (derived state; every row can be rebuilt from the log with
-- `whistle rebuild`). Written only by whistle-store on behalf of
-- whistle-projections.
--
-- case_views: one row per case, written in the SAME transaction as the case's
-- events (read-your-writes for GetCase and the case lists). `version` is the
-- case's stream version the row reflects: an upsert never replaces a newer row,
-- so replays and rebuilds are idempotent. `doc` is the folded case (JSON of
-- whistle_domain::Case), the other columns are what lists filter and sort on.
CREATE TABLE case_views (
    case_id        text        PRIMARY KEY,
    version        bigint      NOT NULL,
    position       bigint      NOT NULL,
    category       text        NOT NULL,
    compound       text        NOT NULL,
    location       text        NOT NULL,
    grid           text,
    reporter       text        NOT NULL,
    level          text        NOT NULL,
    start_level    text        NOT NULL,
    status         text        NOT NULL,
    stage          text,
    closure        text,
    handler        text,
    department     text,
    reported_at    timestamptz NOT NULL,
    resolved_at    timestamptz,
    closed_at      timestamptz,
    escalations    bigint      NOT NULL,
    reopen_count   bigint      NOT NULL,
    satisfaction   bigint,
    breaches       bigint      NOT NULL,
    next_milestone text,
    next_warn_at   timestamptz,
    next_deadline  timestamptz,
    doc            text        NOT NULL
);

-- The default list order (newest first, case id as tie-breaker for the cursor).
CREATE INDEX case_views_reported ON case_views (reported_at DESC, case_id DESC);
-- "At risk" lists: open cases whose earliest running clock passed its warn point.
CREATE INDEX case_views_warn ON case_views (next_warn_at) WHERE status = 'open';
CREATE INDEX case_views_compound ON case_views (compound, reported_at DESC);
CREATE INDEX case_views_department ON case_views (department, reported_at DESC);

-- sla_clocks / case_holds: the asynchronous SLA read model (projection "sla"),
-- one row per milestone clock and per hold of a case, denormalised with the
-- case's dimensions so summaries group without joins. Rows of a case are
-- replaced whole in the same transaction that advances the projection's
-- checkpoint (table `checkpoints`, name 'projection:sla').
CREATE TABLE sla_clocks (
    case_id         text        NOT NULL,
    key             text        NOT NULL,
    milestone       text        NOT NULL,
    scope           text        NOT NULL,
    level           text        NOT NULL,
    category        text        NOT NULL,
    compound        text        NOT NULL,
    grid            text,
    department      text,
    handler         text,
    reported_at     timestamptz NOT NULL,
    started_at      timestamptz NOT NULL,
    warn_at         timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    ended_at        timestamptz,
    outcome         text        NOT NULL,
    elapsed_seconds bigint,
    PRIMARY KEY (case_id, key)
);
CREATE INDEX sla_clocks_reported ON sla_clocks (reported_at);
CREATE INDEX sla_clocks_running ON sla_clocks (warn_at) WHERE outcome = 'running';

CREATE TABLE case_holds (
    case_id     text        NOT NULL,
    seq         bigint      NOT NULL,
    handler     text        NOT NULL,
    department  text,
    level       text        NOT NULL,
    compound    text        NOT NULL,
    reported_at timestamptz NOT NULL,
    from_at     timestamptz NOT NULL,
    to_at       timestamptz,
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX case_holds_reported ON case_holds (reported_at);
