//! A stream that loses what it had acknowledged under a running relay: deleted while
//! events keep coming, or deleted and recreated empty while the relay is idle. The
//! relay notices, provisions the stream again where needed and re-publishes the whole
//! log, so the stream ends up with every event exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use whistle_bus::testing::NatsServer;
use whistle_bus::{Relay, RelayStatus};
use whistle_store::testing::PgTestDb;
use whistle_store::{EventStore, Store};

use crate::support::*;

/// Waits (bounded) until the relay has detected at least one stream reset and has
/// checkpointed the store's head after it.
async fn wait_refilled(store: &Store, status: &RelayStatus, limit: Duration) {
    let deadline = Instant::now() + limit;
    while status.stream_resets() == 0 {
        assert!(
            Instant::now() < deadline,
            "the relay never noticed the lost stream (checkpoint {}, failures {})",
            status.checkpoint(),
            status.failures()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_caught_up(
        store,
        status,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_load_is_provisioned_again_and_refilled() {
    let test = "stream_loss::deleted_under_load";
    init_tracing();
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let store = Arc::new(db.store().await);
    let cases = Cases::new(store.clone());
    write_escalated(&cases, 100).await;
    let relay = Relay::spawn(store.clone(), relay_config(&nats.url(), "CASES_DELETED"));
    let status = relay.status();
    wait_caught_up(&store, &status, Duration::from_secs(60)).await;
    let before = status.published();

    // Cases keep coming while the stream is deleted.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (cases, stop) = (cases.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                write_escalated(&cases, 8).await;
                n += 8;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.published() < before + 30 {
        assert!(
            Instant::now() < deadline,
            "the relay did not publish the load"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let js = jetstream(&nats.url()).await;
    js.delete_stream("CASES_DELETED")
        .await
        .expect("delete the stream");
    let head_at_deletion = store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.head_position().await.expect("head") < head_at_deletion + 30 {
        assert!(Instant::now() < deadline, "no events after the deletion");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");

    wait_refilled(&store, &status, Duration::from_secs(120)).await;
    relay.stop().await;
    assert!(status.stream_resets() >= 1, "{}", status.stream_resets());
    let events = store.count_events().await.expect("count");
    eprintln!(
        "{events} events; stream resets {}, relay failures {}, published {}, duplicates {}",
        status.stream_resets(),
        status.failures(),
        status.published(),
        status.duplicates()
    );
    assert_stream_exactly_once(&nats.url(), "CASES_DELETED", events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_recreated_empty_while_the_relay_is_idle_is_refilled() {
    let test = "stream_loss::recreated_while_idle";
    init_tracing();
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let store = Arc::new(db.store().await);
    let cases = Cases::new(store.clone());
    write_escalated(&cases, 100).await;
    let events = store.count_events().await.expect("count");
    let mut cfg = relay_config(&nats.url(), "CASES_RECREATED");
    cfg.stream_check = Duration::from_millis(200);
    let relay = Relay::spawn(store.clone(), cfg);
    let status = relay.status();
    wait_caught_up(&store, &status, Duration::from_secs(60)).await;

    // Recreated with the same configuration, as an operator's script would; nothing
    // is written afterwards, so only the relay's idle check can notice.
    let js = jetstream(&nats.url()).await;
    js.delete_stream("CASES_RECREATED")
        .await
        .expect("delete the stream");
    let mut stream = js
        .get_or_create_stream(stream_settings("CASES_RECREATED").config())
        .await
        .expect("recreate the stream");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = stream.info().await.expect("stream info").state.messages;
        if messages >= events && status.checkpoint() == store.head_position().await.expect("head") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refilled: {messages} of {events} messages, stream resets {}, checkpoint {}",
            status.stream_resets(),
            status.checkpoint()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.stop().await;
    assert!(status.stream_resets() >= 1, "{}", status.stream_resets());
    assert_eq!(
        store.count_events().await.expect("count"),
        events,
        "nothing was written meanwhile"
    );
    assert_stream_exactly_once(&nats.url(), "CASES_RECREATED", events).await;
}
