//! What every fault test needs: the real `whistle` binary as a killable node, clients
//! that retry with idempotency keys until they are answered, the ledger of what was
//! acknowledged, and the checks run afterwards — the log holds every acknowledged
//! command exactly once, JetStream holds every case event exactly once and in case
//! order, and the read models equal a rebuild from zero. Also a private PostgreSQL
//! (initdb in a temp dir) for the test that restarts the database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use whistle_proto::v1 as pb;
use whistle_store::{EventStore, RecordedEvent, Store};

use crate::support::{Client, assert_read_models_equal, read_models};

/// SplitMix64: the kill moments, reproducible from the printed seed.
pub struct Rng(u64);

impl Rng {
    /// From `WHISTLE_FAULT_SEED`, else from the clock; prints the seed either way.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("WHISTLE_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("{test}: WHISTLE_FAULT_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// How many kills the kill loop makes (`WHISTLE_FAULT_TRIALS`, default 20).
pub fn trials() -> usize {
    std::env::var("WHISTLE_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Options of one `whistle serve` process beyond the database and the data dir.
#[derive(Clone, Default)]
pub struct NodeOptions {
    pub nats_url: Option<String>,
    pub nats_replicas: Option<usize>,
    pub sla_file: Option<PathBuf>,
}

/// The real `whistle serve` binary on free ports. SIGKILLed when dropped and when the
/// test process dies (parent-death signal).
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    command: String,
}

impl Node {
    pub fn start(data_dir: &Path, url: &str, opts: &NodeOptions) -> Node {
        // Load tests must not meet the per-principal rate limit of the demo principals.
        let config = data_dir.join("faults.toml");
        std::fs::write(
            &config,
            "[limits]\nrequests_per_second = 1000000.0\nburst = 1000000\n",
        )
        .expect("writing the config file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_whistle"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--database-url")
        .arg(url)
        .arg("--data-dir")
        .arg(data_dir);
        if let Some(nats) = &opts.nats_url {
            cmd.args(["--nats-url", nats]);
        }
        if let Some(r) = opts.nats_replicas {
            cmd.args(["--nats-replicas", &r.to_string()]);
        }
        if let Some(sla) = &opts.sla_file {
            cmd.arg("--sla").arg(sla);
        }
        cmd.env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        guard_parent_death(&mut cmd);
        let command = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("whistle: gRPC listening on ") {
                    let _ = tx.send(("grpc", a.trim().to_owned()));
                } else if let Some(rest) = line.strip_prefix("whistle: HTTP on http://") {
                    let a = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(("http", a.to_owned()));
                }
            }
        });
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            let (kind, a) = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no listening addresses within 60 s: {command}"));
            let a: SocketAddr = a.parse().expect("address");
            if kind == "grpc" {
                addr = Some(a);
            } else {
                http = Some(a);
            }
        }
        Node {
            child,
            addr: addr.expect("gRPC address"),
            http: http.expect("HTTP address"),
            command,
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(mut self) {
        let command = std::mem::take(&mut self.command);
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL {command}: {e}"));
        self.child.wait().expect("reap");
    }

    /// A metric's value from `/metrics` (first sample of that name), if the node answers.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = crate::support::http_get(self.http, "/metrics").await;
        if status != 200 {
            return None;
        }
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(target_os = "linux")]
fn guard_parent_death(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    // std applies uid/gid before these hooks, so the signal survives a credential change.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn guard_parent_death(_cmd: &mut Command) {}

/// Where the nodes of a test currently listen; clients pick from it and follow changes
/// (a restarted node listens on a new port).
#[derive(Clone)]
pub struct Fleet(watch::Receiver<Vec<SocketAddr>>);

impl Fleet {
    pub fn new(addrs: Vec<SocketAddr>) -> (watch::Sender<Vec<SocketAddr>>, Fleet) {
        let (tx, rx) = watch::channel(addrs);
        (tx, Fleet(rx))
    }

    fn pick(&self, i: usize) -> Option<SocketAddr> {
        let addrs = self.0.borrow();
        (!addrs.is_empty()).then(|| addrs[i % addrs.len()])
    }
}

/// Errors a client sees when the server died, restarted or lost its database: the
/// request may or may not have been applied, so it is retried with the same key.
pub fn retryable(s: &tonic::Status) -> bool {
    match s.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
        // A connection cut mid-stream surfaces as an h2 protocol error.
        Code::Internal => s.message().contains("h2 protocol error"),
        _ => false,
    }
}

/// A client of the fleet that retries until answered (bounded), moving to the next
/// node after each failure. Counts what it went through.
pub struct Retrying {
    fleet: Fleet,
    token: String,
    next: usize,
    current: Option<(SocketAddr, Client)>,
    pub retries: u64,
    pub unavailable: u64,
    /// Answers per node address.
    served: HashMap<SocketAddr, usize>,
    /// Every how many answers one is thrown away as if the network had lost it, and
    /// the request sent again with the same key: without this a SIGKILL rarely lands
    /// between COMMIT and the answer, and duplicates would go untested.
    lose_every: Option<u64>,
    answers: u64,
    pub lost: u64,
}

impl Retrying {
    pub fn new(fleet: Fleet, token: &str, start: usize) -> Retrying {
        Retrying {
            fleet,
            token: token.to_owned(),
            next: start,
            current: None,
            retries: 0,
            unavailable: 0,
            served: HashMap::new(),
            lose_every: None,
            answers: 0,
            lost: 0,
        }
    }

    /// Throw away every `n`th successful answer and retry (see `lose_every`).
    pub fn losing_every(mut self, n: u64) -> Retrying {
        self.lose_every = Some(n.max(2));
        self
    }

    /// How many calls each node answered.
    pub fn served_by(&self) -> HashMap<SocketAddr, usize> {
        self.served.clone()
    }

    fn client(&mut self) -> Option<Client> {
        let addr = self.fleet.pick(self.next)?;
        if let Some((a, c)) = &self.current
            && *a == addr
        {
            return Some(c.clone());
        }
        let channel: Channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(20))
            .connect_lazy();
        let c = Client::with_channel(channel, &self.token);
        self.current = Some((addr, c.clone()));
        Some(c)
    }

    /// Runs `op` until it is answered with anything but a retryable error; panics after
    /// two minutes of failures (a server that never comes back is a failed test).
    pub async fn call<T, F, Fut>(&mut self, what: &str, mut op: F) -> Result<T, tonic::Status>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let outcome = match self.client() {
                Some(c) => op(c).await,
                None => Err(tonic::Status::unavailable("no node is up")),
            };
            match outcome {
                Err(s) if retryable(&s) => {
                    assert!(
                        Instant::now() < deadline,
                        "{what}: still failing after 120 s: {s:?}"
                    );
                    if s.code() == Code::Unavailable {
                        self.unavailable += 1;
                    }
                    self.retries += 1;
                    self.current = None;
                    self.next += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Ok(_)
                    if self.lose_every.is_some_and(|n| {
                        self.answers += 1;
                        self.answers.is_multiple_of(n)
                    }) =>
                {
                    self.lost += 1;
                }
                other => {
                    if let Some((addr, _)) = &self.current {
                        *self.served.entry(*addr).or_default() += 1;
                    }
                    return other;
                }
            }
        }
    }
}

/// What the load reports: categories and places of the demo district whose
/// NEIGHBOUR-rung handler is `h-wang` (the one who signs for them).
pub const WORK: &[(&str, &str)] = &[
    ("leak_from_above", "hongqi-jiayuan-b3-u2"),
    ("neighbour_noise", "hongqi-jiayuan-b3-u2"),
];

/// What clients were told succeeded: idempotency key → case id, per command kind.
#[derive(Default)]
pub struct Ledger {
    pub reports: BTreeMap<String, String>,
    pub acks: BTreeMap<String, String>,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// One client's loop: report a case and sign for it, each with its own idempotency key,
/// each retried until answered; until `stop` is raised. Every answer goes to the ledger.
pub async fn report_and_sign(
    fleet: Fleet,
    tokens: (String, String),
    worker: usize,
    ledger: SharedLedger,
    stop: watch::Receiver<bool>,
) -> Tally {
    // Answers lost at different rhythms, so reports and sign-fors both get retried.
    let mut reporter = Retrying::new(fleet.clone(), &tokens.0, worker).losing_every(7);
    let mut handler = Retrying::new(fleet, &tokens.1, worker + 1).losing_every(11);
    let mut n = 0usize;
    while !*stop.borrow() {
        let (category, location) = WORK[n % WORK.len()];
        let key = format!("w{worker}-r{n}");
        let k = key.clone();
        let reported = reporter
            .call(&key, |c| {
                let k = k.clone();
                async move { c.report(category, location, "fault suite", &k).await }
            })
            .await
            .unwrap_or_else(|s| panic!("report {key} refused: {s:?}"));
        let case_id = reported.ack.expect("ack").case_id;
        ledger
            .lock()
            .expect("ledger")
            .reports
            .insert(key, case_id.clone());
        let key = format!("w{worker}-a{n}");
        let k = key.clone();
        let id = case_id.clone();
        handler
            .call(&key, |c| {
                let req = pb::CaseCommandRequest {
                    case_id: id.clone(),
                    expected_version: None,
                    idempotency_key: k.clone(),
                };
                async move {
                    c.handling()
                        .acknowledge_case(c.req(req))
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
            .unwrap_or_else(|s| panic!("sign for {key} refused: {s:?}"));
        ledger.lock().expect("ledger").acks.insert(key, case_id);
        n += 1;
    }
    Tally {
        retries: reporter.retries + handler.retries,
        unavailable: reporter.unavailable + handler.unavailable,
        lost: reporter.lost + handler.lost,
    }
}

/// What a client went through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Calls sent again after a retryable error.
    pub retries: u64,
    /// Of those, `UNAVAILABLE` answers.
    pub unavailable: u64,
    /// Answers thrown away on purpose and asked for again with the same key.
    pub lost: u64,
}

/// Clients running [`report_and_sign`] against a fleet until [`Load::finish`].
pub struct Load {
    pub ledger: SharedLedger,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

/// What a finished load went through.
pub struct LoadReport {
    pub ledger: Ledger,
    pub retries: u64,
    pub unavailable: u64,
    pub lost: u64,
}

impl Load {
    /// `workers` clients reporting as `gw-lin` and signing for as `h-wang` (tokens from
    /// the demo principals in `data_dir`).
    pub fn start(fleet: &Fleet, data_dir: &Path, workers: usize) -> Load {
        let tokens = (token(data_dir, "gw-lin"), token(data_dir, "h-wang"));
        let ledger = SharedLedger::default();
        let (stop, stopped) = watch::channel(false);
        let workers = (0..workers)
            .map(|w| {
                tokio::spawn(report_and_sign(
                    fleet.clone(),
                    tokens.clone(),
                    w,
                    ledger.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        Load {
            ledger,
            stop,
            workers,
        }
    }

    /// Acknowledged reports so far.
    pub fn reports(&self) -> usize {
        self.ledger.lock().expect("ledger").reports.len()
    }

    /// Stops the clients after the command each has in hand is answered.
    pub async fn finish(self) -> LoadReport {
        let _ = self.stop.send(true);
        let mut total = Tally::default();
        for w in self.workers {
            let t = w.await.expect("worker");
            total.retries += t.retries;
            total.unavailable += t.unavailable;
            total.lost += t.lost;
        }
        let ledger = Arc::try_unwrap(self.ledger)
            .ok()
            .expect("workers are done")
            .into_inner()
            .expect("ledger");
        LoadReport {
            ledger,
            retries: total.retries,
            unavailable: total.unavailable,
            lost: total.lost,
        }
    }
}

/// The log as read so far, per stream in version order; `catch_up` reads what is new.
#[derive(Default)]
pub struct LogMirror {
    after: i64,
    pub streams: BTreeMap<String, Vec<RecordedEvent>>,
}

impl LogMirror {
    pub async fn catch_up(&mut self, store: &Store) {
        loop {
            let page = store.read_all(self.after, 2000).await.expect("read_all");
            let Some(last) = page.last() else { return };
            self.after = last.position;
            for e in page {
                self.streams
                    .entry(e.stream.to_string())
                    .or_default()
                    .push(e);
            }
        }
    }
}

/// The whole log, per stream in version order.
pub async fn read_log(store: &Store) -> BTreeMap<String, Vec<RecordedEvent>> {
    let mut m = LogMirror::default();
    m.catch_up(store).await;
    m.streams
}

/// Events of case streams (what the relay publishes).
pub fn case_events(log: &BTreeMap<String, Vec<RecordedEvent>>) -> Vec<&RecordedEvent> {
    log.iter()
        .filter(|(s, _)| s.starts_with("case-"))
        .flat_map(|(_, es)| es.iter())
        .collect()
}

fn count(events: &[RecordedEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

/// Every acknowledged command's events exist exactly once: one case per report key,
/// each with exactly one report and one sign-for, and no case nobody was told about.
pub fn assert_ledger_exactly_once(ledger: &Ledger, log: &BTreeMap<String, Vec<RecordedEvent>>) {
    let cases: HashSet<&String> = ledger.reports.values().collect();
    assert_eq!(
        cases.len(),
        ledger.reports.len(),
        "two report keys were answered with the same case"
    );
    let in_log: Vec<&String> = log.keys().filter(|s| s.starts_with("case-")).collect();
    assert_eq!(
        in_log.len(),
        ledger.reports.len(),
        "cases in the log vs reports acknowledged"
    );
    let signed: HashMap<&String, usize> = ledger.acks.values().fold(HashMap::new(), |mut m, c| {
        *m.entry(c).or_default() += 1;
        m
    });
    for (key, case_id) in &ledger.reports {
        let events = log
            .get(&format!("case-{case_id}"))
            .unwrap_or_else(|| panic!("report {key}: case {case_id} is not in the log"));
        assert_eq!(count(events, "CaseReported"), 1, "report {key}: {case_id}");
        let acks = signed.get(case_id).copied().unwrap_or(0);
        assert_eq!(
            count(events, "CaseAcknowledged"),
            acks,
            "sign-fors of {case_id} (report {key})"
        );
    }
}

/// Waits (bounded) until JetStream's stream holds as many messages as the log has case
/// events, then reads them all: each event id exactly once, each case in version order.
pub async fn assert_stream_holds_log(nats_url: &str, stream: &str, store: &Store) {
    let log = read_log(store).await;
    let events = case_events(&log);
    let servers = whistle_bus::parse_servers(nats_url).expect("NATS URLs");
    let client = async_nats::connect(servers).await.expect("nats connect");
    let js = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut s = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "stream {stream} missing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    loop {
        let n = s.info().await.expect("stream info").state.messages;
        if n >= events.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {n} of {} case events after 90 s",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let consumer = s
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("auditor consumer");
    let mut seen: Vec<(String, String, u64)> = Vec::with_capacity(events.len());
    while seen.len() < events.len() {
        assert!(Instant::now() < deadline, "read {} messages", seen.len());
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let h = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            seen.push((
                h(whistle_bus::message::MSG_ID),
                h(whistle_bus::message::CASE_ID),
                h(whistle_bus::message::VERSION).parse().unwrap_or(0),
            ));
        }
    }
    let ids: HashSet<&String> = seen.iter().map(|s| &s.0).collect();
    assert_eq!(
        ids.len(),
        seen.len(),
        "an event id appears twice in the stream"
    );
    let expected: HashSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let got: HashSet<String> = seen.iter().map(|s| s.0.clone()).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "stream messages vs case events in the log"
    );
    assert!(
        got == expected,
        "the stream and the log hold different events"
    );
    let mut last: HashMap<&String, u64> = HashMap::new();
    for (_, case, version) in &seen {
        let prev = last.insert(case, *version).unwrap_or(0);
        assert!(
            *version > prev,
            "case {case}: version {version} after {prev}"
        );
    }
}

/// Waits (bounded) until the SLA projection checkpoint reached the log head.
pub async fn wait_projection_caught_up(store: &Store) {
    let head = store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp = store
            .load_checkpoint(whistle_projections::SLA_PROJECTION)
            .await
            .expect("checkpoint");
        if cp.is_some_and(|c| c.position >= head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the SLA projection did not reach {head} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The read models as the live system left them equal a rebuild from zero. Call with no
/// server running on the database.
pub async fn assert_read_models_equal_rebuild(store: Arc<Store>) {
    let live = read_models(&store).await;
    for p in whistle_projections::Projection::ALL {
        whistle_projections::rebuild(&store, p, &mut |_, _| {})
            .await
            .expect("rebuild");
    }
    assert_read_models_equal(&live, &read_models(&store).await);
}

pub fn token(data_dir: &Path, id: &str) -> String {
    whistle_server::demo::token_for(data_dir, id).expect("demo token")
}

pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A PostgreSQL server of the test's own, in a temp dir, so the test can stop and
/// restart it without touching the shared server. Started from the PostgreSQL binaries
/// (`WHISTLE_PG_BIN`, else `pg_config --bindir`, else `/usr/lib/postgresql/*/bin`);
/// as root it runs as the `postgres` user (PostgreSQL refuses root).
pub struct PgInstance {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PgInstance {
    /// `None` (with a notice) when no PostgreSQL binaries are installed, unless
    /// `WHISTLE_REQUIRE_SERVICES=1`, where that fails the test.
    pub fn start(test: &str) -> Option<PgInstance> {
        let Some(bin) = pg_bin_dir() else {
            assert!(
                !whistle_store::testing::services_required(),
                "{test}: no PostgreSQL binaries (initdb) found; set WHISTLE_PG_BIN"
            );
            println!("SKIPPED (no PostgreSQL binaries): {test}");
            return None;
        };
        let dir = temp_dir("whistle-pg");
        let user = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user().expect("a `postgres` user to run PostgreSQL as root"))
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown pg dir");
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "root", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null());
        as_user(&mut initdb, user);
        let out = initdb.output().expect("running initdb");
        assert!(
            out.status.success(),
            "{initdb:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PgInstance {
            bin,
            dir,
            port: whistle_bus::testing::free_port(),
            user,
            child: None,
        };
        pg.run();
        Some(pg)
    }

    fn run(&mut self) {
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut cmd, self.user);
        guard_parent_death(&mut cmd);
        let printable = format!("{cmd:?}");
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {printable}: {e}")),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL not ready within 30 s: {printable}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgres://root@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://root@127.0.0.1:{}/{db}", self.port)
    }

    pub async fn create_database(&self, db: &str) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the private PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut c)
            .await
            .expect("create database");
    }

    /// Immediate shutdown (SIGQUIT to the postmaster): every connection is cut, nothing
    /// is checkpointed, the next start recovers from the WAL — a crash, as far as
    /// clients can tell.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.crash();
        self.run();
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

fn pg_bin_dir() -> Option<PathBuf> {
    let has_initdb = |p: &Path| p.join("initdb").is_file();
    if let Ok(p) = std::env::var("WHISTLE_PG_BIN") {
        return Some(PathBuf::from(p)).filter(|p| has_initdb(p));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&p) {
            return Some(p);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| has_initdb(p))
        .collect();
    found.sort();
    found.pop()
}

fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}
