//! The raw cost of the same work, measured in the same run on the same machine:
//! plain inserts of whistle's event rows (same columns, indexes and sizes) batched
//! and one per transaction, plain JetStream publishes of the same payloads, and a
//! bare tonic server answering the same `ReportCase` messages with nothing behind.

use super::stats::{Figure, Samples};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use whistle_proto::v1 as pb;
use whistle_proto::v1::intake_service_client::IntakeServiceClient;
use whistle_proto::v1::intake_service_server::{IntakeService, IntakeServiceServer};

/// One event row as whistle stores it (sampled from the run's own log).
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub event_type: String,
    pub payload: String,
    pub actor_id: String,
    pub actor_role: String,
}

/// The event table's DDL under another name: the baseline pays for the same
/// columns, constraints and indexes as whistle's `events`.
const PG_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_events (
    position    bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    actor_id    text        NOT NULL,
    actor_role  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version))";

const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL CHECK (json_valid(payload)),
    actor_id    TEXT    NOT NULL,
    actor_role  TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)) STRICT";

/// Where the plain inserts go.
pub enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    /// A pool of `tasks` connections, without the ping on acquire (STACK.md trap),
    /// SQLite with whistle's own pragmas (WAL, synchronous=FULL).
    pub async fn connect(url: &str, tasks: u32) -> Result<Db> {
        if url.starts_with("sqlite:") {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            use std::str::FromStr;
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing the SQLite URL")?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(tasks)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .context("connecting to SQLite")?;
            sqlx::query(SQLITE_TABLE).execute(&pool).await?;
            Ok(Db::Sqlite(pool))
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(tasks)
                .test_before_acquire(false)
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            sqlx::query(PG_TABLE).execute(&pool).await?;
            Ok(Db::Postgres(pool))
        }
    }

    async fn insert(&self, rows: &[SampleRow]) -> Result<()> {
        let stream = format!("bench-{}", Uuid::now_v7());
        match self {
            Db::Postgres(pool) => {
                let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
                let streams: Vec<String> = rows.iter().map(|_| stream.clone()).collect();
                let versions: Vec<i64> = (0..rows.len() as i64).map(|v| v + 1).collect();
                let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
                let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
                let actors: Vec<&str> = rows.iter().map(|r| r.actor_id.as_str()).collect();
                let roles: Vec<&str> = rows.iter().map(|r| r.actor_role.as_str()).collect();
                let now = time::OffsetDateTime::now_utc();
                let at: Vec<time::OffsetDateTime> = rows.iter().map(|_| now).collect();
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO bench_events (event_id, stream_id, version, event_type, payload, \
                     actor_id, actor_role, occurred_at) \
                     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], \
                     $5::text[]::jsonb[], $6::text[], $7::text[], $8::timestamptz[])",
                )
                .bind(&ids)
                .bind(&streams)
                .bind(&versions)
                .bind(&types)
                .bind(&payloads)
                .bind(&actors)
                .bind(&roles)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Db::Sqlite(pool) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
                let mut tx = pool.begin().await?;
                for (i, r) in rows.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO bench_events (event_id, stream_id, version, event_type, \
                         payload, actor_id, actor_role, occurred_at, recorded_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(Uuid::now_v7().hyphenated().to_string())
                    .bind(&stream)
                    .bind(i as i64 + 1)
                    .bind(&r.event_type)
                    .bind(&r.payload)
                    .bind(&r.actor_id)
                    .bind(&r.actor_role)
                    .bind(now as i64)
                    .bind(now as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        match self {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
    }
}

/// `tasks` tasks insert `batch` sampled rows per transaction for `duration`.
/// Returns rows per second and the per-transaction latency.
pub async fn inserts(
    db: Arc<Db>,
    rows: Arc<Vec<SampleRow>>,
    batch: usize,
    tasks: usize,
    duration: Duration,
) -> Result<(f64, Samples)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (db, rows, stop, done) = (db.clone(), rows.clone(), stop.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut samples = Samples::with_capacity(4096);
            let mut i = t * 7919;
            while !stop.load(Ordering::Relaxed) {
                let chunk: Vec<SampleRow> = (0..batch)
                    .map(|k| rows[(i + k) % rows.len()].clone())
                    .collect();
                i += batch;
                let t0 = Instant::now();
                db.insert(&chunk).await?;
                samples.push(t0.elapsed());
                done.fetch_add(batch as u64, Ordering::Relaxed);
            }
            anyhow::Ok(samples)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    for h in handles {
        all.extend(h.await.context("insert task")??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((done.load(Ordering::Relaxed) as f64 / secs, all))
}

/// Plain JetStream publishes of the sampled payloads to a scratch stream, at most
/// `window` acks outstanding. Returns messages per second.
pub async fn jetstream_publishes(
    nats_url: &str,
    rows: &[SampleRow],
    window: usize,
    duration: Duration,
) -> Result<f64> {
    use async_nats::jetstream;
    let client = async_nats::connect(nats_url)
        .await
        .context("connecting to NATS")?;
    let js = jetstream::new(client);
    let name = format!("BENCH_RAW_{}", std::process::id());
    let subject = format!("bench.raw.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .context("creating the scratch stream")?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut pending = std::collections::VecDeque::with_capacity(window);
    while started.elapsed() < duration {
        let row = &rows[sent as usize % rows.len()];
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            whistle_bus::message::MSG_ID,
            Uuid::now_v7().to_string().as_str(),
        );
        headers.insert(whistle_bus::message::EVENT_TYPE, row.event_type.as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, row.payload.clone().into())
            .await
            .context("publishing")?;
        pending.push_back(ack);
        if pending.len() >= window
            && let Some(ack) = pending.pop_front()
        {
            ack.await.context("publish ack")?;
        }
        sent += 1;
    }
    while let Some(ack) = pending.pop_front() {
        ack.await.context("publish ack")?;
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    Ok(rate)
}

/// `ReportCase` answered at once: the tonic, HTTP/2 and prost cost of the same
/// messages with no authentication, store or bus behind them.
#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl IntakeService for Echo {
    async fn report_case(
        &self,
        request: Request<pb::ReportCaseRequest>,
    ) -> Result<Response<pb::ReportCaseResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::ReportCaseResponse {
            ack: Some(pb::CommandAck {
                case_id: r.idempotency_key,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn add_note(
        &self,
        _: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn withdraw_case(
        &self,
        _: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn confirm_resolution(
        &self,
        _: Request<pb::ConfirmResolutionRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn reopen_case(
        &self,
        _: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

/// Serves [`Echo`] on a loopback port until the returned sender is dropped.
pub async fn echo_server() -> Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(IntakeServiceServer::new(Echo))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
    });
    Ok((addr, tx))
}

/// A client for `addr` (one HTTP/2 connection; callers clone it per task).
pub async fn client(
    addr: std::net::SocketAddr,
) -> Result<IntakeServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(IntakeServiceClient::new(channel))
}

/// The echo baseline's figure for `clients` concurrent callers.
pub fn echo_figure(rate: f64, samples: &mut Samples, clients: usize) -> Figure {
    Figure::new(
        "grpc",
        format!("bare tonic ReportCase echo, {clients} clients"),
        rate,
        "req/s",
    )
    .latency(samples.percentiles())
}
