-- Read models; see the PostgreSQL migration for the rationale. Times are unix
-- microseconds (UTC) as in the events table.
CREATE TABLE case_views (
    case_id        TEXT    PRIMARY KEY,
    version        INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    category       TEXT    NOT NULL,
    compound       TEXT    NOT NULL,
    location       TEXT    NOT NULL,
    grid           TEXT,
    reporter       TEXT    NOT NULL,
    level          TEXT    NOT NULL,
    start_level    TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    stage          TEXT,
    closure        TEXT,
    handler        TEXT,
    department     TEXT,
    reported_at    INTEGER NOT NULL,
    resolved_at    INTEGER,
    closed_at      INTEGER,
    escalations    INTEGER NOT NULL,
    reopen_count   INTEGER NOT NULL,
    satisfaction   INTEGER,
    breaches       INTEGER NOT NULL,
    next_milestone TEXT,
    next_warn_at   INTEGER,
    next_deadline  INTEGER,
    doc            TEXT    NOT NULL
) STRICT;

CREATE INDEX case_views_reported ON case_views (reported_at DESC, case_id DESC);
CREATE INDEX case_views_warn ON case_views (next_warn_at) WHERE status = 'open';
CREATE INDEX case_views_compound ON case_views (compound, reported_at DESC);
CREATE INDEX case_views_department ON case_views (department, reported_at DESC);

CREATE TABLE sla_clocks (
    case_id         TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    milestone       TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    level           TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    compound        TEXT    NOT NULL,
    grid            TEXT,
    department      TEXT,
    handler         TEXT,
    reported_at     INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    warn_at         INTEGER NOT NULL,
    deadline        INTEGER NOT NULL,
    ended_at        INTEGER,
    outcome         TEXT    NOT NULL,
    elapsed_seconds INTEGER,
    PRIMARY KEY (case_id, key)
) STRICT;
CREATE INDEX sla_clocks_reported ON sla_clocks (reported_at);
CREATE INDEX sla_clocks_running ON sla_clocks (warn_at) WHERE outcome = 'running';

CREATE TABLE case_holds (
    case_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    handler     TEXT    NOT NULL,
    department  TEXT,
    level       TEXT    NOT NULL,
    compound    TEXT    NOT NULL,
    reported_at INTEGER NOT NULL,
    from_at     INTEGER NOT NULL,
    to_at       INTEGER,
    PRIMARY KEY (case_id, seq)
) STRICT;
CREATE INDEX case_holds_reported ON case_holds (reported_at);
