//! Test harness: a backend per test (fresh PostgreSQL database or SQLite file), an
//! in-process server bound to port 0 with known test tokens, and gRPC clients that act as
//! a given principal.

use std::net::SocketAddr;
use std::path::PathBuf;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use whistle_api::{Principal, hash_token};
use whistle_domain::{DepartmentId, PrincipalId, Role};
use whistle_proto::v1 as pb;
use whistle_proto::v1::case_handling_service_client::CaseHandlingServiceClient;
use whistle_proto::v1::case_query_service_client::CaseQueryServiceClient;
use whistle_proto::v1::intake_service_client::IntakeServiceClient;
use whistle_server::app::Application;
use whistle_server::config::{Settings, parse_district};
use whistle_server::demo::DISTRICT_TOML;
use whistle_store::testing::{PgTestDb, SqliteTestDb, test_config};
use whistle_store::{EventStore, Store};

/// Stamp out one `#[tokio::test]` per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(b) = $crate::support::Backend::postgres(concat!(module_path!(), "::postgres")).await {
                    super::$name(b).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::sqlite()).await;
            }
        }
    )*};
}

/// Where a test's data lives; dropping it removes the database or file.
pub enum Backend {
    Postgres(PgTestDb),
    Sqlite(SqliteTestDb),
}

impl Backend {
    pub async fn postgres(test: &str) -> Option<Backend> {
        PgTestDb::create(test).await.map(Backend::Postgres)
    }

    pub fn sqlite() -> Backend {
        Backend::Sqlite(SqliteTestDb::new())
    }

    pub fn url(&self) -> String {
        match self {
            Backend::Postgres(db) => db.url().to_string(),
            Backend::Sqlite(db) => db.url().to_string(),
        }
    }

    /// A separate store handle on the same data, for counting events behind the server.
    pub async fn store(&self) -> Store {
        match self {
            Backend::Postgres(db) => db.store().await,
            Backend::Sqlite(db) => db.store().await,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("whistle-e2e-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp data dir");
        dir
    }
}

/// Test principals: (id, role, department).
pub const PRINCIPALS: &[(&str, Role, Option<&str>)] = &[
    ("gw-lin", Role::GridWorker, None),
    ("resident-zhang", Role::Resident, None),
    ("resident-other", Role::Resident, None),
    ("h-wang", Role::Handler, None),
    ("h-li", Role::Handler, None),
    ("h-chen", Role::Handler, None),
    ("dept-fire", Role::Department, Some("fire")),
    ("dept-gas", Role::Department, Some("gas")),
    ("dept-housing", Role::Department, Some("housing")),
    ("district-duty", Role::Handler, None),
    ("sup-dongfeng", Role::Supervisor, None),
    ("gw-zhao", Role::GridWorker, None),
    ("sup-hongqi", Role::Supervisor, None),
    ("sup-xihu", Role::Supervisor, None),
    ("h-heping", Role::Handler, None),
    ("admin", Role::Admin, None),
];

/// Scoped test principals (everyone else sees the district): a grid worker of the 柳荫
/// grid, a community supervisor (红旗社区) and a handler of one compound (和平里井).
pub fn scope_of(id: &str) -> whistle_domain::Scope {
    use whistle_domain::{GridId, OrgId, Scope};
    match id {
        "gw-zhao" => Scope::Grids(vec![GridId::new("g-liuyin")]),
        "sup-hongqi" => Scope::Org(OrgId::new("dongfeng-hongqi")),
        "sup-xihu" => Scope::Org(OrgId::new("xihu")),
        "h-heping" => Scope::Org(OrgId::new("heping-lijing")),
        _ => Scope::District,
    }
}

pub fn token(id: &str) -> String {
    format!("test-token-{id}")
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// /healthz, /readyz, /metrics.
    pub http: SocketAddr,
    pub store: std::sync::Arc<Store>,
    /// The server's state, for driving the command pipeline directly (bulk histories).
    pub state: whistle_api::AppState,
    /// What /readyz reports besides the store.
    pub readiness: whistle_server::http::Readiness,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_at(backend, &backend.url()).await
}

/// Like [`spawn_app`], with the database reached through `url` (e.g. a proxy).
pub async fn spawn_app_at(backend: &Backend, url: &str) -> TestApp {
    spawn_app_with(backend, url, AppOptions::default()).await
}

/// Test knobs: virtual time and the deadline scheduler (off unless asked for, so that
/// tests not about deadlines never race one).
#[derive(Default, Clone)]
pub struct AppOptions {
    pub clock: Option<whistle_api::ManualClock>,
    pub scheduler: bool,
    /// Serve both ports over TLS (`tests/e2e/tls.rs`).
    pub tls: Option<whistle_server::tls::TlsSettings>,
}

/// Knobs of the tests about starting and stopping (`http`, `shutdown`).
#[derive(Default, Clone)]
pub struct Lifecycle {
    /// Relay to this NATS URL (`--nats-url`). The server is then returned before it is
    /// ready: readiness waits for NATS, which the test may not have started.
    pub nats: Option<String>,
    /// `[jwt]`: accept the identity provider's JWTs (`tests/e2e/jwt.rs`).
    pub jwt: Option<whistle_api::JwtVerifier>,
    /// How long `stop` drains [default: the binary's].
    pub drain_timeout: Option<std::time::Duration>,
}

/// Like [`spawn_app`], with these start and stop settings.
pub async fn spawn_app_lifecycle(backend: &Backend, lifecycle: Lifecycle) -> TestApp {
    spawn_app_configured(
        backend,
        &backend.url(),
        AppOptions::default(),
        TEST_LIMITS,
        lifecycle,
    )
    .await
}

/// High enough that no test meets the per-principal rate limit by accident.
const TEST_LIMITS: whistle_api::RateLimits = whistle_api::RateLimits {
    per_second: 1e6,
    burst: 1_000_000,
};

pub async fn spawn_app_with(backend: &Backend, url: &str, opts: AppOptions) -> TestApp {
    spawn_app_limited(backend, url, opts, TEST_LIMITS).await
}

/// Like [`spawn_app_with`], with these per-principal rate limits.
pub async fn spawn_app_limited(
    backend: &Backend,
    url: &str,
    opts: AppOptions,
    limits: whistle_api::RateLimits,
) -> TestApp {
    spawn_app_configured(backend, url, opts, limits, Lifecycle::default()).await
}

async fn spawn_app_configured(
    backend: &Backend,
    url: &str,
    opts: AppOptions,
    limits: whistle_api::RateLimits,
    lifecycle: Lifecycle,
) -> TestApp {
    let principals = PRINCIPALS
        .iter()
        .map(|(id, role, dept)| {
            (
                hash_token(&token(id)),
                Principal {
                    id: PrincipalId::new(*id),
                    role: *role,
                    department: dept.map(DepartmentId::new),
                    name: id.to_string(),
                    scope: scope_of(id),
                },
            )
        })
        .collect();
    let district = parse_district(DISTRICT_TOML, "demo").expect("demo district");
    let nats = lifecycle.nats.clone().map(|url| {
        let mut stream = whistle_bus::StreamSettings::new(district.id.to_string());
        stream.storage = whistle_bus::Storage::Memory;
        whistle_bus::RelayConfig::new(url, stream)
    });
    let settings = Settings {
        data_dir: backend.data_dir(),
        store: {
            let mut cfg = test_config(url);
            // Bounds how long a request waits while the database is away.
            cfg.acquire_timeout = std::time::Duration::from_secs(2);
            cfg
        },
        listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        district,
        sla: whistle_server::config::sla_preset("83012").expect("preset"),
        scheduler: opts
            .scheduler
            .then(|| whistle_api::scheduler::SchedulerConfig {
                poll: std::time::Duration::from_millis(20),
                ..Default::default()
            }),
        principals,
        demo_tokens: None,
        nats,
        limits,
        tls: opts.tls.clone(),
        jwt: lifecycle.jwt.clone(),
        drain_timeout: lifecycle
            .drain_timeout
            .unwrap_or(whistle_server::config::DEFAULT_DRAIN_TIMEOUT),
    };
    let clock: std::sync::Arc<dyn whistle_api::Clock> = match opts.clock {
        Some(c) => std::sync::Arc::new(c),
        None => std::sync::Arc::new(whistle_api::SystemClock),
    };
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("build app");
    let addr = app.local_addr();
    let http = app.http_addr();
    let store = app.state().store.clone();
    let state = app.state().clone();
    let readiness = app.readiness();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    // As a load balancer would: no traffic before the projector caught up. Tests are
    // then free of that start-up race (TLS tests cannot ask /readyz over plain HTTP).
    if lifecycle.nats.is_none() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !readiness.is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not become ready: {:?}",
                readiness.missing()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    TestApp {
        addr,
        http,
        store,
        state,
        readiness,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn client(&self, principal: &str) -> Client {
        Client::connect(self.addr, &token(principal)).await
    }

    pub async fn event_count(&self) -> u64 {
        self.store.count_events().await.expect("count events")
    }

    /// Completes the shutdown future (SIGTERM in the binary) without waiting for the
    /// drain; `stop` then waits for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
    }
}

/// A gRPC client acting as one principal.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    auth: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, token: &str) -> Client {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Client {
            channel,
            auth: Some(format!("Bearer {token}").parse().expect("header")),
        }
    }

    /// A client over an already built channel (e.g. TLS).
    pub fn with_channel(channel: Channel, token: &str) -> Client {
        Client {
            channel,
            auth: Some(format!("Bearer {token}").parse().expect("header")),
        }
    }

    /// The same connection without any authorization header.
    pub fn anonymous(&self) -> Client {
        Client {
            channel: self.channel.clone(),
            auth: None,
        }
    }

    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(a) = &self.auth {
            r.metadata_mut().insert("authorization", a.clone());
        }
        r
    }

    pub fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel.clone())
    }
    pub fn handling(&self) -> CaseHandlingServiceClient<Channel> {
        CaseHandlingServiceClient::new(self.channel.clone())
    }
    pub fn departments(
        &self,
    ) -> whistle_proto::v1::department_service_client::DepartmentServiceClient<Channel> {
        whistle_proto::v1::department_service_client::DepartmentServiceClient::new(
            self.channel.clone(),
        )
    }
    pub fn query(&self) -> CaseQueryServiceClient<Channel> {
        CaseQueryServiceClient::new(self.channel.clone())
    }
    pub fn dashboards(
        &self,
    ) -> whistle_proto::v1::dashboard_service_client::DashboardServiceClient<Channel> {
        whistle_proto::v1::dashboard_service_client::DashboardServiceClient::new(
            self.channel.clone(),
        )
    }
    pub fn admin(&self) -> whistle_proto::v1::admin_service_client::AdminServiceClient<Channel> {
        whistle_proto::v1::admin_service_client::AdminServiceClient::new(self.channel.clone())
    }

    pub async fn report(
        &self,
        category: &str,
        location: &str,
        description: &str,
        key: &str,
    ) -> Result<pb::ReportCaseResponse, tonic::Status> {
        self.intake()
            .report_case(self.req(pb::ReportCaseRequest {
                category: category.into(),
                location: location.into(),
                description: description.into(),
                channel: 0,
                urgency: 0,
                idempotency_key: key.into(),
                contact: None,
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn report_ok(&self, category: &str, location: &str) -> String {
        self.report(category, location, "a problem that needs fixing", "")
            .await
            .expect("report")
            .ack
            .expect("ack")
            .case_id
    }

    pub async fn ack(&self, case_id: &str) -> Result<pb::CommandAck, tonic::Status> {
        self.handling()
            .acknowledge_case(self.req(plain(case_id)))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn escalate(
        &self,
        case_id: &str,
        expected_version: Option<u64>,
    ) -> Result<pb::CommandAck, tonic::Status> {
        self.handling()
            .escalate_case(self.req(pb::ReasonRequest {
                case_id: case_id.into(),
                expected_version,
                idempotency_key: String::new(),
                reason: "beyond this rung".into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn resolve(&self, case_id: &str) -> Result<pb::CommandAck, tonic::Status> {
        self.handling()
            .resolve_case(self.req(pb::ResolveCaseRequest {
                case_id: case_id.into(),
                expected_version: None,
                idempotency_key: String::new(),
                summary: "fixed".into(),
                evidence: vec![pb::Evidence {
                    url: "https://evidence.example/photo.jpg".into(),
                    sha256: "ab".repeat(32),
                }],
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, case_id: &str) -> Result<pb::CaseView, tonic::Status> {
        self.query()
            .get_case(self.req(pb::GetCaseRequest {
                case_id: case_id.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn timeline(&self, case_id: &str) -> pb::GetCaseTimelineResponse {
        self.query()
            .get_case_timeline(self.req(pb::GetCaseTimelineRequest {
                case_id: case_id.into(),
            }))
            .await
            .expect("timeline")
            .into_inner()
    }
}

pub fn plain(case_id: &str) -> pb::CaseCommandRequest {
    pb::CaseCommandRequest {
        case_id: case_id.into(),
        expected_version: None,
        idempotency_key: String::new(),
    }
}

pub fn reason(case_id: &str, reason: &str) -> pb::ReasonRequest {
    pb::ReasonRequest {
        case_id: case_id.into(),
        expected_version: None,
        idempotency_key: String::new(),
        reason: reason.into(),
    }
}

pub fn department(id: &str) -> Option<pb::Handler> {
    Some(pb::Handler {
        kind: Some(pb::handler::Kind::DepartmentId(id.into())),
    })
}

pub fn level(l: pb::Level) -> i32 {
    l.into()
}

/// Event types of a timeline without the SLA clock bookkeeping (milestones started,
/// met, cancelled, shifted), which tests about case handling do not pin.
pub fn case_events(t: &pb::GetCaseTimelineResponse) -> Vec<&str> {
    t.entries
        .iter()
        .map(|e| e.event_type.as_str())
        .filter(|t| !t.starts_with("Milestone") && *t != "DeadlineShifted")
        .collect()
}

/// `GET path` over plain HTTP/1.1: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, &[]).await
}

/// `GET path` with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect HTTP");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: whistle\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
    .await
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The real `whistle serve` binary on free ports, against `url`, with `extra` arguments;
/// killed with SIGKILL when dropped (and when this test process dies: parent-death
/// signal), so crash tests and department tests share one way to run it.
pub struct Served {
    child: std::process::Child,
    pub addr: SocketAddr,
    /// /healthz, /readyz, /metrics.
    pub http: SocketAddr,
}

impl Served {
    pub fn start(data_dir: &std::path::Path, url: &str, extra: &[&str]) -> Served {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_whistle"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--database-url",
            url,
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // If this test process dies, the server must not outlive it.
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let printable = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {printable}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("whistle: gRPC listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
                // `whistle: HTTP on http://127.0.0.1:PORT (/healthz /readyz /metrics)`
                if let Some(rest) = line.strip_prefix("whistle: HTTP on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let addr = addr.rsplit("://").next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let next = |what: &str| -> SocketAddr {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("server did not report its {what} address within 60 s: {printable}")
                })
                .parse()
                .expect("listen address")
        };
        let addr = next("gRPC");
        let http = next("HTTP");
        Served { child, addr, http }
    }

    /// SIGTERM, then the exit status (the drain must end: a deadline of 120 s, far
    /// beyond the drain timeout, only guards against a hang).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child, which has not been reaped (so the pid is
        // still ours).
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM: {}", std::io::Error::last_os_error());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit after SIGTERM"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every read-model row, documents included, in a comparable form (the SLA facts without
/// their per-case summaries, which are derived from the clocks and holds).
pub async fn read_models(
    store: &Store,
) -> (Vec<whistle_store::CaseViewRow>, whistle_store::SlaFacts) {
    let mut views = store
        .list_case_views(&whistle_store::CaseFilter::default(), None, None)
        .await
        .expect("list views");
    for v in &mut views {
        v.doc = store
            .get_case_view(&v.case_id)
            .await
            .expect("get view")
            .expect("view exists")
            .doc;
    }
    views.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    let mut facts = store.sla_facts(None, None).await.expect("facts");
    facts.cases.clear();
    (views, facts)
}

/// Two [`read_models`] snapshots are equal, or the first differing row is shown.
pub fn assert_read_models_equal(
    live: &(Vec<whistle_store::CaseViewRow>, whistle_store::SlaFacts),
    rebuilt: &(Vec<whistle_store::CaseViewRow>, whistle_store::SlaFacts),
) {
    first_difference("case_views", &live.0, &rebuilt.0);
    first_difference("sla_clocks", &live.1.clocks, &rebuilt.1.clocks);
    first_difference("case_holds", &live.1.holds, &rebuilt.1.holds);
}

fn first_difference<T: PartialEq + std::fmt::Debug>(what: &str, live: &[T], rebuilt: &[T]) {
    assert_eq!(live.len(), rebuilt.len(), "{what}: row counts differ");
    if let Some((i, (a, b))) = live
        .iter()
        .zip(rebuilt)
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!("{what}: row {i} differs\nlive:    {a:?}\nrebuilt: {b:?}");
    }
}
