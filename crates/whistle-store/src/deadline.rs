//! The deadline table's read side for the scheduler: claim due rows with a lease, drop
//! rows that turned out stale, count what is pending. Rows are written only by appends
//! (see `AppendRequest::deadlines`), in the same transaction as their events.
//!
//! Claiming is an optimisation, not the guarantee: a claimed row is hidden from other
//! schedulers until its lease ends (a node that dies mid-fire releases it by expiry), so
//! several nodes rarely fire the same row; when they do, the case's expected version
//! lets exactly one of them append the resulting events.

use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::{SqliteStore, from_micros, to_micros};
use crate::store::Store;
use crate::types::{DueDeadline, StreamId};

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

impl PgStore {
    /// Claims up to `limit` rows due at `now` (oldest first) for `lease`.
    pub async fn claim_due_deadlines(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDeadline>, StoreError> {
        let rows = sqlx::query(
            "UPDATE deadlines d SET claimed_until = $2 \
             FROM (SELECT stream_id, key FROM deadlines \
                   WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                   ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) c \
             WHERE d.stream_id = c.stream_id AND d.key = c.key \
             RETURNING d.stream_id, d.key, d.due_at",
        )
        .bind(now)
        .bind(now + lease)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(DueDeadline {
                    stream: StreamId(r.try_get("stream_id").map_err(corrupt)?),
                    key: r.try_get("key").map_err(corrupt)?,
                    due_at: r.try_get("due_at").map_err(corrupt)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|d| d.due_at);
        Ok(out)
    }

    /// Removes one row (a stale fire, or one whose case is gone).
    pub async fn delete_deadline(&self, stream: &StreamId, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deadlines WHERE stream_id = $1 AND key = $2")
            .bind(stream.as_str())
            .bind(key)
            .execute(&self.read)
            .await?;
        Ok(())
    }

    /// Pending rows and the earliest due time.
    pub async fn deadline_summary(&self) -> Result<(u64, Option<OffsetDateTime>), StoreError> {
        let row = sqlx::query("SELECT count(*) AS n, min(due_at) AS next FROM deadlines")
            .fetch_one(&self.read)
            .await?;
        let n: i64 = row.try_get("n").map_err(corrupt)?;
        Ok((
            crate::decode_u64("deadline count", n)?,
            row.try_get("next").map_err(corrupt)?,
        ))
    }
}

impl SqliteStore {
    /// See [`PgStore::claim_due_deadlines`]. One process: a plain update suffices.
    pub async fn claim_due_deadlines(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDeadline>, StoreError> {
        let rows = sqlx::query(
            "UPDATE deadlines SET claimed_until = $2 \
             WHERE rowid IN (SELECT rowid FROM deadlines \
                             WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                             ORDER BY due_at LIMIT $3) \
             RETURNING stream_id, key, due_at",
        )
        .bind(to_micros(now)?)
        .bind(to_micros(now + lease)?)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(DueDeadline {
                    stream: StreamId(r.try_get("stream_id").map_err(corrupt)?),
                    key: r.try_get("key").map_err(corrupt)?,
                    due_at: from_micros("due_at", r.try_get("due_at").map_err(corrupt)?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|d| d.due_at);
        Ok(out)
    }

    pub async fn delete_deadline(&self, stream: &StreamId, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deadlines WHERE stream_id = $1 AND key = $2")
            .bind(stream.as_str())
            .bind(key)
            .execute(&self.read)
            .await?;
        Ok(())
    }

    pub async fn deadline_summary(&self) -> Result<(u64, Option<OffsetDateTime>), StoreError> {
        let row = sqlx::query("SELECT count(*) AS n, min(due_at) AS next FROM deadlines")
            .fetch_one(&self.read)
            .await?;
        let n: i64 = row.try_get("n").map_err(corrupt)?;
        let next: Option<i64> = row.try_get("next").map_err(corrupt)?;
        Ok((
            crate::decode_u64("deadline count", n)?,
            next.map(|us| from_micros("next deadline", us))
                .transpose()?,
        ))
    }
}

impl Store {
    /// Claims up to `limit` deadline rows due at `now` for `lease`, oldest first.
    pub async fn claim_due_deadlines(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDeadline>, StoreError> {
        match self {
            Store::Postgres(s) => s.claim_due_deadlines(now, limit, lease).await,
            Store::Sqlite(s) => s.claim_due_deadlines(now, limit, lease).await,
        }
    }

    /// Removes one deadline row.
    pub async fn delete_deadline(&self, stream: &StreamId, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.delete_deadline(stream, key).await,
            Store::Sqlite(s) => s.delete_deadline(stream, key).await,
        }
    }

    /// Pending deadline rows and the earliest due time.
    pub async fn deadline_summary(&self) -> Result<(u64, Option<OffsetDateTime>), StoreError> {
        match self {
            Store::Postgres(s) => s.deadline_summary().await,
            Store::Sqlite(s) => s.deadline_summary().await,
        }
    }
}
