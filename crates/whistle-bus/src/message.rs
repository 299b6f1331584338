//! The message format on NATS (documented for other-language departments in
//! the README): the payload is the stored event body as JSON (the `EventBody`
//! of `whistle-domain`, tagged by `"type"`), and these headers carry the rest.

/// JetStream's de-duplication header: the event id (UUID).
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Global position of the event in whistle's log (the gRPC cursor).
pub const POSITION: &str = "Whistle-Position";
/// Case id (UUID).
pub const CASE_ID: &str = "Whistle-Case-Id";
/// Version of the case after this event (1-based, contiguous per case).
pub const VERSION: &str = "Whistle-Version";
/// Event type, e.g. `CaseAssigned` (also the subject's last token).
pub const EVENT_TYPE: &str = "Whistle-Event-Type";
/// When it happened (RFC 3339, UTC).
pub const OCCURRED_AT: &str = "Whistle-Occurred-At";
/// When whistle recorded it (RFC 3339, UTC).
pub const RECORDED_AT: &str = "Whistle-Recorded-At";
/// Principal id of whoever caused it.
pub const ACTOR: &str = "Whistle-Actor";
/// Role the actor acted in (`grid_worker`, `department`, `system`, …).
pub const ACTOR_ROLE: &str = "Whistle-Actor-Role";
/// The case's compound (also a subject token).
pub const COMPOUND: &str = "Whistle-Compound";
/// The department the event is routed to, `_` for none (also a subject token).
pub const DEPARTMENT: &str = "Whistle-Department";

/// RFC 3339 text of a timestamp (falls back to the unix seconds if formatting fails).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
