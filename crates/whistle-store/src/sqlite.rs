//! SQLite backend (the embedded default: one process, one file).
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so a COMMIT returns
//! only once the WAL is fsynced and an acknowledged append survives a power
//! loss; `busy_timeout` makes a briefly locked database wait instead of fail,
//! and the file (and its directory) is created if missing.
//!
//! One writer connection, owned by the group-commit writer task, runs each
//! batch as `BEGIN IMMEDIATE` … `COMMIT`: the write lock is taken up front, so
//! the versions the batch reads cannot change before it commits, and commit
//! order is position order by construction (SQLite has one writer at a time;
//! `AUTOINCREMENT` positions never go backwards). Readers use a separate pool;
//! WAL lets them read while the writer commits.
//!
//! SQLite has no arrays: the snapshot queries take their IN-lists as a JSON
//! array through `json_each($1)`, and rows are inserted one by one inside the
//! batch transaction (sqlx caches the prepared statement per connection, so it
//! is parsed once). uuids are stored as TEXT, timestamps as INTEGER unix
//! microseconds (UTC), payloads as TEXT JSON.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::plan::{self, BatchKeys, Inserted, Snapshot, StoredEvent, truncate_to_micros};
use crate::types::{
    AppendOutcome, AppendRequest, Appended, IdempotentRecord, RecordedEvent, StoreStats, StreamId,
};
use crate::writer::{BatchCommitter, Committed, Writer};
use crate::{EventStore, decode_u64};

/// How long a connection waits for a lock held by another connection (or
/// process) before failing with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const READ_STREAM_SQL: &str = "SELECT position, stream_id, version, event_id, event_type, \
     payload, actor_id, actor_role, occurred_at, recorded_at FROM events \
     WHERE stream_id = $1 AND version > $2 ORDER BY version";

const READ_ALL_SQL: &str = "SELECT position, stream_id, version, event_id, event_type, \
     payload, actor_id, actor_role, occurred_at, recorded_at FROM events \
     WHERE position > $1 ORDER BY position LIMIT $2";

const SELECT_KEY_SQL: &str = "SELECT scope, key, fingerprint, stream_id, first_version, \
     last_version, first_position, last_position, recorded_at \
     FROM idempotency_keys WHERE scope = $1 AND key = $2";

/// The SQLite event store. Cheap to clone (all clones share the read pool and
/// the writer task).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) read: SqlitePool,
    pub(crate) writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and starts the writer task.
    pub async fn connect(cfg: &StoreConfig) -> Result<SqliteStore, StoreError> {
        let url = cfg.url.as_str();
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Invalid(
                "in-memory SQLite is not supported: the writer and the readers use separate \
                 connections; use a file"
                    .into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(std::sync::Arc::new(sqlx::Error::Io(e))))?;
        }
        // The writer connection first: it creates the file and switches it to WAL.
        let conn = SqliteConnection::connect_with(&options).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(cfg.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let writer = Writer::spawn(
            SqliteCommitter {
                options,
                conn: Some(conn),
            },
            cfg.group_commit,
        );
        Ok(SqliteStore { read, writer })
    }

    /// Applies the pending migrations of `migrations/sqlite` (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.read).await?;
        Ok(())
    }

    /// Finishes the queued appends, stops the writer and closes the read pool.
    pub async fn close(&self) {
        self.writer.shutdown().await;
        self.read.close().await;
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> StoreStats {
        self.writer.stats()
    }
}

impl EventStore for SqliteStore {
    async fn append(&self, unit: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, StoreError> {
        self.writer.append(unit).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Ok(after) = i64::try_from(after_version) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(READ_STREAM_SQL)
            .bind(stream.as_str())
            .bind(after)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(
        &self,
        after_position: i64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(READ_ALL_SQL)
            .bind(after_position)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        let row = sqlx::query(SELECT_KEY_SQL)
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(decode_key).transpose()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let v: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1")
                .bind(stream.as_str())
                .fetch_one(&self.read)
                .await?;
        decode_u64("version", v)
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&self.read)
                .await?,
        )
    }

    async fn count_events(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.read)
            .await?;
        decode_u64("count", n)
    }

    fn stats(&self) -> StoreStats {
        self.writer.stats()
    }
}

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

pub(crate) fn to_micros(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000))
        .map_err(|_| StoreError::Invalid(format!("timestamp {t} out of range")))
}

pub(crate) fn from_micros(what: &str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("{what} {us}: {e}")))
}

fn decode_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("event id {text:?}: {e}")))
}

fn decode_event(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let payload: String = row.try_get("payload").map_err(corrupt)?;
    let event_id: String = row.try_get("event_id").map_err(corrupt)?;
    Ok(RecordedEvent {
        position: row.try_get("position").map_err(corrupt)?,
        stream: StreamId(row.try_get("stream_id").map_err(corrupt)?),
        version: decode_u64("version", row.try_get("version").map_err(corrupt)?)?,
        event_id: decode_uuid(&event_id)?,
        event_type: row.try_get("event_type").map_err(corrupt)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?,
        actor_id: row.try_get("actor_id").map_err(corrupt)?,
        actor_role: row.try_get("actor_role").map_err(corrupt)?,
        occurred_at: from_micros("occurred_at", row.try_get("occurred_at").map_err(corrupt)?)?,
        recorded_at: from_micros("recorded_at", row.try_get("recorded_at").map_err(corrupt)?)?,
    })
}

fn decode_key(row: &SqliteRow) -> Result<IdempotentRecord, StoreError> {
    Ok(IdempotentRecord {
        appended: Appended {
            stream: StreamId(row.try_get("stream_id").map_err(corrupt)?),
            first_version: decode_u64(
                "first_version",
                row.try_get("first_version").map_err(corrupt)?,
            )?,
            last_version: decode_u64(
                "last_version",
                row.try_get("last_version").map_err(corrupt)?,
            )?,
            first_position: row.try_get("first_position").map_err(corrupt)?,
            last_position: row.try_get("last_position").map_err(corrupt)?,
            recorded_at: from_micros("recorded_at", row.try_get("recorded_at").map_err(corrupt)?)?,
        },
        fingerprint: row.try_get("fingerprint").map_err(corrupt)?,
    })
}

/// The writer side: the single write connection, reopened after it failed.
struct SqliteCommitter {
    options: SqliteConnectOptions,
    conn: Option<SqliteConnection>,
}

impl BatchCommitter for SqliteCommitter {
    const BACKEND: &'static str = "sqlite";

    async fn commit_batch(
        &mut self,
        units: &[Vec<AppendRequest>],
    ) -> Result<Committed, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self
                .conn
                .insert(SqliteConnection::connect_with(&self.options).await?),
        };
        let result = batch_transaction(conn, units).await;
        if matches!(result, Err(StoreError::Unavailable(_))) {
            // Start the next batch on a fresh connection.
            self.conn = None;
        }
        result
    }
}

/// A JSON array for `json_each($1)`.
fn json_list(encoded: serde_json::Result<String>) -> Result<String, StoreError> {
    encoded.map_err(|e| StoreError::Invalid(format!("batch keys: {e}")))
}

async fn batch_transaction(
    conn: &mut SqliteConnection,
    units: &[Vec<AppendRequest>],
) -> Result<Committed, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let keys = BatchKeys::of(units);
    let snapshot = load_snapshot(&mut tx, &keys).await?;
    let plan = plan::plan(units, &snapshot);

    let recorded_at = truncate_to_micros(OffsetDateTime::now_utc());
    let recorded_us = to_micros(recorded_at)?;
    let mut inserted = HashMap::with_capacity(plan.rows.len());
    for row in &plan.rows {
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO events (event_id, stream_id, version, event_type, payload, actor_id, \
                                 actor_role, occurred_at, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING position",
        )
        .bind(row.event.event_id.hyphenated().to_string())
        .bind(row.stream)
        .bind(row.version)
        .bind(row.event.event_type.as_str())
        .bind(row.payload.as_str())
        .bind(row.event.actor_id.as_str())
        .bind(row.event.actor_role.as_str())
        .bind(to_micros(row.occurred_at)?)
        .bind(recorded_us)
        .fetch_one(&mut *tx)
        .await?;
        inserted.insert(
            row.event.event_id,
            Inserted {
                position,
                recorded_at,
            },
        );
    }
    let events = plan.rows.len() as u64;
    for (stream, key, due) in plan.net_deadlines() {
        match due {
            Some(due) => {
                sqlx::query(
                    "INSERT INTO deadlines (stream_id, key, due_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (stream_id, key) DO UPDATE \
                     SET due_at = excluded.due_at, claimed_until = NULL",
                )
                .bind(stream)
                .bind(key)
                .bind(to_micros(due)?)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM deadlines WHERE stream_id = $1 AND key = $2")
                    .bind(stream)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let views = plan.positioned_views(&inserted);
    crate::views::lite_upsert_views(&mut tx, &views.iter().collect::<Vec<_>>()).await?;
    crate::personal::lite_apply(&mut tx, &plan.personal, recorded_us).await?;
    let resolved = plan.resolve(&inserted)?;

    for k in &resolved.keys {
        let a = &k.appended;
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, stream_id, first_version, \
                 last_version, first_position, last_position, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(k.key.scope.as_str())
        .bind(k.key.key.as_str())
        .bind(k.key.fingerprint.as_str())
        .bind(a.stream.as_str())
        .bind(encode_i64(a.first_version)?)
        .bind(encode_i64(a.last_version)?)
        .bind(a.first_position)
        .bind(a.last_position)
        .bind(to_micros(a.recorded_at)?)
        .execute(&mut *tx)
        .await?;
    }

    tx.commit().await?;
    Ok(Committed {
        replies: resolved.replies,
        events,
    })
}

fn encode_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("version {v} out of range")))
}

async fn load_snapshot(
    tx: &mut SqliteConnection,
    keys: &BatchKeys,
) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();

    let rows = sqlx::query(
        "SELECT j.value AS stream_id, \
                (SELECT MAX(e.version) FROM events e WHERE e.stream_id = j.value) AS version \
         FROM json_each($1) AS j",
    )
    .bind(json_list(serde_json::to_string(&keys.streams))?)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let stream: String = row.try_get("stream_id").map_err(corrupt)?;
        let version: Option<i64> = row.try_get("version").map_err(corrupt)?;
        if let Some(v) = version {
            snap.versions.insert(stream, decode_u64("version", v)?);
        }
    }

    let ids: Vec<String> = keys
        .event_ids
        .iter()
        .map(|id| id.hyphenated().to_string())
        .collect();
    let rows = sqlx::query(
        "SELECT event_id, stream_id, version, position, recorded_at FROM events \
         WHERE event_id IN (SELECT value FROM json_each($1))",
    )
    .bind(json_list(serde_json::to_string(&ids))?)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let id: String = row.try_get("event_id").map_err(corrupt)?;
        snap.events.insert(
            decode_uuid(&id)?,
            StoredEvent {
                stream: row.try_get("stream_id").map_err(corrupt)?,
                version: decode_u64("version", row.try_get("version").map_err(corrupt)?)?,
                position: row.try_get("position").map_err(corrupt)?,
                recorded_at: from_micros(
                    "recorded_at",
                    row.try_get("recorded_at").map_err(corrupt)?,
                )?,
            },
        );
    }

    if !keys.idempotency.is_empty() {
        let rows = sqlx::query(
            "SELECT k.scope, k.key, k.fingerprint, k.stream_id, k.first_version, k.last_version, \
                    k.first_position, k.last_position, k.recorded_at \
             FROM json_each($1) AS j \
             JOIN idempotency_keys k \
               ON k.scope = json_extract(j.value, '$[0]') AND k.key = json_extract(j.value, '$[1]')",
        )
        .bind(json_list(serde_json::to_string(&keys.idempotency))?)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let scope: String = row.try_get("scope").map_err(corrupt)?;
            let key: String = row.try_get("key").map_err(corrupt)?;
            snap.keys.insert((scope, key), decode_key(row)?);
        }
    }
    Ok(snap)
}
