//! The whistle stream deleted under a running `DepartmentConsumer`, its durable
//! consumer with it. Whistle's relay then provisions the stream again and re-publishes
//! the whole log (whistle-bus `tests/bus/stream_loss.rs` proves that side); here the
//! relay's refill is played by publishing the same events (same ids, same order) into
//! the re-provisioned stream, followed by the events appended meanwhile. The consumer
//! must create its durable consumer again by itself and end up having handled every
//! event of its department exactly once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use uuid::Uuid;
use whistle_bus::testing::NatsServer;
use whistle_department::{ConsumerConfig, DepartmentConsumer};

use super::{DISTRICT, Recorder, poll_until, publish_id, setup};

const STREAM: &str = "DEPT_LOSS";

/// One event of the simulated log.
#[derive(Debug, Clone)]
struct Event {
    id: Uuid,
    department: &'static str,
    case: Uuid,
    version: u64,
    position: i64,
}

/// `cases` cases of three events each, alternately for `fire` and `gas`, interleaved
/// across cases as concurrent writers would append them, from `first_position` on.
fn log(cases: usize, first_position: i64) -> Vec<Event> {
    let ids: Vec<Uuid> = (0..cases).map(|_| Uuid::now_v7()).collect();
    let mut out = Vec::new();
    for version in 1..=3 {
        for (i, case) in ids.iter().enumerate() {
            out.push(Event {
                id: Uuid::now_v7(),
                department: if i % 2 == 0 { "fire" } else { "gas" },
                case: *case,
                version,
                position: first_position + out.len() as i64,
            });
        }
    }
    out
}

/// Publishes events in log order, as the relay does.
async fn publish_log(js: &jetstream::Context, events: &[Event]) {
    for e in events {
        publish_id(js, e.id, e.department, e.case, e.version, e.position).await;
    }
}

fn fire_ids(events: &[Event]) -> HashSet<Uuid> {
    events
        .iter()
        .filter(|e| e.department == "fire")
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_stream_is_deleted_recreates_its_consumer_and_handles_every_event_once() {
    let Some(nats) = NatsServer::start("department::stream_loss::stream_deleted") else {
        return;
    };
    let js = setup(&nats, STREAM).await;
    let before = log(12, 1);
    publish_log(&js, &before).await;

    let mut cfg = ConsumerConfig::new(nats.url(), DISTRICT, "fire");
    cfg.stream = STREAM.into();
    // Small fetches, so the deletion lands mid-way through the department's events.
    cfg.batch = 4;
    let mut consumer = DepartmentConsumer::connect(cfg).await.expect("consumer");
    let mut handler = Recorder::default();
    poll_until(&mut consumer, &mut handler, |c| c.stats().handled >= 4).await;
    let handled_before = consumer.stats().handled;
    assert!(
        handled_before < fire_ids(&before).len() as u64,
        "mid-way: {handled_before} handled"
    );

    js.delete_stream(STREAM).await.expect("delete the stream");
    // While the stream is gone the consumer finds its durable consumer missing and
    // cannot create it yet (no stream): polls return nothing, without failing.
    for _ in 0..3 {
        let n = consumer
            .poll(&mut handler, Duration::from_millis(200))
            .await
            .expect("poll while the stream is gone");
        assert_eq!(n, 0);
    }

    // The relay's next session: the stream provisioned again, the whole log
    // re-published from the start, then what was appended meanwhile.
    let js = setup(&nats, STREAM).await;
    publish_log(&js, &before).await;
    let after = log(12, before.len() as i64 + 1);
    publish_log(&js, &after).await;

    let mut every = fire_ids(&before);
    every.extend(fire_ids(&after));
    let want = every.len() as u64;
    poll_until(&mut consumer, &mut handler, |c| c.stats().handled >= want).await;

    let ids = handler.ids.lock().expect("lock").clone();
    let seen: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(seen, every, "every event of the department, and only those");
    assert_eq!(ids.len(), every.len(), "each handled exactly once");
    let stats = consumer.stats();
    assert!(stats.recreated >= 1, "{stats:?}");
    assert_eq!(
        stats.duplicates, handled_before,
        "the refill's repeats of handled events were dropped by event id: {stats:?}"
    );
    // Per-case order held across the loss.
    let mut last: HashMap<Uuid, u64> = HashMap::new();
    for (case, version) in handler.handled.lock().expect("lock").iter() {
        let prev = last.insert(*case, *version).unwrap_or(0);
        assert!(
            *version > prev,
            "case {case}: version {version} after {prev}"
        );
    }
}
