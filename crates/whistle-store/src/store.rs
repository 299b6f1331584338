//! [`Store`]: the backend chosen at start-up from the URL, as one concrete
//! type implementing [`EventStore`] by delegation (no `dyn`, no boxing).

use crate::EventStore;
use crate::config::{StoreConfig, redact_url};
use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::types::{
    AppendOutcome, AppendRequest, IdempotentRecord, RecordedEvent, StoreStats, StreamId,
};

/// The event store the server holds. Cheap to clone; clones share the pools
/// and the writer, and `close` closes them for all clones.
#[derive(Debug, Clone)]
pub enum Store {
    /// PostgreSQL (production).
    Postgres(PgStore),
    /// SQLite file (embedded default).
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the backend named by `cfg.url`: `postgres://` / `postgresql://`
    /// or `sqlite://`. Fails with `Unavailable` if the database cannot be
    /// reached and `Invalid` for an unknown scheme.
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let url = cfg.url.as_str();
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(PgStore::connect(cfg).await?)
        } else if url.starts_with("sqlite:") {
            Store::Sqlite(SqliteStore::connect(cfg).await?)
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported store url {}: expected postgres:// or sqlite://",
                redact_url(url)
            )));
        };
        tracing::debug!(backend = store.backend_name(), url = %redact_url(url), "event store connected");
        Ok(store)
    }

    /// Applies the backend's pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.migrate().await,
            Store::Sqlite(s) => s.migrate().await,
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Commits what is already queued, stops the writer (later appends fail
    /// with `Closed`) and closes the connections.
    pub async fn close(&self) {
        match self {
            Store::Postgres(s) => s.close().await,
            Store::Sqlite(s) => s.close().await,
        }
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> StoreStats {
        match self {
            Store::Postgres(s) => s.stats(),
            Store::Sqlite(s) => s.stats(),
        }
    }
}

impl EventStore for Store {
    async fn append(&self, unit: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, StoreError> {
        match self {
            Store::Postgres(s) => s.append(unit).await,
            Store::Sqlite(s) => s.append(unit).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Store::Postgres(s) => s.read_stream(stream, after_version).await,
            Store::Sqlite(s) => s.read_stream(stream, after_version).await,
        }
    }

    async fn read_all(
        &self,
        after_position: i64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Store::Postgres(s) => s.read_all(after_position, limit).await,
            Store::Sqlite(s) => s.read_all(after_position, limit).await,
        }
    }

    async fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        match self {
            Store::Postgres(s) => s.find_idempotent(scope, key).await,
            Store::Sqlite(s) => s.find_idempotent(scope, key).await,
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        match self {
            Store::Postgres(s) => s.stream_version(stream).await,
            Store::Sqlite(s) => s.stream_version(stream).await,
        }
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        match self {
            Store::Postgres(s) => s.head_position().await,
            Store::Sqlite(s) => s.head_position().await,
        }
    }

    async fn count_events(&self) -> Result<u64, StoreError> {
        match self {
            Store::Postgres(s) => s.count_events().await,
            Store::Sqlite(s) => s.count_events().await,
        }
    }

    fn stats(&self) -> StoreStats {
        Store::stats(self)
    }
}
