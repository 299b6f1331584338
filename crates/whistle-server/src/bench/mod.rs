//! `whistle bench`: whistle's throughput and latencies measured in one run beside
//! the raw cost of the same work on the same machine (plain inserts of the same
//! event rows, plain JetStream publishes, a bare tonic echo of the same messages),
//! each whistle figure printed as a ratio to its baseline. A human table on stdout
//! and every figure in a JSON file.
//!
//! Per backend (PostgreSQL in a fresh database it drops afterwards, SQLite in a
//! fresh temporary directory) the real server is built in this process with the
//! relay to a nats-server the bench starts itself (so nothing else on the machine
//! shares its stream), then: baselines; `ReportCase` closed loop at `--clients`;
//! open loop at half that rate with report → JetStream delivery latency; a rebuild
//! of every projection from zero; the SLA summary over `--summary-cases` cases.

mod baseline;
mod facts;
mod load;
mod stats;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use stats::{Figure, Samples};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use whistle_api::{Principal, hash_token};
use whistle_domain::{OrgKind, PrincipalId, Role, Scope};
use whistle_proto::v1 as pb;
use whistle_proto::v1::dashboard_service_client::DashboardServiceClient;
use whistle_store::EventStore;

use crate::app::Application;
use crate::config::{ServeArgs, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Backends to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Postgres, Backend::Sqlite])]
    pub backend: Vec<Backend>,
    /// PostgreSQL server (any database on it): the bench creates a fresh database
    /// `whistle_bench_<pid>` there and drops it at the end.
    #[arg(
        long,
        env = "WHISTLE_BENCH_DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// nats-server binary; the bench runs its own on a free loopback port.
    #[arg(
        long,
        env = "WHISTLE_NATS_SERVER",
        default_value = "/usr/sbin/nats-server"
    )]
    pub nats_server: PathBuf,
    /// Concurrent gRPC clients (grid workers) in the closed loop.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds each timed phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Cases in the read model when the SLA summary is timed (the reported cases are
    /// copied up to this number).
    #[arg(long, default_value_t = 100_000)]
    pub summary_cases: u64,
    /// Summary queries timed.
    #[arg(long, default_value_t = 10)]
    pub summary_queries: usize,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench.json")]
    pub out: PathBuf,
}

/// The whole report (the JSON file).
#[derive(Debug, serde::Serialize)]
struct Report {
    started_at: String,
    machine: Machine,
    args: String,
    figures: Vec<Figure>,
    peak_rss_mib: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
struct Machine {
    cpus: usize,
    os: String,
    nats_server: String,
    postgres: Option<String>,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb.set_message(what.to_owned());
    pb
}

pub async fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.seconds >= 1, "--seconds must be at least 1");
    if cfg!(debug_assertions) {
        eprintln!(
            "whistle bench: this is a debug build; for figures worth quoting run `cargo run --release -- bench`"
        );
    }
    let phases = 3 + args.backend.len() as u64 * 6;
    let progress = bar(phases, "starting");
    let started_at = time::OffsetDateTime::now_utc();
    let nats = NatsProcess::start(&args.nats_server)?;
    let duration = Duration::from_secs(args.seconds);
    let mut figures = Vec::new();

    progress.set_message("bare tonic echo");
    let echo = echo_baseline(args.clients, duration).await?;
    progress.inc(1);
    figures.push(echo.clone());

    let mut postgres_version = None;
    for &backend in &args.backend {
        let env = BackendEnv::create(backend, &args.database_url).await?;
        if backend == Backend::Postgres {
            postgres_version = env.server_version().await;
        }
        let result = measure_backend(&args, &env, &nats, &echo, duration, &progress).await;
        env.drop_database().await;
        figures.extend(result.with_context(|| format!("measuring {}", backend.name()))?);
    }
    progress.set_message("plain JetStream publishes");
    let sample = vec![baseline::SampleRow {
        event_type: "CaseReported".into(),
        payload: "x".repeat(600),
        actor_id: "gw-bench-0".into(),
        actor_role: "grid_worker".into(),
    }];
    let js_rate = baseline::jetstream_publishes(&nats.url(), &sample, 256, duration).await?;
    figures.push(
        Figure::new(
            "nats",
            "plain JetStream publish, ≤256 acks outstanding",
            js_rate,
            "msg/s",
        )
        .note("600-byte payloads, Nats-Msg-Id header, file storage"),
    );
    progress.inc(1);
    progress.finish_and_clear();

    let rss = stats::peak_rss_mib();
    let report = Report {
        started_at: started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            nats_server: nats.version.clone(),
            postgres: postgres_version,
        },
        args: format!("{args:?}"),
        figures,
        peak_rss_mib: rss,
    };
    println!("{}", stats::table(&report.figures));
    if let Some(rss) = rss {
        println!("peak RSS of this process (server and clients together): {rss:.0} MiB");
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("figures written to {}", args.out.display());
    Ok(())
}

async fn echo_baseline(clients: usize, duration: Duration) -> Result<Figure> {
    let (addr, _stop) = baseline::echo_server().await?;
    let channels = channels(addr, clients).await?;
    let workload = load::Workload {
        tokens: (0..clients)
            .map(|_| MetadataValue::from_static("Bearer wst_echo"))
            .collect(),
        places: Arc::new(vec![("street-light".to_owned(), "unit".to_owned())]),
        tag: "echo".to_owned(),
    };
    let mut out =
        load::report_cases(&channels, &workload, load::Pace::Closed, duration, false).await?;
    Ok(baseline::echo_figure(out.rate, &mut out.latency, clients))
}

/// One HTTP/2 connection per 8 clients, as a department's or a district app's
/// client pool would hold.
async fn channels(
    addr: SocketAddr,
    clients: usize,
) -> Result<
    Vec<whistle_proto::v1::intake_service_client::IntakeServiceClient<tonic::transport::Channel>>,
> {
    let mut out = Vec::new();
    for _ in 0..clients.div_ceil(8) {
        out.push(baseline::client(addr).await?);
    }
    Ok(out)
}

async fn measure_backend(
    args: &BenchArgs,
    env: &BackendEnv,
    nats: &NatsProcess,
    echo: &Figure,
    duration: Duration,
    progress: &ProgressBar,
) -> Result<Vec<Figure>> {
    let b = env.backend.name();
    let mut figures = Vec::new();
    let mut settings = Settings::resolve(&ServeArgs {
        data_dir: Some(env.data_dir.clone()),
        database_url: env.database_url.clone(),
        listen: Some("127.0.0.1:0".parse()?),
        http_listen: Some("127.0.0.1:0".parse()?),
        nats_url: Some(nats.url()),
        ..ServeArgs::default()
    })?;
    // The bench's grid workers report anywhere in the district; the per-principal
    // rate limit is lifted (it would measure the limiter, not the server).
    let mut tokens = Vec::new();
    for i in 0..args.clients {
        let token = crate::demo::new_token()?;
        settings.principals.push((
            hash_token(&token),
            Principal {
                id: PrincipalId::new(format!("gw-bench-{i}")),
                role: Role::GridWorker,
                department: None,
                name: format!("bench grid worker {i}"),
                scope: Scope::District,
            },
        ));
        tokens.push(MetadataValue::try_from(format!("Bearer {token}"))?);
    }
    let supervisor = crate::demo::new_token()?;
    settings.principals.push((
        hash_token(&supervisor),
        Principal {
            id: PrincipalId::new("sup-bench"),
            role: Role::Supervisor,
            department: None,
            name: "bench supervisor".into(),
            scope: Scope::District,
        },
    ));
    settings.limits.per_second = 1e9;
    settings.limits.burst = u32::MAX;
    let district = settings.district.clone();
    let stream = settings
        .nats
        .as_ref()
        .map(|n| n.stream.name.clone())
        .context("the bench runs the relay")?;
    let store_url = settings.store.url.clone();
    let units: Vec<String> = district
        .org
        .nodes()
        .filter(|n| n.kind == OrgKind::Unit)
        .map(|n| n.id.to_string())
        .collect();
    let categories: Vec<String> = district
        .catalogue
        .categories
        .keys()
        .map(|c| c.to_string())
        .collect();
    anyhow::ensure!(
        !units.is_empty() && !categories.is_empty(),
        "the demo district has no units or categories"
    );
    let places: Vec<(String, String)> = (0..units.len().max(categories.len()) * 3)
        .map(|i| {
            (
                categories[i % categories.len()].clone(),
                units[(i * 7) % units.len()].clone(),
            )
        })
        .collect();

    let app = Application::build(settings).await?;
    let addr = app.local_addr();
    let store = app.state().store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channels = channels(addr, args.clients).await?;
    let workload = |tag: &str| load::Workload {
        tokens: tokens.clone(),
        places: Arc::new(places.clone()),
        tag: format!("{tag}-{}", std::process::id()),
    };

    // Warm-up, and the rows the baselines insert: whistle's own events.
    progress.set_message(format!("{b}: warm-up"));
    load::report_cases(
        &channels,
        &workload("warm"),
        load::Pace::Closed,
        Duration::from_secs(2),
        false,
    )
    .await?;
    let db = Arc::new(baseline::Db::connect(&store_url, args.clients as u32).await?);
    let rows = Arc::new(sample_rows(&db).await?);
    let mean_payload =
        rows.iter().map(|r| r.payload.len()).sum::<usize>() as f64 / rows.len() as f64;
    progress.inc(1);

    progress.set_message(format!("{b}: plain inserts"));
    let (batched, mut batched_lat) =
        baseline::inserts(db.clone(), rows.clone(), 100, 8, duration).await?;
    let batched = Figure::new(b, "plain insert, 100 rows/txn, 8 tasks", batched, "rows/s")
        .latency(batched_lat.percentiles())
        .note(format!(
            "whistle's own event rows (mean payload {mean_payload:.0} B), same columns and indexes"
        ));
    let (single, mut single_lat) =
        baseline::inserts(db.clone(), rows.clone(), 1, args.clients, duration).await?;
    let single = Figure::new(
        b,
        format!("plain insert, 1 row/txn, {} tasks", args.clients),
        single,
        "rows/s",
    )
    .latency(single_lat.percentiles());
    figures.push(batched.clone());
    figures.push(single.clone());
    progress.inc(1);

    progress.set_message(format!("{b}: ReportCase closed loop"));
    let events_per_report = {
        let before = store.stats();
        let mut closed = load::report_cases(
            &channels,
            &workload("closed"),
            load::Pace::Closed,
            duration,
            false,
        )
        .await?;
        let after = store.stats();
        let events = after.events.saturating_sub(before.events) as f64;
        let batches = after.batches.saturating_sub(before.batches).max(1) as f64;
        let units = after.units.saturating_sub(before.units) as f64;
        let reports = closed.latency.len().max(1) as f64;
        let per_report = events / reports;
        let f = Figure::new(b, format!("whistle ReportCase, closed loop, {} clients", args.clients), closed.rate, "req/s")
            .latency(closed.latency.percentiles())
            .note(format!(
                "{:.2} events per report; group commit {:.1} commands ({:.1} events) per transaction; {} errors",
                per_report,
                units / batches,
                events / batches,
                closed.errors
            ));
        figures.push(f.clone().against(echo));
        figures.push(
            Figure::new(
                b,
                "whistle events appended via ReportCase",
                closed.rate * per_report,
                "rows/s",
            )
            .against(&batched),
        );
        figures.push(f.against(&single));
        (closed.rate, per_report)
    };
    progress.inc(1);

    progress.set_message(format!("{b}: ReportCase open loop at half rate, delivery"));
    let probe = load::DeliveryProbe::start(&nats.url(), &stream, &district.id).await?;
    let rate = (events_per_report.0 / 2.0).max(1.0);
    let mut open = load::report_cases(
        &channels,
        &workload("open"),
        load::Pace::Open(rate),
        duration,
        true,
    )
    .await?;
    figures.push(
        Figure::new(
            b,
            format!("whistle ReportCase, open loop at {rate:.0}/s"),
            open.rate,
            "req/s",
        )
        .latency(open.latency.percentiles())
        .note(format!(
            "latency from the scheduled send; {} errors",
            open.errors
        )),
    );
    let (mut delivery, missing) = probe.finish(&open.sent, Duration::from_secs(30)).await;
    let delivered = delivery.len();
    figures.push(
        Figure::new(b, "report → JetStream consumer delivery", delivered as f64, "events")
            .latency(delivery.percentiles())
            .note(format!("from the scheduled send of ReportCase to a pull consumer's receipt; {missing} not delivered within 30 s")),
    );
    progress.inc(1);

    progress.set_message(format!("{b}: rebuilding projections"));
    let events = store.head_position().await? as f64;
    for p in whistle_projections::Projection::ALL {
        let t0 = Instant::now();
        whistle_projections::rebuild(&store, p, &mut |_, _| {}).await?;
        let secs = t0.elapsed().as_secs_f64();
        figures.push(
            Figure::new(
                b,
                format!("rebuild {} from zero", p.name()),
                events / secs,
                "events/s",
            )
            .note(format!("{events:.0} events in {secs:.2} s")),
        );
    }
    progress.inc(1);

    progress.set_message(format!(
        "{b}: SLA summary over {} cases",
        args.summary_cases
    ));
    let cases = facts::grow_to(&db, args.summary_cases).await?;
    let mut summary = DashboardServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    );
    let auth: MetadataValue<_> = format!("Bearer {supervisor}").try_into()?;
    let now = time::OffsetDateTime::now_utc();
    let window = pb::TimeWindow {
        from: Some(whistle_api::convert::timestamp(
            now - time::Duration::days(facts::SPREAD_DAYS + 1),
        )),
        to: Some(whistle_api::convert::timestamp(
            now + time::Duration::days(1),
        )),
    };
    let mut lat = Samples::default();
    let t_all = Instant::now();
    for _ in 0..args.summary_queries.max(1) {
        let mut req = tonic::Request::new(pb::GetSlaSummaryRequest {
            window: Some(window),
            group_by: pb::Dimension::Department as i32,
        });
        req.metadata_mut().insert("authorization", auth.clone());
        let t0 = Instant::now();
        summary
            .get_sla_summary(req)
            .await
            .context("GetSlaSummary")?;
        lat.push(t0.elapsed());
        if t_all.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let n = lat.len();
    let p = lat.percentiles();
    figures.push(
        Figure::new(
            b,
            format!("GetSlaSummary by department over {cases} cases"),
            p.map_or(0.0, |p| p.p95_ms),
            "ms p95",
        )
        .latency(p)
        .note(format!(
            "{n} queries, 31-day window, district-wide supervisor"
        )),
    );
    progress.inc(1);

    let _ = stop.send(());
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().await,
        Err(_) => tracing::warn!("bench: the baseline pool is still shared"),
    }
    server.await.context("server task")??;
    Ok(figures)
}

async fn sample_rows(db: &baseline::Db) -> Result<Vec<baseline::SampleRow>> {
    use sqlx::Row;
    // The same columns decoded from either backend's rows.
    macro_rules! row {
        () => {
            |r: &_| -> Result<baseline::SampleRow> {
                Ok(baseline::SampleRow {
                    event_type: r.try_get("event_type")?,
                    payload: r.try_get("payload")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_role: r.try_get("actor_role")?,
                })
            }
        };
    }
    const COLUMNS: &str = "event_type, payload, actor_id, actor_role";
    let rows = match db {
        baseline::Db::Postgres(pool) => sqlx::query(
            "SELECT event_type, payload::text AS payload, actor_id, actor_role \
             FROM events ORDER BY position LIMIT 2000",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(row!())
        .collect::<Result<Vec<_>>>()?,
        baseline::Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events ORDER BY position LIMIT 2000"
        )))
        .fetch_all(pool)
        .await?
        .iter()
        .map(row!())
        .collect::<Result<Vec<_>>>()?,
    };
    anyhow::ensure!(!rows.is_empty(), "the warm-up stored no events");
    Ok(rows)
}

/// A fresh store for one backend.
struct BackendEnv {
    backend: Backend,
    data_dir: PathBuf,
    /// `None`: SQLite in `data_dir`.
    database_url: Option<String>,
    admin_url: String,
    database: String,
}

impl BackendEnv {
    async fn create(backend: Backend, admin_url: &str) -> Result<BackendEnv> {
        let data_dir = std::env::temp_dir().join(format!(
            "whistle-bench-{}-{}",
            std::process::id(),
            backend.name()
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let database = format!("whistle_bench_{}", std::process::id());
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{database}\""
                )))
                .execute(&mut admin)
                .await
                .context("creating the bench database")?;
                let _ = admin.close().await;
                Some(whistle_store::with_database(admin_url, &database))
            }
        };
        Ok(BackendEnv {
            backend,
            data_dir,
            database_url,
            admin_url: admin_url.to_owned(),
            database,
        })
    }

    async fn server_version(&self) -> Option<String> {
        use sqlx::{Connection, Row};
        let mut c = sqlx::PgConnection::connect(&self.admin_url).await.ok()?;
        let v = sqlx::query("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .ok()?;
        v.try_get::<String, _>(0).ok()
    }

    async fn drop_database(&self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if self.backend == Backend::Postgres {
            use sqlx::Connection;
            if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.database
                )))
                .execute(&mut admin)
                .await;
            }
        }
    }
}

/// The bench's own nats-server (JetStream, file storage in a temporary directory).
struct NatsProcess {
    child: Child,
    dir: PathBuf,
    port: u16,
    version: String,
}

impl NatsProcess {
    fn start(binary: &std::path::Path) -> Result<NatsProcess> {
        let dir = std::env::temp_dir().join(format!("whistle-bench-nats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ports"))?;
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .with_context(|| format!("running {} (set --nats-server)", binary.display()))?;
        let mut cmd = Command::new(binary);
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("--ports_file_dir")
            .arg(dir.join("ports"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting {:?}", cmd))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let found = std::fs::read_dir(dir.join("ports"))?
                .filter_map(|e| e.ok())
                .find_map(|e| {
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                    let url = v.get("nats")?.get(0)?.as_str()?.to_owned();
                    url.rsplit(':').next()?.parse::<u16>().ok()
                });
            if let Some(port) = found {
                break port;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server did not report its port within 10 s: {:?}",
                cmd
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(NatsProcess {
            child,
            dir,
            port,
            version,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
