-- Residents' personal data (name, phone, exact address), kept apart from the log: events
-- carry only `contact_id`. Written in the same transaction as the report that references
-- it; deleted in the same transaction as the `ContactErased` event. Never replicated to
-- NATS, never in a read model.
CREATE TABLE personal_data (
    contact_id  uuid        PRIMARY KEY,
    case_id     text        NOT NULL,
    name        text        NOT NULL,
    phone       text        NOT NULL,
    address     text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
