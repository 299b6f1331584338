//! Store errors and the classification of database errors.
//!
//! The classification matters to callers: `Conflict` becomes gRPC ABORTED (the
//! client reloads and retries), `Unavailable` becomes UNAVAILABLE (retry later,
//! with the same idempotency key), `Invalid` becomes INVALID_ARGUMENT.

use std::sync::Arc;

use crate::types::{ExpectedVersion, StreamId};

/// Everything an event store operation can fail with.
///
/// Database errors are held in an `Arc` so that one failed batch transaction
/// can hand the same error to every caller in the batch (`sqlx::Error` is not
/// `Clone`); the error is `Clone` for the same reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version; nothing of the unit was written.
    #[error("version conflict on stream {stream}: expected {expected}, actual {actual}")]
    Conflict {
        /// The stream whose check failed.
        stream: StreamId,
        /// What the request expected.
        expected: ExpectedVersion,
        /// The stream's version when the unit was decided.
        actual: u64,
    },
    /// The idempotency key was committed before with another request fingerprint.
    #[error("idempotency key {key:?} of {scope:?} was already used for a different request")]
    IdempotencyMismatch {
        /// Scope (principal) of the key.
        scope: String,
        /// The client's key.
        key: String,
    },
    /// The database cannot be reached (connection refused or lost, pool
    /// timeout, I/O error, server shutting down). Retrying later may succeed.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// The request is malformed (empty unit, duplicate event ids, …).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// Any other database error.
    #[error("event store error: {0}")]
    Backend(#[source] Arc<sqlx::Error>),
    /// A stored row cannot be decoded.
    #[error("corrupt event store row: {0}")]
    Corrupt(String),
    /// The store was closed (or its writer task is gone).
    #[error("event store is closed")]
    Closed,
}

impl StoreError {
    /// Whether this error means the database could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether this is an optimistic concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Configuration(e) => StoreError::Invalid(format!("configuration: {e}")),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::Decode(_) => StoreError::Corrupt(err.to_string()),
            _ if is_unavailable(&err) => StoreError::Unavailable(Arc::new(err)),
            _ => StoreError::Backend(Arc::new(err)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Backend(Arc::new(sqlx::Error::from(other))),
        }
    }
}

/// PostgreSQL SQLSTATEs (besides class 08) meaning "the server is going away
/// or cannot take us now".
const PG_UNAVAILABLE_CODES: [&str; 4] = [
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
];

/// SQLite primary result codes that mean the file cannot be used right now:
/// BUSY, LOCKED (after busy_timeout), IOERR, FULL, CANTOPEN.
const SQLITE_UNAVAILABLE_CODES: [i64; 5] = [5, 6, 10, 13, 14];

/// Whether a database error means "the database is down / unreachable".
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                code.starts_with("08") || PG_UNAVAILABLE_CODES.contains(&code)
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|c| SQLITE_UNAVAILABLE_CODES.contains(&(c & 0xff)))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Whether the error came from using an established connection that is now
/// broken (as opposed to failing to get one): the operation never reached a
/// commit, so it is safe to retry it once on a fresh connection. Used for
/// PostgreSQL, where the pool may hold connections the server has dropped
/// (restart, `pg_terminate_backend`, idle timeouts in between).
pub(crate) fn is_broken_connection(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
                && db.code().is_some_and(|code| {
                    code.starts_with("08") || code == "57P01" || code == "57P02"
                })
        }
        _ => false,
    }
}
