//! What catch-up readers outside the append path need from the store: durable
//! checkpoints, a wake-up when something commits, and a singleton lease.
//!
//! * **Checkpoints** (`checkpoints` table, migration 0002): one row per reader
//!   name with the last position it has finished with and an auxiliary number
//!   (the NATS relay keeps the JetStream stream sequence it reached there).
//!   Saved by the reader itself after its side effects are done, so a reader
//!   that crashes repeats work instead of skipping it.
//! * **Commit notification**: [`Store::subscribe_commits`] is a
//!   `tokio::sync::watch` of the last committed position. The group-commit
//!   writer raises it after every COMMIT that wrote events; on PostgreSQL every
//!   append batch also sends `NOTIFY whistle_events, '<last position>'` inside its
//!   transaction, and one LISTEN task per store (started by the first
//!   subscriber) raises the same watch when another process commits. It only
//!   says "look again": followers still read the log themselves and still poll
//!   as a fallback (a notification can be missed while LISTEN reconnects).
//! * **Singleton lease** ([`Store::try_acquire_singleton`]): work that must run
//!   on one node at a time (the relay). On PostgreSQL a *session* advisory lock,
//!   keyed by the work's name and distinct from the append lock, held on a
//!   dedicated connection for as long as the [`Singleton`] lives; if that node
//!   dies its session ends and the lock frees for the next node. SQLite serves
//!   one process, so the lease is always granted.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::postgres::{COMMIT_CHANNEL, PgStore};
use crate::sqlite::SqliteStore;
use crate::store::Store;

/// How long opening the lease's dedicated connection may take.
const LEASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the lease check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Server-side TCP keepalive of the lease session (idle, interval, count): if the
/// holding node's machine dies without closing its connection, PostgreSQL ends the
/// session (freeing the lock for another node) within about 10 + 5 × 3 seconds.
const LEASE_KEEPALIVE: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];

/// Pause before the LISTEN task tries again after its connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A reader's durable progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Last global position the reader has finished with (0: nothing yet).
    pub position: i64,
    /// Reader-specific number stored beside it (the relay: the JetStream
    /// stream sequence it had reached).
    pub aux: i64,
}

/// The advisory-lock key of a singleton name: FNV-1a (64 bit) of
/// `whistle-singleton/<name>`, so different singletons never share a lock and
/// none collides with [`crate::APPEND_LOCK_KEY`] in practice.
pub fn singleton_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "whistle-singleton/".bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// A held singleton lease. Dropping it (or [`Singleton::release`]) gives the
/// work up; on PostgreSQL the lock lives exactly as long as its session.
#[derive(Debug)]
pub struct Singleton {
    name: String,
    /// The session holding the advisory lock (PostgreSQL); `None` on SQLite.
    conn: Option<PgConnection>,
}

impl Singleton {
    /// The singleton's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies that the lease is still held: on PostgreSQL a round trip on
    /// the locking session. An error means the session (and so the lock) is
    /// gone and another node may take over: stop the work and acquire again.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let query = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted \
             AND ((classid::int8 << 32) | objid::int8) = $1)",
        )
        .bind(singleton_key(&self.name))
        .fetch_one(&mut *conn);
        let held: bool = match tokio::time::timeout(LEASE_CHECK_TIMEOUT, query).await {
            Ok(held) => held?,
            Err(_) => {
                return Err(StoreError::Unavailable(std::sync::Arc::new(
                    sqlx::Error::PoolTimedOut,
                )));
            }
        };
        if held {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "singleton lease {} is no longer held",
                self.name
            )))
        }
    }

    /// Gives the lease up now (instead of when the session closes).
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Bounded: on a dead connection dropping it is all there is to do (the
            // server frees the lock when it notices the session is gone).
            let key = singleton_key(&self.name);
            let _ = tokio::time::timeout(LEASE_CHECK_TIMEOUT, async move {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            })
            .await;
        }
        tracing::info!(singleton = %self.name, "singleton lease released");
    }
}

impl PgStore {
    /// The checkpoint saved under `name`, if any.
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT position, aux FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                position: r.try_get("position").map_err(corrupt)?,
                aux: r.try_get("aux").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    /// Saves (inserts or overwrites) the checkpoint `name`.
    pub async fn save_checkpoint(&self, name: &str, cp: Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position, aux, updated_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (name) DO UPDATE \
             SET position = EXCLUDED.position, aux = EXCLUDED.aux, updated_at = now()",
        )
        .bind(name)
        .bind(cp.position)
        .bind(cp.aux)
        .execute(&self.read)
        .await?;
        Ok(())
    }

    /// See [`Store::subscribe_commits`]. Starts the LISTEN task once.
    pub fn subscribe_commits(&self) -> watch::Receiver<i64> {
        let rx = self.writer.subscribe_commits();
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let options = (*self.options).clone();
            let commits = self.writer.commits().clone();
            *slot = Some(tokio::spawn(listen(options, commits)));
        }
        rx
    }

    /// Tries once to take the singleton lease `name` (non-blocking
    /// `pg_try_advisory_lock` on a new dedicated session). `Ok(None)`: another
    /// session holds it.
    pub async fn try_acquire_singleton(&self, name: &str) -> Result<Option<Singleton>, StoreError> {
        let mut conn = match tokio::time::timeout(
            LEASE_CONNECT_TIMEOUT,
            PgConnection::connect_with(&(*self.options).clone().options(LEASE_KEEPALIVE)),
        )
        .await
        {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(StoreError::Unavailable(std::sync::Arc::new(
                    sqlx::Error::PoolTimedOut,
                )));
            }
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(singleton_key(name))
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        tracing::info!(singleton = name, "singleton lease acquired");
        Ok(Some(Singleton {
            name: name.to_owned(),
            conn: Some(conn),
        }))
    }
}

/// Stops the LISTEN task (store close).
pub(crate) fn stop_listener(store: &PgStore) {
    if let Some(task) = store
        .listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        task.abort();
    }
}

/// Follows `NOTIFY whistle_events` and raises the commit watch; reconnects
/// forever. After a reconnect it wakes the followers once, since
/// notifications sent meanwhile are lost.
async fn listen(options: sqlx::postgres::PgConnectOptions, commits: watch::Sender<i64>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::debug!(%error, "commit listener cannot connect; retrying");
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(COMMIT_CHANNEL).await {
            tracing::debug!(%error, "LISTEN failed; retrying");
            tokio::time::sleep(LISTEN_RETRY).await;
            continue;
        }
        commits.send_modify(|_| {});
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(last) = n.payload().parse::<i64>() {
                        commits.send_if_modified(|seen| {
                            let newer = last > *seen;
                            if newer {
                                *seen = last;
                            }
                            newer
                        });
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "commit listener lost its connection");
                    commits.send_modify(|_| {});
                    tokio::time::sleep(LISTEN_RETRY).await;
                    break;
                }
            }
        }
    }
}

impl SqliteStore {
    /// The checkpoint saved under `name`, if any.
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT position, aux FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                position: r.try_get("position").map_err(corrupt)?,
                aux: r.try_get("aux").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    /// Saves (inserts or overwrites) the checkpoint `name`.
    pub async fn save_checkpoint(&self, name: &str, cp: Checkpoint) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let micros = i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO checkpoints (name, position, aux, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE \
             SET position = excluded.position, aux = excluded.aux, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(cp.position)
        .bind(cp.aux)
        .bind(micros)
        .execute(&self.read)
        .await?;
        Ok(())
    }

    /// See [`Store::subscribe_commits`]: one process, so the writer's watch
    /// sees every commit.
    pub fn subscribe_commits(&self) -> watch::Receiver<i64> {
        self.writer.subscribe_commits()
    }
}

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

impl Store {
    /// The checkpoint saved under `name`, if any.
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        match self {
            Store::Postgres(s) => s.load_checkpoint(name).await,
            Store::Sqlite(s) => s.load_checkpoint(name).await,
        }
    }

    /// Saves (inserts or overwrites) the checkpoint `name`.
    pub async fn save_checkpoint(&self, name: &str, cp: Checkpoint) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.save_checkpoint(name, cp).await,
            Store::Sqlite(s) => s.save_checkpoint(name, cp).await,
        }
    }

    /// A watch of the last committed position (see the module docs): changes
    /// after every commit of this process and, on PostgreSQL, of any process
    /// appending to the same database. Must be called within a tokio runtime.
    pub fn subscribe_commits(&self) -> watch::Receiver<i64> {
        match self {
            Store::Postgres(s) => s.subscribe_commits(),
            Store::Sqlite(s) => s.subscribe_commits(),
        }
    }

    /// Tries once to take the singleton lease `name`; `Ok(None)` while another
    /// node holds it. Always granted on SQLite (one process).
    pub async fn try_acquire_singleton(&self, name: &str) -> Result<Option<Singleton>, StoreError> {
        match self {
            Store::Postgres(s) => s.try_acquire_singleton(name).await,
            Store::Sqlite(_) => Ok(Some(Singleton {
                name: name.to_owned(),
                conn: None,
            })),
        }
    }
}
