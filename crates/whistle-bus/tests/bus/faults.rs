//! Faults: the relay killed mid-batch, stopped mid-batch, NATS down at start, NATS
//! stopped for 30 s under load. After JetStream de-duplication the stream holds every
//! event exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use whistle_bus::Relay;
use whistle_bus::testing::NatsServer;
use whistle_store::testing::{PgTestDb, SqliteTestDb};
use whistle_store::{EventStore, Store};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_batch_then_restarted_publishes_nothing_twice_and_misses_nothing() {
    let test = "faults::relay_killed_mid_batch";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let store = Arc::new(db.store().await);
    let cases = Cases::new(store.clone());
    write_escalated(&cases, 1500).await;
    let events = store.count_events().await.expect("count");

    // Small groups and big read batches: the kill lands between publishes of a batch
    // whose checkpoint was never saved.
    let mut cfg = relay_config(&nats.url(), "CASES_KILL");
    cfg.max_in_flight = 16;
    cfg.read_batch = 4096;
    let relay = Relay::spawn(store.clone(), cfg.clone());
    let status = relay.status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.published() < events / 3 {
        assert!(Instant::now() < deadline, "relay published nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    relay.abort().await;
    let published_before = status.published();
    let checkpoint_before = store
        .load_checkpoint(&cfg.checkpoint_name())
        .await
        .expect("checkpoint")
        .unwrap_or_default();
    assert!(
        published_before > 0 && (checkpoint_before.position as u64) < events,
        "killed mid-way: published {published_before}, checkpoint {}",
        checkpoint_before.position
    );

    let relay = Relay::spawn(store.clone(), cfg);
    wait_caught_up(&store, &relay.status(), Duration::from_secs(60)).await;
    let again = relay.status();
    eprintln!(
        "before kill: {published_before} published, checkpoint {}; after restart: {} new, {} duplicates dropped by JetStream",
        checkpoint_before.position,
        again.published(),
        again.duplicates()
    );
    // Publishes in flight when the task died may still have been stored (their acks
    // were never read), so the restart sees more duplicates than `published_before`
    // minus the checkpoint; the stream itself is the proof below.
    if (checkpoint_before.position as u64) < published_before {
        assert!(
            again.duplicates() > 0,
            "the restart re-published the unsaved part of the batch"
        );
    }
    assert!(published_before + again.published() <= events);
    relay.stop().await;
    assert_stream_exactly_once(&nats.url(), "CASES_KILL", events).await;
}

/// `stop()` lands in the middle of a batch (all events are one read batch, published
/// in groups of 8): the relay finishes the batch and saves its checkpoint at the
/// head, instead of abandoning it with the checkpoint where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_stopped_mid_batch_finishes_and_checkpoints_the_batch() {
    let test = "faults::relay_stopped_mid_batch";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let store = Arc::new(db.store().await);
    let cases = Cases::new(store.clone());
    write_escalated(&cases, 1500).await;
    let events = store.count_events().await.expect("count");
    let head = store.head_position().await.expect("head");

    let mut cfg = relay_config(&nats.url(), "CASES_STOP");
    cfg.max_in_flight = 8;
    cfg.read_batch = 8192;
    let relay = Relay::spawn(store.clone(), cfg.clone());
    let status = relay.status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.published() == 0 {
        assert!(Instant::now() < deadline, "relay published nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let published_at_stop = status.published();
    relay.stop().await;
    assert!(
        published_at_stop < events,
        "the stop came before the batch was published ({published_at_stop} of {events})"
    );
    let checkpoint = store
        .load_checkpoint(&cfg.checkpoint_name())
        .await
        .expect("checkpoint")
        .unwrap_or_default();
    assert_eq!(
        checkpoint.position, head,
        "the batch in flight was finished and checkpointed"
    );
    assert_eq!(status.published(), events, "every event published once");
    assert_stream_exactly_once(&nats.url(), "CASES_STOP", events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_start_intake_keeps_working_and_the_relay_catches_up() {
    let test = "faults::nats_down_at_start";
    let Some(mut nats) = NatsServer::start(test) else {
        return;
    };
    nats.kill();
    let db = SqliteTestDb::new();
    let store: Arc<Store> = Arc::new(db.store().await);
    let relay = Relay::spawn(store.clone(), relay_config(&nats.url(), "CASES_LATE"));
    let cases = Cases::new(store.clone());
    write_escalated(&cases, 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        relay.status().checkpoint(),
        0,
        "nothing can be published yet"
    );
    assert!(relay.status().failures() > 0, "the relay kept retrying");
    nats.restart();
    write_escalated(&cases, 40).await;
    wait_caught_up(&store, &relay.status(), Duration::from_secs(60)).await;
    relay.stop().await;
    let events = store.count_events().await.expect("count");
    assert_stream_exactly_once(&nats.url(), "CASES_LATE", events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_for_30_seconds_under_load_loses_nothing() {
    let test = "faults::nats_stopped_for_30_seconds";
    let Some(mut nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let store = Arc::new(db.store().await);
    let relay = Relay::spawn(store.clone(), relay_config(&nats.url(), "CASES_OUTAGE"));
    let cases = Cases::new(store.clone());

    // Load: cases keep coming at a steady pace for the whole test.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (cases, stop) = (cases.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                write_escalated(&cases, 8).await;
                n += 8;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    let status = relay.status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.published() < 50 {
        assert!(Instant::now() < deadline, "relay never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nats.kill();
    let before_outage = store.head_position().await.expect("head");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = store.head_position().await.expect("head");
    assert!(
        during > before_outage,
        "intake kept working while NATS was down"
    );
    nats.restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = load.await.expect("load");
    wait_caught_up(&store, &status, Duration::from_secs(120)).await;
    relay.stop().await;
    let events = store.count_events().await.expect("count");
    eprintln!(
        "{written} cases, {events} events; relay failures during the outage: {}",
        status.failures()
    );
    assert_stream_exactly_once(&nats.url(), "CASES_OUTAGE", events).await;
}
