//! whistle-store: the event store of whistle.
//!
//! The log of domain events is the source of truth (and the outbox the relay
//! publishes from). Two backends implement one trait, [`EventStore`]:
//! PostgreSQL ([`PgStore`], production, several processes may share one
//! database) and SQLite ([`SqliteStore`], the embedded single-process default).
//! The server holds a [`Store`], an enum over both, so no `dyn` is needed.
//!
//! Appends go through a group-commit writer (the `writer` module): one task
//! per store commits whatever units queued up in one transaction and
//! answers each caller only after COMMIT. Conflicts, duplicates (by
//! idempotency key or by first event id) and idempotency mismatches are
//! decided in memory under the batch lock, so one failed unit never fails its
//! neighbours. On PostgreSQL a transaction-scoped advisory lock makes
//! positions become visible strictly in order, so `read_all(position > cursor)`
//! never skips a row (see the `postgres` module).
//!
//! Catch-up readers outside the append path (the NATS relay) get durable
//! checkpoints, a commit notification and a singleton lease from the
//! `checkpoint` module.
//!
//! Modules: `types` (vocabulary), `error` ([`StoreError`] and the
//! classification of database errors), `config`, `plan` (validation and the
//! batch decision), `writer` (group commit), `postgres`, `sqlite`, `store`
//! (the [`Store`] enum) and, behind the `testing` feature, `testing` (fresh
//! databases for tests, shared with other crates' tests).

mod checkpoint;
mod config;
mod deadline;
mod error;
mod personal;
mod plan;
mod postgres;
mod sqlite;
mod store;
mod types;
mod views;
mod writer;

#[cfg(feature = "testing")]
pub mod testing;

pub use checkpoint::{Checkpoint, Singleton, singleton_key};
pub use config::{GroupCommitConfig, StoreConfig, with_database};
pub use error::StoreError;
pub use personal::{PersonalData, PersonalOp};
pub use postgres::{APPEND_LOCK_KEY, COMMIT_CHANNEL, PgStore};
pub use sqlite::SqliteStore;
pub use store::Store;
pub use types::{
    AppendOutcome, AppendRequest, Appended, DeadlineChange, DueDeadline, ExpectedVersion,
    IdempotencyKey, IdempotentRecord, NewEvent, RecordedEvent, StoreStats, StreamId,
};
pub use views::{
    CaseFilter, CaseSlaRows, CaseViewRow, ClockRow, HoldRow, ListCursor, ReadModel, SlaFacts,
};

/// An event store.
///
/// Dropping an `append` future does not undo the append once the unit was
/// queued: it is still decided and, if accepted, committed; a retry with the
/// same idempotency key or the same first event id then returns `Duplicate`.
pub trait EventStore: Send + Sync + 'static {
    /// Atomically appends ONE unit: several requests (normally one; two for a
    /// merge of two cases), all-or-nothing. Returns one outcome per request,
    /// in order, only after COMMIT (durable). A conflict or idempotency
    /// mismatch in any request fails the whole unit with that error and
    /// writes nothing. A request is a `Duplicate` (nothing written, original
    /// result returned) when its idempotency key was committed with the same
    /// fingerprint, or when its first event id is stored and all its event ids
    /// are stored as the same consecutive events of the same stream; reusing
    /// stored event ids any other way is `Invalid`.
    fn append(
        &self,
        unit: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, StoreError>> + Send;

    /// Events of one stream with version > `after_version`, in version order.
    fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Everything with position > `after_position`, in commit order, at most
    /// `limit` rows. Following the last returned position never skips an
    /// event that commits later.
    fn read_all(
        &self,
        after_position: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Looks up a committed idempotency key: the original result and the
    /// fingerprint of the request that committed it.
    fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotentRecord>, StoreError>> + Send;

    /// Current version of a stream (0 if it has no events).
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Position of the last committed event (0 if the log is empty).
    fn head_position(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Number of stored events (tests use it to prove "nothing changed").
    fn count_events(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counters of the group-commit writer (batches, units, events). Stores
    /// without a writer (e.g. test doubles) may keep the default.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// A stored non-negative integer (version, count) as u64.
pub(crate) fn decode_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}
