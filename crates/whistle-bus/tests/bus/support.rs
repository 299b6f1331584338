//! Fixtures: the demo district, a case writer that runs `decide` and appends like
//! the API does, stream readers and bounded waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use whistle_bus::{RelayConfig, RelayStatus, Router, Storage, StreamSettings};
use whistle_domain::{
    Actor, CaseId, CategoryCode, Channel, Command, Ctx, DepartmentId, District, DistrictSpec,
    Handler, OrgId, decide, evolve,
};
use whistle_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Store};

pub const DISTRICT: &str = "qinghe";

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=whistle_bus=debug`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn district() -> Arc<District> {
    let text = include_str!("../../../whistle-server/demo/district.toml");
    let spec: DistrictSpec = toml::from_str(text).expect("demo district parses");
    Arc::new(District::build(spec).expect("demo district is valid"))
}

/// Writes cases through `decide` + append, as the API pipeline does.
#[derive(Clone)]
pub struct Cases {
    pub store: Arc<Store>,
    pub district: Arc<District>,
}

impl Cases {
    pub fn new(store: Arc<Store>) -> Cases {
        Cases {
            store,
            district: district(),
        }
    }

    /// Runs one command on a case (loading it first); returns the new version.
    pub async fn run(&self, id: CaseId, actor: &Actor, cmd: Command) -> u64 {
        let stream = whistle_store::StreamId(id.stream_name());
        let records = self.store.read_stream(&stream, 0).await.expect("read");
        let state = records
            .iter()
            .map(|r| whistle_bus::decode(r).expect("decode"))
            .fold(None, |s, e| evolve(s, &e));
        let version = state.as_ref().map_or(0, |c| c.version);
        let ctx = Ctx {
            district: &self.district,
            actor,
            now: time::OffsetDateTime::now_utc(),
        };
        let events = decide(&state, &cmd, &ctx).expect("command accepted");
        let new = events
            .iter()
            .map(|e| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: e.body.event_type().to_string(),
                payload: serde_json::to_value(&e.body).expect("encode"),
                actor_id: e.actor.principal.0.clone(),
                actor_role: e.actor.role.as_str().to_string(),
                occurred_at: e.occurred_at,
            })
            .collect::<Vec<_>>();
        let n = new.len() as u64;
        self.store
            .append(vec![AppendRequest {
                stream,
                expected: if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                events: new,
                idempotency: None,
                deadlines: Vec::new(),
                view: None,
                personal: Vec::new(),
            }])
            .await
            .expect("append");
        version + n
    }

    pub async fn report(&self, category: &str, location: &str) -> CaseId {
        let id = CaseId(uuid::Uuid::now_v7());
        self.run(
            id,
            &Actor::new("gw-lin", whistle_domain::Role::GridWorker),
            Command::Report {
                case_id: id,
                category: CategoryCode::new(category),
                location: OrgId::new(location),
                description: "a problem".into(),
                channel: Channel::GridWorker,
                urgency: None,
                contact: None,
            },
        )
        .await;
        id
    }

    /// Reports an ESCALATED case (gas smell: the fast channel) and dispatches it to
    /// `department`, which signs for it: three events, two routed to the department.
    pub async fn escalated_to(&self, department: &str, location: &str) -> CaseId {
        let id = self.report("gas_smell", location).await;
        self.run(
            id,
            &Actor::new("sup-dongfeng", whistle_domain::Role::Supervisor),
            Command::Assign {
                handler: Handler::Department(DepartmentId::new(department)),
            },
        )
        .await;
        self.run(
            id,
            &Actor::department(format!("dept-{department}"), department),
            Command::Acknowledge,
        )
        .await;
        id
    }
}

pub fn stream_settings(name: &str) -> StreamSettings {
    let mut s = StreamSettings::new(DISTRICT);
    s.name = name.to_owned();
    s.storage = Storage::File;
    s
}

pub fn relay_config(url: &str, stream: &str) -> RelayConfig {
    let mut cfg = RelayConfig::new(url, stream_settings(stream));
    cfg.backoff = (Duration::from_millis(100), Duration::from_secs(1));
    cfg.ack_timeout = Duration::from_secs(2);
    cfg.poll = Duration::from_millis(100);
    cfg
}

/// One delivered message, as a consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub event_id: String,
    pub case_id: String,
    pub version: u64,
    pub event_type: String,
    pub subject: String,
}

pub fn header(m: &async_nats::Message, name: &str) -> String {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

pub fn seen(m: &async_nats::Message) -> Seen {
    Seen {
        event_id: header(m, whistle_bus::message::MSG_ID),
        case_id: header(m, whistle_bus::message::CASE_ID),
        version: header(m, whistle_bus::message::VERSION)
            .parse()
            .expect("version header"),
        event_type: header(m, whistle_bus::message::EVENT_TYPE),
        subject: m.subject.to_string(),
    }
}

pub async fn jetstream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(whistle_bus::parse_servers(url).expect("urls"))
        .await
        .expect("connect to nats");
    jetstream::new(client)
}

/// Consumes `filter` of `stream` with a pull consumer (durable `name`, explicit
/// ack), until `want(count)` holds or `limit` passes. Returns everything seen, in
/// delivery order (duplicates included).
pub async fn consume(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filter: &str,
    limit: Duration,
    want: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let stream = wait_stream(js, stream).await;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: filter.to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while !want(&out) && Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            out.push(seen(&m));
            m.ack().await.expect("ack");
        }
    }
    out
}

/// Waits (bounded) until the relay provisioned the stream.
pub async fn wait_stream(js: &jetstream::Context, name: &str) -> jetstream::stream::Stream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_stream(name).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "stream {name} never appeared: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits (bounded) until the relay has checkpointed the store's head.
pub async fn wait_caught_up(store: &Store, status: &RelayStatus, limit: Duration) {
    let head = store.head_position().await.expect("head");
    let deadline = Instant::now() + limit;
    while status.checkpoint() < head {
        assert!(
            Instant::now() < deadline,
            "relay did not catch up: checkpoint {} of {head} (failures {})",
            status.checkpoint(),
            status.failures()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each department must receive, from the log itself: (department → event
/// ids in position order) plus the total number of case events.
pub async fn expected_routes(store: &Store) -> (HashMap<String, Vec<String>>, usize) {
    let mut router = Router::default();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut after = 0;
    let mut total = 0;
    loop {
        let batch = store.read_all(after, 5000).await.expect("read_all");
        let Some(last) = batch.last() else { break };
        after = last.position;
        for rec in batch {
            if let Some(r) = router.route(store, rec).await.expect("route") {
                total += 1;
                let d = r
                    .route
                    .department
                    .map(|d| d.0)
                    .unwrap_or_else(|| "_".to_owned());
                out.entry(d)
                    .or_default()
                    .push(r.record.event_id.to_string());
            }
        }
    }
    (out, total)
}

/// Asserts that every case's events arrive in version order (first delivery of each).
pub fn assert_case_order(seen: &[Seen]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut first_seen = std::collections::HashSet::new();
    for s in seen {
        if !first_seen.insert(s.event_id.as_str()) {
            continue;
        }
        let prev = last.insert(s.case_id.as_str(), s.version).unwrap_or(0);
        assert!(
            s.version > prev,
            "case {} delivered version {} after {prev}",
            s.case_id,
            s.version
        );
    }
}

/// Event ids, de-duplicated, in first-seen order.
pub fn unique_ids(seen: &[Seen]) -> Vec<String> {
    let mut set = std::collections::HashSet::new();
    seen.iter()
        .filter(|s| set.insert(s.event_id.clone()))
        .map(|s| s.event_id.clone())
        .collect()
}

/// Every message of the stream (an auditor's view, `whistle.<district>.>`): asserts
/// each event id appears exactly once and that there are exactly `events` of them.
pub async fn assert_stream_exactly_once(url: &str, stream: &str, events: u64) {
    let js = jetstream(url).await;
    let mut s = wait_stream(&js, stream).await;
    let info = s.info().await.expect("stream info");
    assert_eq!(
        info.state.messages, events,
        "messages in the stream (after de-duplication)"
    );
    let seen = consume(
        &js,
        stream,
        "auditor",
        &whistle_bus::subject::district_filter(DISTRICT),
        Duration::from_secs(60),
        |seen| seen.len() as u64 >= events,
    )
    .await;
    assert_eq!(seen.len() as u64, events, "auditor deliveries");
    let ids: std::collections::HashSet<_> = seen.iter().map(|s| s.event_id.clone()).collect();
    assert_eq!(ids.len() as u64, events, "distinct event ids");
    assert_case_order(&seen);
}

/// Writes `n` escalated cases (three events each, two routed to the department)
/// from eight concurrent writers, alternating `fire` and `gas`.
pub async fn write_escalated(cases: &Cases, n: usize) {
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let cases = cases.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    let dept = if i % 2 == 0 { "fire" } else { "gas" };
                    cases.escalated_to(dept, "heping-beili-b1").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
}
