-- Residents' personal data, apart from the log; see the PostgreSQL migration.
CREATE TABLE personal_data (
    contact_id  TEXT    PRIMARY KEY,
    case_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    phone       TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
