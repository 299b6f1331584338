//! The department client library against a real nats-server (spawned per test): the
//! stream provisioned as whistle does, messages published in whistle's format, and a
//! `DepartmentConsumer` with handlers that succeed, fail for a while, or never
//! succeed. Skips with `SKIPPED (nats-server unavailable): …` when the binary is
//! missing, unless `WHISTLE_REQUIRE_SERVICES=1`. `permissions` runs the same against
//! the `deploy/nats` configuration (users and permissions per department);
//! `stream_loss` deletes the stream under a consumer and refills it as the relay does.

#[path = "department/permissions.rs"]
mod permissions;
#[path = "department/stream_loss.rs"]
mod stream_loss;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures_util::StreamExt;
use uuid::Uuid;
use whistle_bus::message as h;
use whistle_bus::testing::NatsServer;
use whistle_bus::{StreamSettings, ensure_stream, subject};
use whistle_department::{ConsumerConfig, Delivery, DepartmentConsumer, HandleError, Handler};

const DISTRICT: &str = "qinghe";

async fn setup(nats: &NatsServer, stream: &str) -> jetstream::Context {
    setup_with(nats, stream, Duration::from_secs(120)).await
}

async fn setup_with(
    nats: &NatsServer,
    stream: &str,
    duplicate_window: Duration,
) -> jetstream::Context {
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut settings = StreamSettings::new(DISTRICT);
    settings.name = stream.to_owned();
    settings.duplicate_window = duplicate_window;
    ensure_stream(&js, &settings).await.expect("stream");
    js
}

/// Publishes one event as the relay would.
async fn publish(
    js: &jetstream::Context,
    department: &str,
    case: Uuid,
    version: u64,
    position: i64,
) -> Uuid {
    publish_id(js, Uuid::now_v7(), department, case, version, position).await
}

async fn publish_id(
    js: &jetstream::Context,
    id: Uuid,
    department: &str,
    case: Uuid,
    version: u64,
    position: i64,
) -> Uuid {
    let mut headers = HeaderMap::new();
    headers.insert(h::MSG_ID, id.to_string().as_str());
    headers.insert(h::POSITION, position.to_string().as_str());
    headers.insert(h::CASE_ID, case.to_string().as_str());
    headers.insert(h::VERSION, version.to_string().as_str());
    headers.insert(h::EVENT_TYPE, "NoteAdded");
    headers.insert(h::COMPOUND, "hongqi-jiayuan");
    headers.insert(h::DEPARTMENT, department);
    headers.insert(h::ACTOR, "sup-dongfeng");
    headers.insert(h::ACTOR_ROLE, "supervisor");
    let payload =
        serde_json::json!({"type": "NoteAdded", "text": format!("note {version}"), "evidence": []});
    js.publish_with_headers(
        subject::event_subject(DISTRICT, "hongqi-jiayuan", Some(department), "NoteAdded"),
        headers,
        bytes::Bytes::from(payload.to_string()),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    id
}

/// Records what it handled; fails the events listed in `fail` (n times each, or
/// forever with `u32::MAX`).
#[derive(Default, Clone)]
struct Recorder {
    handled: Arc<Mutex<Vec<(Uuid, u64)>>>,
    /// The event ids handled, in order.
    ids: Arc<Mutex<Vec<Uuid>>>,
    fail: Arc<Mutex<std::collections::HashMap<Uuid, u32>>>,
}

impl Handler for Recorder {
    async fn handle(&mut self, d: &Delivery) -> Result<(), HandleError> {
        {
            let mut fail = self.fail.lock().expect("lock");
            if let Some(n) = fail.get_mut(&d.event_id)
                && *n > 0
            {
                *n = n.saturating_sub(1);
                return Err(HandleError::Transient("whistle unreachable".into()));
            }
        }
        self.handled
            .lock()
            .expect("lock")
            .push((d.case_id, d.version));
        self.ids.lock().expect("lock").push(d.event_id);
        Ok(())
    }
}

async fn poll_until(
    consumer: &mut DepartmentConsumer,
    handler: &mut Recorder,
    done: impl Fn(&DepartmentConsumer) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(consumer) {
        assert!(
            Instant::now() < deadline,
            "consumer did not finish: {:?}",
            consumer.stats()
        );
        consumer
            .poll(handler, Duration::from_millis(200))
            .await
            .expect("poll");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_only_its_department_and_acks_after_handling() {
    let Some(nats) = NatsServer::start("department::receives_only_its_department") else {
        return;
    };
    let js = setup(&nats, "DEPT_A").await;
    let case = Uuid::now_v7();
    for v in 1..=5 {
        publish(
            &js,
            if v % 2 == 0 { "gas" } else { "fire" },
            case,
            v,
            v as i64,
        )
        .await;
    }
    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = "DEPT_A".into();
    let mut consumer = DepartmentConsumer::connect(cfg.clone())
        .await
        .expect("consumer");
    let mut handler = Recorder::default();
    poll_until(&mut consumer, &mut handler, |c| c.stats().handled == 3).await;
    assert_eq!(
        *handler.handled.lock().expect("lock"),
        vec![(case, 1), (case, 3), (case, 5)]
    );
    // Acknowledged: a new consumer instance on the same durable gets nothing more.
    let mut again = DepartmentConsumer::connect(cfg).await.expect("consumer");
    assert_eq!(
        again
            .poll(&mut handler, Duration::from_millis(500))
            .await
            .expect("poll"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_is_redelivered_and_its_case_stays_in_order() {
    let Some(nats) = NatsServer::start("department::a_failed_event_is_redelivered") else {
        return;
    };
    let js = setup(&nats, "DEPT_B").await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let a1 = publish(&js, "fire", a, 1, 1).await;
    publish(&js, "fire", b, 1, 2).await;
    publish(&js, "fire", a, 2, 3).await;
    publish(&js, "fire", b, 2, 4).await;
    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = "DEPT_B".into();
    cfg.retry_delay = Duration::from_millis(200);
    let mut consumer = DepartmentConsumer::connect(cfg).await.expect("consumer");
    let mut handler = Recorder::default();
    handler.fail.lock().expect("lock").insert(a1, 2);
    poll_until(&mut consumer, &mut handler, |c| c.stats().handled == 4).await;
    let handled = handler.handled.lock().expect("lock").clone();
    let of = |case| {
        handled
            .iter()
            .filter(|(c, _)| *c == case)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(a), vec![1, 2], "case a in order despite two failures");
    assert_eq!(of(b), vec![1, 2]);
    // Only a1's two failures are naked: later events of its case wait in memory
    // instead of spending their own deliveries.
    assert_eq!(consumer.stats().naked, 2, "{:?}", consumer.stats());
    assert!(consumer.stats().held >= 1, "{:?}", consumer.stats());
}

/// A case blocked for most of its event's deliveries keeps its later events:
/// held behind the failed one, they are not redelivered towards `max_deliver`
/// (when they were naked to keep order, a case blocked this long lost them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_blocked_case_loses_none_of_its_later_events() {
    let Some(nats) = NatsServer::start("department::a_long_blocked_case") else {
        return;
    };
    let js = setup(&nats, "DEPT_LONG").await;
    let case = Uuid::now_v7();
    let first = publish(&js, "fire", case, 1, 1).await;
    for v in 2..=4 {
        publish(&js, "fire", case, v, v as i64).await;
    }
    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = "DEPT_LONG".into();
    cfg.retry_delay = Duration::from_millis(100);
    cfg.max_deliver = 4;
    let mut consumer = DepartmentConsumer::connect(cfg).await.expect("consumer");
    let mut handler = Recorder::default();
    // Fails on deliveries 1-3, succeeds on the 4th and last allowed.
    handler.fail.lock().expect("lock").insert(first, 3);
    poll_until(&mut consumer, &mut handler, |c| c.stats().handled == 4).await;
    let versions: Vec<u64> = handler
        .handled
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let stats = consumer.stats();
    assert_eq!(
        (stats.naked, stats.gave_up, stats.held),
        (3, 0, 3),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_twice_is_handled_once() {
    let Some(nats) = NatsServer::start("department::an_event_delivered_twice") else {
        return;
    };
    // A short duplicate window: the same event published again after it (a relay that
    // re-publishes after a long outage) is stored twice, and the consumer must drop it.
    let js = setup_with(&nats, "DEPT_C", Duration::from_secs(1)).await;
    let (id, case) = (Uuid::now_v7(), Uuid::now_v7());
    publish_id(&js, id, "fire", case, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish_id(&js, id, "fire", case, 1, 1).await;
    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = "DEPT_C".into();
    let mut consumer = DepartmentConsumer::connect(cfg).await.expect("consumer");
    let mut handler = Recorder::default();
    poll_until(&mut consumer, &mut handler, |c| {
        c.stats().handled == 1 && c.stats().duplicates == 1
    })
    .await;
    assert_eq!(
        *handler.handled.lock().expect("lock"),
        vec![(case, 1)],
        "handled once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_deliver_jetstream_gives_up_and_advises() {
    let Some(nats) = NatsServer::start("department::past_max_deliver") else {
        return;
    };
    let js = setup(&nats, "DEPT_D").await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.DEPT_D.dept-fire")
        .await
        .expect("subscribe");
    let bad = publish(&js, "fire", Uuid::now_v7(), 1, 1).await;
    let good = publish(&js, "fire", Uuid::now_v7(), 1, 2).await;
    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = "DEPT_D".into();
    cfg.max_deliver = 3;
    cfg.retry_delay = Duration::from_millis(100);
    let mut consumer = DepartmentConsumer::connect(cfg).await.expect("consumer");
    let mut handler = Recorder::default();
    handler.fail.lock().expect("lock").insert(bad, u32::MAX);
    poll_until(&mut consumer, &mut handler, |c| {
        c.stats().gave_up == 1 && c.stats().handled == 1
    })
    .await;
    let _ = good;
    // JetStream notices the exhausted message when it would deliver it again, i.e. on
    // the consumer's next pull.
    let deadline = Instant::now() + Duration::from_secs(30);
    let advisory = loop {
        assert!(Instant::now() < deadline, "no max-deliveries advisory");
        consumer
            .poll(&mut handler, Duration::from_millis(200))
            .await
            .expect("poll");
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(100), advisories.next()).await
        {
            break m;
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&advisory.payload).expect("json");
    assert_eq!(json["stream_seq"], 1);
    assert_eq!(json["deliveries"], 3);
}
