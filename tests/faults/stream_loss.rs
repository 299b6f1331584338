//! The broker loses what it acknowledged: the stream is deleted under a running whistle
//! mid-load (what an operator's mistake or a nats-server that acknowledged before it
//! flushed looks like). The relay notices — the stream's sequence is below the one it
//! remembers — provisions the stream again and refills it from the log: afterwards it
//! holds every case event exactly once, in case order, and intake never noticed.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use whistle_bus::testing::NatsServer;
use whistle_store::testing::PgTestDb;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_a_running_whistle_is_refilled_from_the_log() {
    let test = "faults::stream_loss";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let data_dir = temp_dir("whistle-faults");
    let opts = NodeOptions {
        nats_url: Some(nats.url()),
        ..NodeOptions::default()
    };
    let node = Node::start(&data_dir, db.url(), &opts);
    let (_addrs, fleet) = Fleet::new(vec![node.addr]);
    let load = Load::start(&fleet, &data_dir, 4);
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = match js.get_stream(whistle_bus::DEFAULT_STREAM).await {
            Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        };
        if stored >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay published {stored} events in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    js.delete_stream(whistle_bus::DEFAULT_STREAM)
        .await
        .expect("delete the stream");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let LoadReport {
        ledger, retries, ..
    } = load.finish().await;
    assert_eq!(
        retries, 0,
        "losing the stream must not fail a single gRPC call"
    );
    let store = db.store().await;
    assert_ledger_exactly_once(&ledger, &read_log(&store).await);
    assert_stream_holds_log(&nats.url(), whistle_bus::DEFAULT_STREAM, &store).await;
    let resets = node
        .metric("whistle_relay_stream_resets_total")
        .await
        .unwrap_or(0.0);
    assert!(resets >= 1.0, "the relay counted the reset: {resets}");
    println!(
        "{test}: stream deleted after >= 200 events under load; {} reports, {} sign-fors; \
         refilled from the log ({resets} reset), every event once",
        ledger.reports.len(),
        ledger.acks.len()
    );
    drop(node);
}
