//! PostgreSQL backend (production).
//!
//! # Why commit order equals position order
//!
//! Positions come from a `bigserial`: a sequence value is handed out when a
//! row is inserted, but the row becomes visible only when its transaction
//! commits. With two concurrent transactions A (gets position 10) and B (gets
//! 11) nothing stops B from committing first; a catch-up reader (relay,
//! projector) that reads `position > cursor` then sees 11, moves its cursor to
//! 11 and never sees 10 when A commits a moment later. Group commit within
//! one process does not help when several processes (several `whistle`
//! nodes, several pools) append to the same database.
//!
//! So every batch transaction takes `pg_advisory_xact_lock(APPEND_LOCK_KEY)`
//! as its FIRST statement, before it reads versions or draws any sequence
//! value. Transaction-scoped advisory locks are released only after the
//! commit record is flushed and the transaction has become visible, so the
//! next batch (from any process) draws its positions after the previous one
//! is already visible: positions are handed out and become visible strictly
//! in order, and `position > cursor` can never skip a row that commits later.
//! This needs the sequence's default `CACHE 1` (a per-session cache would hand
//! out ranges out of order). The lock also makes the in-memory conflict
//! decision of [`crate::plan`] valid across processes: the versions it reads
//! cannot change until the batch commits. Its cost is one lock per batch, not
//! per command, which group commit amortizes.
//!
//! Rows of one batch are inserted with one `INSERT … SELECT FROM UNNEST(…)
//! WITH ORDINALITY … ORDER BY ordinality`, so positions within a batch follow
//! the batch order too; the result rows are mapped back by event id.
//!
//! # Connections
//!
//! The writer has its own one-connection pool so reads never starve commits;
//! readers use the read pool. `test_before_acquire` is off (pinging on every
//! acquire costs ~40 % of single-row throughput); instead an operation that
//! fails on a broken connection before COMMIT (server restart,
//! `pg_terminate_backend`) is retried on a fresh connection. A failed COMMIT is
//! never retried: its outcome is unknown, and the caller's retry with the same
//! idempotency key or event ids resolves it.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::error::{StoreError, is_broken_connection};
use crate::plan::{self, BatchKeys, Inserted, Snapshot, StoredEvent};
use crate::types::{
    AppendOutcome, AppendRequest, Appended, IdempotentRecord, RecordedEvent, StoreStats, StreamId,
};
use crate::writer::{BatchCommitter, Committed, Writer};
use crate::{EventStore, decode_u64};

/// Key of the transaction-scoped advisory lock that serializes appends
/// across processes ("whistle" in ASCII).
pub const APPEND_LOCK_KEY: i64 = 0x0077_6869_7374_6C65;

/// The NOTIFY channel every append batch signals with its last position, so
/// followers on other nodes wake without waiting for their poll.
pub const COMMIT_CHANNEL: &str = "whistle_events";

/// How many times a batch that hit a broken pooled connection is attempted in
/// all (the write pool holds one connection: one dead one, then a fresh one).
/// A fresh connection that cannot be made fails with `PoolTimedOut`, which is
/// not retried. Reads may be attempted once per pooled connection plus one,
/// since each failed attempt discards one dead connection.
const WRITE_ATTEMPTS: usize = 3;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const READ_STREAM_SQL: &str = "SELECT position, stream_id, version, event_id, event_type, \
     payload::text AS payload, actor_id, actor_role, occurred_at, recorded_at FROM events \
     WHERE stream_id = $1 AND version > $2 ORDER BY version";

const READ_ALL_SQL: &str = "SELECT position, stream_id, version, event_id, event_type, \
     payload::text AS payload, actor_id, actor_role, occurred_at, recorded_at FROM events \
     WHERE position > $1 ORDER BY position LIMIT $2";

/// The PostgreSQL event store. Cheap to clone (all clones share the pools and
/// the writer task).
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) read: PgPool,
    read_attempts: usize,
    write: PgPool,
    pub(crate) writer: Writer,
    /// For dedicated sessions (singleton locks, LISTEN); see `crate::checkpoint`.
    pub(crate) options: std::sync::Arc<PgConnectOptions>,
    /// The LISTEN task feeding other processes' commits into the writer's
    /// commit watch, started by the first `subscribe_commits`.
    pub(crate) listener: std::sync::Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl PgStore {
    /// Connects both pools (failing with `Unavailable` if the server cannot
    /// be reached) and starts the writer task.
    pub async fn connect(cfg: &StoreConfig) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(&cfg.url)?
            .application_name("whistle-store")
            .statement_cache_capacity(256);
        let read = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(cfg.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let write = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(cfg.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let writer = Writer::spawn(
            PgCommitter {
                pool: write.clone(),
            },
            cfg.group_commit,
        );
        Ok(PgStore {
            read,
            read_attempts: cfg.max_connections.max(1) as usize + 1,
            write,
            writer,
            options: std::sync::Arc::new(options),
            listener: Default::default(),
        })
    }

    /// Applies the pending migrations of `migrations/postgres` (idempotent;
    /// sqlx serializes concurrent migrators with its own advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.read).await?;
        Ok(())
    }

    /// Finishes the queued appends, stops the writer and closes the pools.
    pub async fn close(&self) {
        crate::checkpoint::stop_listener(self);
        self.writer.shutdown().await;
        self.write.close().await;
        self.read.close().await;
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> StoreStats {
        self.writer.stats()
    }
}

/// Runs a read, retrying it on another connection when the pooled one
/// turned out to be dead.
macro_rules! with_retry {
    ($attempts:expr, $op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op {
                Ok(v) => break Ok(v),
                Err(err) if attempt < $attempts && is_broken_connection(&err) => {
                    tracing::debug!(error = %err, attempt, "retrying read on a fresh connection");
                    attempt += 1;
                }
                Err(err) => break Err(StoreError::from(err)),
            }
        }
    }};
}

impl EventStore for PgStore {
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
        let rows: Vec<PgRow> = with_retry!(
            self.read_attempts,
            sqlx::query(READ_STREAM_SQL)
                .bind(stream.as_str())
                .bind(after)
                .fetch_all(&self.read)
                .await
        )?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(
        &self,
        after_position: i64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows: Vec<PgRow> = with_retry!(
            self.read_attempts,
            sqlx::query(READ_ALL_SQL)
                .bind(after_position)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await
        )?;
        rows.iter().map(decode_event).collect()
    }

    async fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        let row: Option<PgRow> = with_retry!(
            self.read_attempts,
            sqlx::query(
                "SELECT scope, key, fingerprint, stream_id, first_version, last_version, \
                 first_position, last_position, recorded_at \
                 FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.read)
            .await
        )?;
        row.as_ref().map(decode_key).transpose()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let v: i64 = with_retry!(
            self.read_attempts,
            sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0)::int8 FROM events WHERE stream_id = $1"
            )
            .bind(stream.as_str())
            .fetch_one(&self.read)
            .await
        )?;
        decode_u64("version", v)
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        with_retry!(
            self.read_attempts,
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0)::int8 FROM events")
                .fetch_one(&self.read)
                .await
        )
    }

    async fn count_events(&self) -> Result<u64, StoreError> {
        let n: i64 = with_retry!(
            self.read_attempts,
            sqlx::query_scalar("SELECT COUNT(*) FROM events")
                .fetch_one(&self.read)
                .await
        )?;
        decode_u64("count", n)
    }

    fn stats(&self) -> StoreStats {
        self.writer.stats()
    }
}

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let payload: String = row.try_get("payload").map_err(corrupt)?;
    Ok(RecordedEvent {
        position: row.try_get("position").map_err(corrupt)?,
        stream: StreamId(row.try_get("stream_id").map_err(corrupt)?),
        version: decode_u64("version", row.try_get("version").map_err(corrupt)?)?,
        event_id: row.try_get("event_id").map_err(corrupt)?,
        event_type: row.try_get("event_type").map_err(corrupt)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?,
        actor_id: row.try_get("actor_id").map_err(corrupt)?,
        actor_role: row.try_get("actor_role").map_err(corrupt)?,
        occurred_at: row.try_get("occurred_at").map_err(corrupt)?,
        recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
    })
}

fn decode_key(row: &PgRow) -> Result<IdempotentRecord, StoreError> {
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
            recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
        },
        fingerprint: row.try_get("fingerprint").map_err(corrupt)?,
    })
}

/// The writer side: one batch = one transaction on the write pool's connection.
struct PgCommitter {
    pool: PgPool,
}

/// Where a batch transaction failed: only failures before COMMIT may be retried.
pub(crate) enum TxError {
    Sql { err: sqlx::Error, at_commit: bool },
    Store(StoreError),
}

impl From<sqlx::Error> for TxError {
    fn from(err: sqlx::Error) -> Self {
        TxError::Sql {
            err,
            at_commit: false,
        }
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Store(err)
    }
}

impl BatchCommitter for PgCommitter {
    const BACKEND: &'static str = "postgres";

    async fn commit_batch(
        &mut self,
        units: &[Vec<AppendRequest>],
    ) -> Result<Committed, StoreError> {
        let keys = BatchKeys::of(units);
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.acquire().await?;
            let result = batch_transaction(&mut conn, units, &keys).await;
            match result {
                Ok(committed) => return Ok(committed),
                Err(TxError::Store(e)) => return Err(e),
                Err(TxError::Sql { err, at_commit }) => {
                    let broken = is_broken_connection(&err);
                    if broken {
                        // Do not hand a dead connection back to the pool.
                        conn.close_on_drop();
                    }
                    if broken && !at_commit && attempt < WRITE_ATTEMPTS {
                        tracing::debug!(error = %err, attempt, "retrying batch on a fresh connection");
                        attempt += 1;
                        continue;
                    }
                    return Err(StoreError::from(err));
                }
            }
        }
    }
}

async fn batch_transaction(
    conn: &mut PgConnection,
    units: &[Vec<AppendRequest>],
    keys: &BatchKeys,
) -> Result<Committed, TxError> {
    let mut tx = conn.begin().await?;

    // First statement: see the module docs.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK_KEY)
        .execute(&mut *tx)
        .await?;

    let snapshot = load_snapshot(&mut tx, keys).await?;
    let plan = plan::plan(units, &snapshot);

    let mut inserted = HashMap::with_capacity(plan.rows.len());
    if !plan.rows.is_empty() {
        let n = plan.rows.len();
        let mut event_ids = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut actor_ids = Vec::with_capacity(n);
        let mut actor_roles = Vec::with_capacity(n);
        let mut occurred = Vec::with_capacity(n);
        for row in &plan.rows {
            event_ids.push(row.event.event_id);
            streams.push(row.stream);
            versions.push(row.version);
            types.push(row.event.event_type.as_str());
            payloads.push(row.payload.as_str());
            actor_ids.push(row.event.actor_id.as_str());
            actor_roles.push(row.event.actor_role.as_str());
            occurred.push(row.occurred_at);
        }
        let rows = sqlx::query(
            "INSERT INTO events (event_id, stream_id, version, event_type, payload, actor_id, \
                                 actor_role, occurred_at, recorded_at) \
             SELECT t.event_id, t.stream_id, t.version, t.event_type, t.payload::jsonb, \
                    t.actor_id, t.actor_role, t.occurred_at, statement_timestamp() \
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::timestamptz[]) WITH ORDINALITY \
                  AS t(event_id, stream_id, version, event_type, payload, actor_id, actor_role, \
                       occurred_at, ord) \
             ORDER BY t.ord \
             RETURNING event_id, position, recorded_at",
        )
        .bind(&event_ids)
        .bind(&streams)
        .bind(&versions)
        .bind(&types)
        .bind(&payloads)
        .bind(&actor_ids)
        .bind(&actor_roles)
        .bind(&occurred)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let id: Uuid = row.try_get("event_id").map_err(corrupt)?;
            let position: i64 = row.try_get("position").map_err(corrupt)?;
            let recorded_at: OffsetDateTime = row.try_get("recorded_at").map_err(corrupt)?;
            inserted.insert(
                id,
                Inserted {
                    position,
                    recorded_at,
                },
            );
        }
    }
    if let Some(last) = inserted.values().map(|i| i.position).max() {
        // Wakes followers on other nodes (LISTEN whistle_events); delivered
        // only if this transaction commits. One cheap statement per batch.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(COMMIT_CHANNEL)
            .bind(last.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let events = plan.rows.len() as u64;
    apply_deadlines(&mut tx, &plan.net_deadlines()).await?;
    let views = plan.positioned_views(&inserted);
    crate::views::pg_upsert_views(&mut tx, &views.iter().collect::<Vec<_>>()).await?;
    crate::personal::pg_apply(&mut tx, &plan.personal).await?;
    let resolved = plan.resolve(&inserted)?;

    if !resolved.keys.is_empty() {
        let n = resolved.keys.len();
        let mut scopes = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut fingerprints = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut first_versions = Vec::with_capacity(n);
        let mut last_versions = Vec::with_capacity(n);
        let mut first_positions = Vec::with_capacity(n);
        let mut last_positions = Vec::with_capacity(n);
        let mut recorded = Vec::with_capacity(n);
        for k in &resolved.keys {
            scopes.push(k.key.scope.as_str());
            keys.push(k.key.key.as_str());
            fingerprints.push(k.key.fingerprint.as_str());
            streams.push(k.appended.stream.as_str());
            first_versions.push(encode_i64(k.appended.first_version)?);
            last_versions.push(encode_i64(k.appended.last_version)?);
            first_positions.push(k.appended.first_position);
            last_positions.push(k.appended.last_position);
            recorded.push(k.appended.recorded_at);
        }
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, stream_id, first_version, \
                 last_version, first_position, last_position, recorded_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                                  $6::int8[], $7::int8[], $8::int8[], $9::timestamptz[])",
        )
        .bind(&scopes)
        .bind(&keys)
        .bind(&fingerprints)
        .bind(&streams)
        .bind(&first_versions)
        .bind(&last_versions)
        .bind(&first_positions)
        .bind(&last_positions)
        .bind(&recorded)
        .execute(&mut *tx)
        .await?;
    }

    tx.commit().await.map_err(|err| TxError::Sql {
        err,
        at_commit: true,
    })?;
    Ok(Committed {
        replies: resolved.replies,
        events,
    })
}

/// Upserts set deadlines and deletes cleared ones, one statement each per batch.
async fn apply_deadlines(
    tx: &mut PgConnection,
    net: &[(&str, &str, Option<OffsetDateTime>)],
) -> Result<(), TxError> {
    type Net<'a> = &'a (&'a str, &'a str, Option<OffsetDateTime>);
    let (set, clear): (Vec<Net<'_>>, Vec<Net<'_>>) =
        net.iter().partition(|(_, _, due)| due.is_some());
    if !set.is_empty() {
        let streams: Vec<&str> = set.iter().map(|d| d.0).collect();
        let keys: Vec<&str> = set.iter().map(|d| d.1).collect();
        let dues: Vec<OffsetDateTime> = set.iter().filter_map(|d| d.2).collect();
        sqlx::query(
            "INSERT INTO deadlines (stream_id, key, due_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
             ON CONFLICT (stream_id, key) DO UPDATE \
             SET due_at = EXCLUDED.due_at, claimed_until = NULL",
        )
        .bind(&streams)
        .bind(&keys)
        .bind(&dues)
        .execute(&mut *tx)
        .await?;
    }
    if !clear.is_empty() {
        let streams: Vec<&str> = clear.iter().map(|d| d.0).collect();
        let keys: Vec<&str> = clear.iter().map(|d| d.1).collect();
        sqlx::query(
            "DELETE FROM deadlines d USING UNNEST($1::text[], $2::text[]) AS c(stream_id, key) \
             WHERE d.stream_id = c.stream_id AND d.key = c.key",
        )
        .bind(&streams)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn encode_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("version {v} out of range")))
}

async fn load_snapshot(tx: &mut PgConnection, keys: &BatchKeys) -> Result<Snapshot, TxError> {
    let mut snap = Snapshot::default();

    // Current version of every stream of the batch: one backward index probe each.
    let rows = sqlx::query(
        "SELECT s.stream_id, \
                (SELECT MAX(e.version) FROM events e WHERE e.stream_id = s.stream_id) AS version \
         FROM UNNEST($1::text[]) AS s(stream_id)",
    )
    .bind(&keys.streams)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let stream: String = row.try_get("stream_id").map_err(corrupt)?;
        let version: Option<i64> = row.try_get("version").map_err(corrupt)?;
        if let Some(v) = version {
            snap.versions.insert(stream, decode_u64("version", v)?);
        }
    }

    // Event ids of the batch that are already stored (retries).
    let rows = sqlx::query(
        "SELECT event_id, stream_id, version, position, recorded_at FROM events \
         WHERE event_id = ANY($1::uuid[])",
    )
    .bind(&keys.event_ids)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let id: Uuid = row.try_get("event_id").map_err(corrupt)?;
        snap.events.insert(
            id,
            StoredEvent {
                stream: row.try_get("stream_id").map_err(corrupt)?,
                version: decode_u64("version", row.try_get("version").map_err(corrupt)?)?,
                position: row.try_get("position").map_err(corrupt)?,
                recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
            },
        );
    }

    // Committed idempotency keys of the batch.
    if !keys.idempotency.is_empty() {
        let (scopes, names): (Vec<&str>, Vec<&str>) = keys
            .idempotency
            .iter()
            .map(|(s, k)| (s.as_str(), k.as_str()))
            .unzip();
        let rows = sqlx::query(
            "SELECT k.scope, k.key, k.fingerprint, k.stream_id, k.first_version, k.last_version, \
                    k.first_position, k.last_position, k.recorded_at \
             FROM UNNEST($1::text[], $2::text[]) AS q(scope, key) \
             JOIN idempotency_keys k ON k.scope = q.scope AND k.key = q.key",
        )
        .bind(&scopes)
        .bind(&names)
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
