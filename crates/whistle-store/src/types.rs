//! The store's vocabulary: stream ids, expected versions, events to append,
//! append requests and their outcomes, recorded events and counters.
//!
//! These types are backend-neutral; both backends and the API crate speak them.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

/// Identifier of one event stream (one aggregate), e.g. `"case-<uuid>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub String);

impl StreamId {
    /// Wraps any string-like value.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for StreamId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for StreamId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// Optimistic concurrency check of an append. Versions are 1-based per stream;
/// a stream without events is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the current version is (never conflicts).
    Any,
    /// The stream must not exist yet (same as `Exact(0)`).
    NoStream,
    /// The stream must be exactly at this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// One event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Globally unique id chosen by the caller; a retry that carries the same
    /// first event id is recognised as a duplicate, and the relay uses it as
    /// the NATS `Nats-Msg-Id` for de-duplication downstream.
    pub event_id: Uuid,
    /// Name of the domain event, e.g. `"CaseReported"`; lets readers decode
    /// the payload without parsing it first.
    pub event_type: String,
    /// The domain event as JSON (strings must not contain NUL, depth ≤ 128).
    pub payload: serde_json::Value,
    /// Principal that caused the event (audit trail).
    pub actor_id: String,
    /// Role the principal acted in (audit trail, authorization replay).
    pub actor_role: String,
    /// Business time of the event (stored to the microsecond, UTC).
    pub occurred_at: OffsetDateTime,
}

/// A command idempotency key: a retry of a committed command is answered with
/// the original result instead of being executed twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// Namespace of the key, the principal id, so clients cannot collide.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request: a retry with the same scope and key but another
    /// fingerprint is a client bug and is rejected with `IdempotencyMismatch`.
    pub fingerprint: String,
}

/// Events to append to one stream with one expected version.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    /// Target stream.
    pub stream: StreamId,
    /// Optimistic concurrency check against the stream's current version.
    pub expected: ExpectedVersion,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
    /// Optional command idempotency key, stored with the result.
    pub idempotency: Option<IdempotencyKey>,
    /// Changes to this stream's deadline rows, applied in the same transaction as the
    /// events (only if the request is appended, not for duplicates or conflicts); for
    /// one key the last change wins.
    pub deadlines: Vec<DeadlineChange>,
    /// The case's read-model row after these events (whistle-projections computes it),
    /// written in the same transaction, only if the request is appended; the store fills
    /// in its `position`. `None` for streams without a view (admin streams).
    pub view: Option<crate::views::CaseViewRow>,
    /// Personal-data records to store or erase with these events (only if appended).
    pub personal: Vec<crate::personal::PersonalOp>,
}

/// Set or clear one deadline row of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineChange {
    /// Unique within the stream, e.g. `respond@neighbour#1/breach`.
    pub key: String,
    /// `Some(due)` sets (and un-claims) the row, `None` removes it.
    pub due_at: Option<OffsetDateTime>,
}

/// A claimed, due deadline row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDeadline {
    pub stream: StreamId,
    pub key: String,
    pub due_at: OffsetDateTime,
}

/// Where a committed append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Stream the events were appended to.
    pub stream: StreamId,
    /// Version of the first appended event (1-based).
    pub first_version: u64,
    /// Version of the last appended event; the stream's version afterwards.
    pub last_version: u64,
    /// Global position of the first event (commit order).
    pub first_position: i64,
    /// Global position of the last event; a reader caught up to it has seen
    /// the whole append.
    pub last_position: i64,
    /// Time the store recorded the events (database clock, microseconds).
    pub recorded_at: OffsetDateTime,
}

/// Result of one `AppendRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events were written by this call.
    Appended(Appended),
    /// This request (by idempotency key or by its first event id) was already
    /// committed earlier; nothing was written and this is the original result.
    Duplicate(Appended),
}

impl AppendOutcome {
    /// The (new or original) result, whichever variant it is.
    pub fn appended(&self) -> &Appended {
        match self {
            AppendOutcome::Appended(a) | AppendOutcome::Duplicate(a) => a,
        }
    }

    /// Whether nothing was written because the request had been committed before.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, AppendOutcome::Duplicate(_))
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Global position (strictly increasing in commit order); the cursor of
    /// catch-up readers such as the relay and the projector.
    pub position: i64,
    /// Stream the event belongs to.
    pub stream: StreamId,
    /// Version within the stream (1-based, contiguous).
    pub version: u64,
    /// Caller-chosen unique id.
    pub event_id: Uuid,
    /// Name of the domain event.
    pub event_type: String,
    /// The domain event as JSON.
    pub payload: serde_json::Value,
    /// Principal that caused the event.
    pub actor_id: String,
    /// Role the principal acted in.
    pub actor_role: String,
    /// Business time (microsecond precision, UTC).
    pub occurred_at: OffsetDateTime,
    /// Time the store recorded the event (microsecond precision, UTC).
    pub recorded_at: OffsetDateTime,
}

/// A committed idempotency key, as returned by `EventStore::find_idempotent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRecord {
    /// The original result; `appended.stream` is the stream it was written to.
    pub appended: Appended,
    /// Fingerprint of the original request, to tell a retry from a misuse.
    pub fingerprint: String,
}

/// Counters of the group-commit writer since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batch transactions committed; `units / batches` is the grouping factor.
    pub batches: u64,
    /// Units decided in committed batches (appended, duplicate or rejected).
    pub units: u64,
    /// Events written by committed batches.
    pub events: u64,
    /// Batch transactions that failed as a whole (e.g. the database was down).
    pub failed_batches: u64,
}
