//! Read-model rows at scale for the SLA summary's latency: the cases the bench
//! reported (their `case_views`, `sla_clocks` and `case_holds` rows, as the
//! projections wrote them) copied under new case ids, spread over the summary's
//! window, until the read model holds the asked-for number of cases. The summary
//! reads these tables only, so its cost depends on their rows, not on the log.

use anyhow::{Context, Result};
use sqlx::Row;

/// Days the copies are spread over (the summary's window covers them).
pub const SPREAD_DAYS: i64 = 30;

async fn columns(db: &super::baseline::Db, table: &str) -> Result<Vec<String>> {
    use super::baseline::Db;
    let names = match db {
        Db::Postgres(pool) => sqlx::query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<Vec<_>, _>>()?,
        Db::Sqlite(pool) => sqlx::query("SELECT name FROM pragma_table_info($1) ORDER BY cid")
            .bind(table)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<Vec<_>, _>>()?,
    };
    anyhow::ensure!(!names.is_empty(), "table {table} has no columns");
    Ok(names)
}

async fn execute(db: &super::baseline::Db, sql: String) -> Result<u64> {
    use super::baseline::Db;
    let sql = sqlx::AssertSqlSafe(sql);
    Ok(match db {
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await?.rows_affected(),
        Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await?.rows_affected(),
    })
}

async fn count(db: &super::baseline::Db, sql: &str) -> Result<i64> {
    use super::baseline::Db;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    Ok(match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?,
        Db::Sqlite(pool) => sqlx::query(sql)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?,
    })
}

/// Copies the existing cases' read-model rows until `case_views` holds at least
/// `target` cases. Returns the number of cases it holds afterwards.
pub async fn grow_to(db: &super::baseline::Db, target: u64) -> Result<u64> {
    use super::baseline::Db;
    let have = count(db, "SELECT count(*) FROM case_views").await? as u64;
    if have == 0 {
        anyhow::bail!("no cases to copy: the load phases reported none");
    }
    if have >= target {
        return Ok(have);
    }
    let copies = (target - have).div_ceil(have);
    let day = match db {
        Db::Postgres(_) => "interval '1 day'",
        // SQLite keeps timestamps as unix microseconds.
        Db::Sqlite(_) => "86400000000",
    };
    // Templates are the original rows only: copies' ids start with `x`, which no
    // case id (a UUID, hex) does.
    for table in ["case_views", "sla_clocks", "case_holds"] {
        let cols = columns(db, table).await?;
        let select = cols
            .iter()
            .map(|c| match c.as_str() {
                "case_id" => "'x' || g.x || '-' || t.case_id".to_owned(),
                "reported_at" => format!("t.reported_at - (g.x % {SPREAD_DAYS}) * {day}"),
                other => format!("t.{other}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {copies}) \
             INSERT INTO {table} ({}) SELECT {select} FROM {table} t, g \
             WHERE t.case_id NOT LIKE 'x%'",
            cols.join(", ")
        );
        execute(db, sql)
            .await
            .with_context(|| format!("copying {table} rows"))?;
    }
    if let Db::Postgres(_) = db {
        execute(db, "ANALYZE case_views, sla_clocks, case_holds".to_owned()).await?;
    }
    Ok(count(db, "SELECT count(*) FROM case_views").await? as u64)
}
