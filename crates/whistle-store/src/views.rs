//! Read-model rows and their SQL: the case view (written in the append transaction, see
//! `AppendRequest::view`) and the asynchronous SLA model (`sla_clocks`, `case_holds`),
//! whose rows are replaced per case in the same transaction that advances the
//! projection's checkpoint. The rows are computed by whistle-projections; this module
//! only stores and reads them (nothing but this crate writes SQL).
//!
//! Queries are plain and portable on purpose: lists filter on indexed columns with a
//! keyset cursor, and summaries read the fact rows of a window and aggregate in Rust
//! (pure code in whistle-projections, tested against hand-computed figures).

use time::OffsetDateTime;

/// One case as lists show it. `doc` is the folded case as JSON (`whistle_domain::Case`);
/// list queries leave it empty, `get_case_view` fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseViewRow {
    pub case_id: String,
    /// The case's stream version the row reflects; an older row never replaces a newer.
    pub version: u64,
    /// Position of the last event folded; filled by the store on append.
    pub position: i64,
    pub category: String,
    pub compound: String,
    pub location: String,
    pub grid: Option<String>,
    pub reporter: String,
    pub level: String,
    pub start_level: String,
    pub status: String,
    pub stage: Option<String>,
    pub closure: Option<String>,
    pub handler: Option<String>,
    /// The department holding the case, or the last one that held it.
    pub department: Option<String>,
    pub reported_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    pub escalations: u32,
    pub reopen_count: u32,
    pub satisfaction: Option<u8>,
    pub breaches: u32,
    /// The running clock due first: what the case must do next and by when.
    pub next_milestone: Option<String>,
    pub next_warn_at: Option<OffsetDateTime>,
    pub next_deadline: Option<OffsetDateTime>,
    pub doc: String,
}

/// One milestone clock of a case (projection "sla").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRow {
    pub case_id: String,
    pub key: String,
    pub milestone: String,
    pub scope: String,
    pub level: String,
    pub category: String,
    pub compound: String,
    pub grid: Option<String>,
    /// The department that held the case at the clock's rung, if any.
    pub department: Option<String>,
    /// Who held the case at the clock's rung when it ended (or now, while running).
    pub handler: Option<String>,
    pub reported_at: OffsetDateTime,
    pub started_at: OffsetDateTime,
    pub warn_at: OffsetDateTime,
    pub deadline: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    /// `running`, `met`, `late` (met after its deadline), `breached`, `cancelled`.
    pub outcome: String,
    /// Wall seconds from start to end, for ended clocks.
    pub elapsed_seconds: Option<i64>,
}

/// One span during which a handler held a case (projection "sla").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    pub case_id: String,
    pub seq: u32,
    pub handler: String,
    pub department: Option<String>,
    pub level: String,
    pub compound: String,
    pub reported_at: OffsetDateTime,
    pub from_at: OffsetDateTime,
    pub to_at: Option<OffsetDateTime>,
}

/// The SLA rows of one case, replacing whatever the case had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseSlaRows {
    pub case_id: String,
    pub clocks: Vec<ClockRow>,
    pub holds: Vec<HoldRow>,
}

/// Filters of a case list; empty vectors mean "any". All filters combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub statuses: Vec<String>,
    pub levels: Vec<String>,
    pub categories: Vec<String>,
    pub compounds: Vec<String>,
    pub departments: Vec<String>,
    pub grids: Vec<String>,
    /// Only cases reported by this principal.
    pub reporter: Option<String>,
    /// Only open cases whose earliest running clock passed its warn point at this time.
    pub at_risk_at: Option<OffsetDateTime>,
    /// Only cases with (`true`) or without (`false`) a breached clock.
    pub breached: Option<bool>,
    pub reported_from: Option<OffsetDateTime>,
    pub reported_to: Option<OffsetDateTime>,
}

/// Keyset cursor of a case list: the last row returned (lists run newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub reported_at: OffsetDateTime,
    pub case_id: String,
}

/// The fact rows of a window (cases reported in `[from, to)`), for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaFacts {
    pub cases: Vec<CaseViewRow>,
    pub clocks: Vec<ClockRow>,
    pub holds: Vec<HoldRow>,
}

/// Which read model a rebuild resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModel {
    /// `case_views` (synchronous).
    CaseViews,
    /// `sla_clocks` and `case_holds` and their checkpoint.
    Sla,
}

/// Keeps, per case, only the newest view of a batch (one upsert may not touch a row twice).
pub(crate) fn newest_views<'a>(
    views: impl IntoIterator<Item = &'a CaseViewRow>,
) -> Vec<&'a CaseViewRow> {
    let mut by_case: std::collections::HashMap<&str, &CaseViewRow> =
        std::collections::HashMap::new();
    for v in views {
        match by_case.get(v.case_id.as_str()) {
            Some(old) if old.version >= v.version => {}
            _ => {
                by_case.insert(v.case_id.as_str(), v);
            }
        }
    }
    let mut out: Vec<&CaseViewRow> = by_case.into_values().collect();
    out.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    out
}

// ---------------------------------------------------------------------------------------
// SQL. The two backends differ only in how a timestamp is bound and read (PostgreSQL
// timestamptz, SQLite unix microseconds), so the statements are written once and the
// binding is spelled by small macros that take the conversion.

const VIEW_COLUMNS: &str = "case_id, version, position, category, compound, location, grid, \
     reporter, level, start_level, status, stage, closure, handler, department, reported_at, \
     resolved_at, closed_at, escalations, reopen_count, satisfaction, breaches, next_milestone, \
     next_warn_at, next_deadline, doc";

/// The list columns: everything but `doc`, which lists never decode and which is most
/// of a row's bytes (summaries over a month's cases fetched gigabytes of it).
const LIST_COLUMNS: &str = "case_id, version, position, category, compound, location, grid, \
     reporter, level, start_level, status, stage, closure, handler, department, reported_at, \
     resolved_at, closed_at, escalations, reopen_count, satisfaction, breaches, next_milestone, \
     next_warn_at, next_deadline";

pub(crate) const UPSERT_VIEW_SQL: &str = "INSERT INTO case_views (case_id, version, position, \
     category, compound, location, grid, reporter, level, start_level, status, stage, closure, \
     handler, department, reported_at, resolved_at, closed_at, escalations, reopen_count, \
     satisfaction, breaches, next_milestone, next_warn_at, next_deadline, doc) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26) \
     ON CONFLICT (case_id) DO UPDATE SET version = excluded.version, \
     position = excluded.position, category = excluded.category, compound = excluded.compound, \
     location = excluded.location, grid = excluded.grid, reporter = excluded.reporter, \
     level = excluded.level, start_level = excluded.start_level, status = excluded.status, \
     stage = excluded.stage, closure = excluded.closure, handler = excluded.handler, \
     department = excluded.department, reported_at = excluded.reported_at, \
     resolved_at = excluded.resolved_at, closed_at = excluded.closed_at, \
     escalations = excluded.escalations, reopen_count = excluded.reopen_count, \
     satisfaction = excluded.satisfaction, breaches = excluded.breaches, \
     next_milestone = excluded.next_milestone, next_warn_at = excluded.next_warn_at, \
     next_deadline = excluded.next_deadline, doc = excluded.doc \
     WHERE case_views.version < excluded.version";

const INSERT_CLOCK_SQL: &str = "INSERT INTO sla_clocks (case_id, key, milestone, scope, level, \
     category, compound, grid, department, handler, reported_at, started_at, warn_at, deadline, \
     ended_at, outcome, elapsed_seconds) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

const INSERT_HOLD_SQL: &str = "INSERT INTO case_holds (case_id, seq, handler, department, level, \
     compound, reported_at, from_at, to_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const CLOCK_COLUMNS: &str = "case_id, key, milestone, scope, level, category, compound, grid, \
     department, handler, reported_at, started_at, warn_at, deadline, ended_at, outcome, \
     elapsed_seconds";

const HOLD_COLUMNS: &str =
    "case_id, seq, handler, department, level, compound, reported_at, from_at, to_at";

const OPEN_BY_LEVEL_SQL: &str =
    "SELECT level, count(*) AS n FROM case_views WHERE status = 'open' GROUP BY level";

fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} out of range")))
}

fn to_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} out of range")))
}

/// Binds a view row to [`UPSERT_VIEW_SQL`]; `$ts` converts a timestamp to the backend's form.
macro_rules! bind_view {
    ($q:expr, $v:expr, $ts:expr) => {{
        let v = $v;
        let ts = $ts;
        $q.bind(v.case_id.as_str())
            .bind(to_i64("version", v.version)?)
            .bind(v.position)
            .bind(v.category.as_str())
            .bind(v.compound.as_str())
            .bind(v.location.as_str())
            .bind(v.grid.as_deref())
            .bind(v.reporter.as_str())
            .bind(v.level.as_str())
            .bind(v.start_level.as_str())
            .bind(v.status.as_str())
            .bind(v.stage.as_deref())
            .bind(v.closure.as_deref())
            .bind(v.handler.as_deref())
            .bind(v.department.as_deref())
            .bind(ts(v.reported_at)?)
            .bind(v.resolved_at.map(ts).transpose()?)
            .bind(v.closed_at.map(ts).transpose()?)
            .bind(i64::from(v.escalations))
            .bind(i64::from(v.reopen_count))
            .bind(v.satisfaction.map(i64::from))
            .bind(i64::from(v.breaches))
            .bind(v.next_milestone.as_deref())
            .bind(v.next_warn_at.map(ts).transpose()?)
            .bind(v.next_deadline.map(ts).transpose()?)
            .bind(v.doc.as_str())
    }};
}

macro_rules! bind_clock {
    ($q:expr, $c:expr, $ts:expr) => {{
        let c = $c;
        let ts = $ts;
        $q.bind(c.case_id.as_str())
            .bind(c.key.as_str())
            .bind(c.milestone.as_str())
            .bind(c.scope.as_str())
            .bind(c.level.as_str())
            .bind(c.category.as_str())
            .bind(c.compound.as_str())
            .bind(c.grid.as_deref())
            .bind(c.department.as_deref())
            .bind(c.handler.as_deref())
            .bind(ts(c.reported_at)?)
            .bind(ts(c.started_at)?)
            .bind(ts(c.warn_at)?)
            .bind(ts(c.deadline)?)
            .bind(c.ended_at.map(ts).transpose()?)
            .bind(c.outcome.as_str())
            .bind(c.elapsed_seconds)
    }};
}

macro_rules! bind_hold {
    ($q:expr, $h:expr, $ts:expr) => {{
        let h = $h;
        let ts = $ts;
        $q.bind(h.case_id.as_str())
            .bind(i64::from(h.seq))
            .bind(h.handler.as_str())
            .bind(h.department.as_deref())
            .bind(h.level.as_str())
            .bind(h.compound.as_str())
            .bind(ts(h.reported_at)?)
            .bind(ts(h.from_at)?)
            .bind(h.to_at.map(ts).transpose()?)
    }};
}

/// Reads a view row; `$ts` reads one timestamp column (by name) into `OffsetDateTime`,
/// `$ots` an optional one.
macro_rules! read_view {
    ($r:expr, $ts:expr, $ots:expr, $with_doc:expr) => {{
        let r = $r;
        let version: i64 = r.try_get("version").map_err(corrupt)?;
        let satisfaction: Option<i64> = r.try_get("satisfaction").map_err(corrupt)?;
        CaseViewRow {
            case_id: r.try_get("case_id").map_err(corrupt)?,
            version: crate::decode_u64("version", version)?,
            position: r.try_get("position").map_err(corrupt)?,
            category: r.try_get("category").map_err(corrupt)?,
            compound: r.try_get("compound").map_err(corrupt)?,
            location: r.try_get("location").map_err(corrupt)?,
            grid: r.try_get("grid").map_err(corrupt)?,
            reporter: r.try_get("reporter").map_err(corrupt)?,
            level: r.try_get("level").map_err(corrupt)?,
            start_level: r.try_get("start_level").map_err(corrupt)?,
            status: r.try_get("status").map_err(corrupt)?,
            stage: r.try_get("stage").map_err(corrupt)?,
            closure: r.try_get("closure").map_err(corrupt)?,
            handler: r.try_get("handler").map_err(corrupt)?,
            department: r.try_get("department").map_err(corrupt)?,
            reported_at: $ts(r, "reported_at")?,
            resolved_at: $ots(r, "resolved_at")?,
            closed_at: $ots(r, "closed_at")?,
            escalations: to_u32("escalations", r.try_get("escalations").map_err(corrupt)?)?,
            reopen_count: to_u32("reopen_count", r.try_get("reopen_count").map_err(corrupt)?)?,
            satisfaction: satisfaction
                .map(|s| {
                    u8::try_from(s).map_err(|_| StoreError::Corrupt(format!("satisfaction {s}")))
                })
                .transpose()?,
            breaches: to_u32("breaches", r.try_get("breaches").map_err(corrupt)?)?,
            next_milestone: r.try_get("next_milestone").map_err(corrupt)?,
            next_warn_at: $ots(r, "next_warn_at")?,
            next_deadline: $ots(r, "next_deadline")?,
            doc: if $with_doc {
                r.try_get("doc").map_err(corrupt)?
            } else {
                String::new()
            },
        }
    }};
}

macro_rules! read_clock {
    ($r:expr, $ts:expr, $ots:expr) => {{
        let r = $r;
        ClockRow {
            case_id: r.try_get("case_id").map_err(corrupt)?,
            key: r.try_get("key").map_err(corrupt)?,
            milestone: r.try_get("milestone").map_err(corrupt)?,
            scope: r.try_get("scope").map_err(corrupt)?,
            level: r.try_get("level").map_err(corrupt)?,
            category: r.try_get("category").map_err(corrupt)?,
            compound: r.try_get("compound").map_err(corrupt)?,
            grid: r.try_get("grid").map_err(corrupt)?,
            department: r.try_get("department").map_err(corrupt)?,
            handler: r.try_get("handler").map_err(corrupt)?,
            reported_at: $ts(r, "reported_at")?,
            started_at: $ts(r, "started_at")?,
            warn_at: $ts(r, "warn_at")?,
            deadline: $ts(r, "deadline")?,
            ended_at: $ots(r, "ended_at")?,
            outcome: r.try_get("outcome").map_err(corrupt)?,
            elapsed_seconds: r.try_get("elapsed_seconds").map_err(corrupt)?,
        }
    }};
}

macro_rules! read_hold {
    ($r:expr, $ts:expr, $ots:expr) => {{
        let r = $r;
        HoldRow {
            case_id: r.try_get("case_id").map_err(corrupt)?,
            seq: to_u32("seq", r.try_get("seq").map_err(corrupt)?)?,
            handler: r.try_get("handler").map_err(corrupt)?,
            department: r.try_get("department").map_err(corrupt)?,
            level: r.try_get("level").map_err(corrupt)?,
            compound: r.try_get("compound").map_err(corrupt)?,
            reported_at: $ts(r, "reported_at")?,
            from_at: $ts(r, "from_at")?,
            to_at: $ots(r, "to_at")?,
        }
    }};
}

/// Appends the WHERE clause of a case list (and the cursor and limit) to a query builder.
macro_rules! push_filter {
    ($qb:expr, $f:expr, $cursor:expr, $limit:expr, $ts:expr) => {{
        let qb = $qb;
        let f: &CaseFilter = $f;
        let ts = $ts;
        qb.push(" WHERE 1 = 1");
        for (col, values) in [
            ("status", &f.statuses),
            ("level", &f.levels),
            ("category", &f.categories),
            ("compound", &f.compounds),
            ("department", &f.departments),
            ("grid", &f.grids),
        ] {
            if !values.is_empty() {
                qb.push(" AND ").push(col).push(" IN (");
                let mut sep = qb.separated(", ");
                for v in values {
                    sep.push_bind(v.clone());
                }
                sep.push_unseparated(")");
            }
        }
        if let Some(r) = &f.reporter {
            qb.push(" AND reporter = ").push_bind(r.clone());
        }
        if let Some(at) = f.at_risk_at {
            qb.push(" AND status = 'open' AND next_warn_at <= ")
                .push_bind(ts(at)?);
        }
        match f.breached {
            Some(true) => {
                qb.push(" AND breaches > 0");
            }
            Some(false) => {
                qb.push(" AND breaches = 0");
            }
            None => {}
        }
        if let Some(from) = f.reported_from {
            qb.push(" AND reported_at >= ").push_bind(ts(from)?);
        }
        if let Some(to) = f.reported_to {
            qb.push(" AND reported_at < ").push_bind(ts(to)?);
        }
        if let Some(c) = $cursor {
            let c: &ListCursor = c;
            qb.push(" AND (reported_at < ")
                .push_bind(ts(c.reported_at)?)
                .push(" OR (reported_at = ")
                .push_bind(ts(c.reported_at)?)
                .push(" AND case_id < ")
                .push_bind(c.case_id.clone())
                .push("))");
        }
        qb.push(" ORDER BY reported_at DESC, case_id DESC");
        if let Some(limit) = $limit {
            let limit: u32 = limit;
            qb.push(" LIMIT ").push_bind(i64::from(limit));
        }
    }};
}

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::{SqliteStore, from_micros, to_micros};
use crate::store::Store;
use sqlx::{AssertSqlSafe, Row};

fn pg_ts(t: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
    Ok(t)
}

fn pg_get(r: &sqlx::postgres::PgRow, col: &str) -> Result<OffsetDateTime, StoreError> {
    r.try_get(col).map_err(corrupt)
}

fn pg_get_opt(r: &sqlx::postgres::PgRow, col: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    r.try_get(col).map_err(corrupt)
}

fn lite_get(r: &sqlx::sqlite::SqliteRow, col: &str) -> Result<OffsetDateTime, StoreError> {
    from_micros(col, r.try_get(col).map_err(corrupt)?)
}

fn lite_get_opt(
    r: &sqlx::sqlite::SqliteRow,
    col: &str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    let us: Option<i64> = r.try_get(col).map_err(corrupt)?;
    us.map(|us| from_micros(col, us)).transpose()
}

/// Writes the newest view per case inside an append transaction (PostgreSQL).
pub(crate) async fn pg_upsert_views(
    tx: &mut sqlx::PgConnection,
    views: &[&CaseViewRow],
) -> Result<(), crate::postgres::TxError> {
    for v in views {
        let q = sqlx::query(UPSERT_VIEW_SQL);
        bind_view!(q, *v, pg_ts).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Writes the newest view per case inside an append transaction (SQLite).
pub(crate) async fn lite_upsert_views(
    tx: &mut sqlx::SqliteConnection,
    views: &[&CaseViewRow],
) -> Result<(), StoreError> {
    for v in views {
        let q = sqlx::query(UPSERT_VIEW_SQL);
        bind_view!(q, *v, to_micros).execute(&mut *tx).await?;
    }
    Ok(())
}

impl PgStore {
    /// One case's view with its document.
    pub async fn get_case_view(&self, case_id: &str) -> Result<Option<CaseViewRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VIEW_COLUMNS} FROM case_views WHERE case_id = $1"
        )))
        .bind(case_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| Ok(read_view!(&r, pg_get, pg_get_opt, true)))
            .transpose()
    }

    /// Cases matching `filter`, newest first, after `cursor`, at most `limit` (no limit: all).
    pub async fn list_case_views(
        &self,
        filter: &CaseFilter,
        cursor: Option<&ListCursor>,
        limit: Option<u32>,
    ) -> Result<Vec<CaseViewRow>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "SELECT {LIST_COLUMNS} FROM case_views"
        ));
        push_filter!(&mut qb, filter, cursor, limit, pg_ts);
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| Ok(read_view!(r, pg_get, pg_get_opt, false)))
            .collect()
    }

    /// The fact rows of cases reported in `[from, to)` (all cases when both are `None`).
    pub async fn sla_facts(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<SlaFacts, StoreError> {
        let filter = CaseFilter {
            reported_from: from,
            reported_to: to,
            ..CaseFilter::default()
        };
        let cases = self.list_case_views(&filter, None, None).await?;
        let lo = from.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let hi = to.unwrap_or(time::macros::datetime!(9999-01-01 0:00 UTC));
        let clocks = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE reported_at >= $1 AND reported_at < $2 \
             ORDER BY case_id, key"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok(read_clock!(r, pg_get, pg_get_opt)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let holds = sqlx::query(AssertSqlSafe(format!(
            "SELECT {HOLD_COLUMNS} FROM case_holds WHERE reported_at >= $1 AND reported_at < $2 \
             ORDER BY case_id, seq"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok(read_hold!(r, pg_get, pg_get_opt)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(SlaFacts {
            cases,
            clocks,
            holds,
        })
    }

    /// Replaces the SLA rows of the given cases and moves checkpoint `name` from `after` to
    /// `upto`, in one transaction. Returns `false` (writing nothing) when the checkpoint is
    /// not at `after` — another node projected this range, or the caller's cursor is stale.
    pub async fn apply_sla_rows(
        &self,
        name: &str,
        after: i64,
        upto: i64,
        cases: &[CaseSlaRows],
    ) -> Result<bool, StoreError> {
        let mut tx = self.read.begin().await?;
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let current: i64 =
            sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        if current != after {
            return Ok(false);
        }
        let ids: Vec<&str> = cases.iter().map(|c| c.case_id.as_str()).collect();
        sqlx::query("DELETE FROM sla_clocks WHERE case_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM case_holds WHERE case_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        for case in cases {
            for c in &case.clocks {
                let q = sqlx::query(INSERT_CLOCK_SQL);
                bind_clock!(q, c, pg_ts).execute(&mut *tx).await?;
            }
            for h in &case.holds {
                let q = sqlx::query(INSERT_HOLD_SQL);
                bind_hold!(q, h, pg_ts).execute(&mut *tx).await?;
            }
        }
        sqlx::query("UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1")
            .bind(name)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Upserts views outside an append (rebuilds); never replaces a newer row.
    pub async fn upsert_case_views(&self, views: &[CaseViewRow]) -> Result<(), StoreError> {
        let newest = newest_views(views);
        let mut tx = self.read.begin().await?;
        for v in newest {
            let q = sqlx::query(UPSERT_VIEW_SQL);
            bind_view!(q, v, pg_ts).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Empties a read model (and its checkpoint) for a rebuild from zero.
    pub async fn reset_read_model(
        &self,
        model: ReadModel,
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.read.begin().await?;
        match model {
            ReadModel::CaseViews => {
                sqlx::query("DELETE FROM case_views")
                    .execute(&mut *tx)
                    .await?;
            }
            ReadModel::Sla => {
                sqlx::query("DELETE FROM sla_clocks")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM case_holds")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM checkpoints WHERE name = $1")
            .bind(checkpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Open cases per current rung (for `/metrics`).
    pub async fn open_cases_by_level(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(OPEN_BY_LEVEL_SQL).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n").map_err(corrupt)?;
                Ok((
                    r.try_get("level").map_err(corrupt)?,
                    crate::decode_u64("count", n)?,
                ))
            })
            .collect()
    }

    /// Whether any case view is stored (a server starting on a log without views projects them).
    pub async fn has_case_views(&self) -> Result<bool, StoreError> {
        // Whether any view exists: an index probe, not a count of every case.
        let any: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM case_views LIMIT 1) AS v")
                .fetch_one(&self.read)
                .await?;
        Ok(any > 0)
    }
}

impl SqliteStore {
    pub async fn get_case_view(&self, case_id: &str) -> Result<Option<CaseViewRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VIEW_COLUMNS} FROM case_views WHERE case_id = $1"
        )))
        .bind(case_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| Ok(read_view!(&r, lite_get, lite_get_opt, true)))
            .transpose()
    }

    pub async fn list_case_views(
        &self,
        filter: &CaseFilter,
        cursor: Option<&ListCursor>,
        limit: Option<u32>,
    ) -> Result<Vec<CaseViewRow>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "SELECT {LIST_COLUMNS} FROM case_views"
        ));
        push_filter!(&mut qb, filter, cursor, limit, to_micros);
        let rows = qb.build().fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| Ok(read_view!(r, lite_get, lite_get_opt, false)))
            .collect()
    }

    pub async fn sla_facts(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<SlaFacts, StoreError> {
        let filter = CaseFilter {
            reported_from: from,
            reported_to: to,
            ..CaseFilter::default()
        };
        let cases = self.list_case_views(&filter, None, None).await?;
        let lo = from.map(to_micros).transpose()?.unwrap_or(i64::MIN);
        let hi = to.map(to_micros).transpose()?.unwrap_or(i64::MAX);
        let clocks = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE reported_at >= $1 AND reported_at < $2 \
             ORDER BY case_id, key"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok(read_clock!(r, lite_get, lite_get_opt)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let holds = sqlx::query(AssertSqlSafe(format!(
            "SELECT {HOLD_COLUMNS} FROM case_holds WHERE reported_at >= $1 AND reported_at < $2 \
             ORDER BY case_id, seq"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok(read_hold!(r, lite_get, lite_get_opt)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(SlaFacts {
            cases,
            clocks,
            holds,
        })
    }

    /// See [`PgStore::apply_sla_rows`]. Runs on the writer's serialisation by
    /// `BEGIN IMMEDIATE`: SQLite has one writer at a time.
    pub async fn apply_sla_rows(
        &self,
        name: &str,
        after: i64,
        upto: i64,
        cases: &[CaseSlaRows],
    ) -> Result<bool, StoreError> {
        let mut conn = self.read.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let now_us = to_micros(OffsetDateTime::now_utc())?;
        sqlx::query(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        let current: i64 = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if current != after {
            return Ok(false);
        }
        for case in cases {
            sqlx::query("DELETE FROM sla_clocks WHERE case_id = $1")
                .bind(case.case_id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM case_holds WHERE case_id = $1")
                .bind(case.case_id.as_str())
                .execute(&mut *tx)
                .await?;
            for c in &case.clocks {
                let q = sqlx::query(INSERT_CLOCK_SQL);
                bind_clock!(q, c, to_micros).execute(&mut *tx).await?;
            }
            for h in &case.holds {
                let q = sqlx::query(INSERT_HOLD_SQL);
                bind_hold!(q, h, to_micros).execute(&mut *tx).await?;
            }
        }
        sqlx::query("UPDATE checkpoints SET position = $2, updated_at = $3 WHERE name = $1")
            .bind(name)
            .bind(upto)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn upsert_case_views(&self, views: &[CaseViewRow]) -> Result<(), StoreError> {
        let newest = newest_views(views);
        let mut conn = self.read.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        lite_upsert_views(&mut tx, &newest).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn reset_read_model(
        &self,
        model: ReadModel,
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.read.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        match model {
            ReadModel::CaseViews => {
                sqlx::query("DELETE FROM case_views")
                    .execute(&mut *tx)
                    .await?;
            }
            ReadModel::Sla => {
                sqlx::query("DELETE FROM sla_clocks")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM case_holds")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM checkpoints WHERE name = $1")
            .bind(checkpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn has_case_views(&self) -> Result<bool, StoreError> {
        // Whether any view exists: an index probe, not a count of every case.
        let any: i64 =
            sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM case_views LIMIT 1) AS v")
                .fetch_one(&self.read)
                .await?;
        Ok(any > 0)
    }

    pub async fn open_cases_by_level(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(OPEN_BY_LEVEL_SQL).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n").map_err(corrupt)?;
                Ok((
                    r.try_get("level").map_err(corrupt)?,
                    crate::decode_u64("count", n)?,
                ))
            })
            .collect()
    }
}

/// Dispatches to the backend.
macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Postgres($s) => $e,
            Store::Sqlite($s) => $e,
        }
    };
}

impl Store {
    /// One case's view with its document (`None`: no such case, or not projected yet).
    pub async fn get_case_view(&self, case_id: &str) -> Result<Option<CaseViewRow>, StoreError> {
        both!(self, s => s.get_case_view(case_id).await)
    }

    /// Cases matching `filter`, newest first, after `cursor`, at most `limit` (`None`: all).
    pub async fn list_case_views(
        &self,
        filter: &CaseFilter,
        cursor: Option<&ListCursor>,
        limit: Option<u32>,
    ) -> Result<Vec<CaseViewRow>, StoreError> {
        both!(self, s => s.list_case_views(filter, cursor, limit).await)
    }

    /// Case views, clocks and holds of the cases reported in `[from, to)`.
    pub async fn sla_facts(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<SlaFacts, StoreError> {
        both!(self, s => s.sla_facts(from, to).await)
    }

    /// See [`PgStore::apply_sla_rows`].
    pub async fn apply_sla_rows(
        &self,
        name: &str,
        after: i64,
        upto: i64,
        cases: &[CaseSlaRows],
    ) -> Result<bool, StoreError> {
        both!(self, s => s.apply_sla_rows(name, after, upto, cases).await)
    }

    /// Upserts views outside an append (rebuilds); never replaces a newer row.
    pub async fn upsert_case_views(&self, views: &[CaseViewRow]) -> Result<(), StoreError> {
        both!(self, s => s.upsert_case_views(views).await)
    }

    /// Empties a read model and drops its checkpoint.
    pub async fn reset_read_model(
        &self,
        model: ReadModel,
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        both!(self, s => s.reset_read_model(model, checkpoint).await)
    }

    /// Open cases per current rung.
    pub async fn open_cases_by_level(&self) -> Result<Vec<(String, u64)>, StoreError> {
        both!(self, s => s.open_cases_by_level().await)
    }

    /// Whether any case view is stored.
    pub async fn has_case_views(&self) -> Result<bool, StoreError> {
        both!(self, s => s.has_case_views().await)
    }
}
