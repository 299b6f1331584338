//! nats-server killed and restarted under load, twice: intake never notices (the log is
//! the outbox), the relay reconnects by itself, and afterwards JetStream holds every
//! case event exactly once in case order — including any the broker acknowledged but
//! had not yet written when it was killed.

use std::time::Duration;

use whistle_bus::testing::NatsServer;
use whistle_store::testing::PgTestDb;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_under_load_loses_no_event() {
    let test = "faults::nats_restart";
    let Some(mut nats) = NatsServer::start(test) else {
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
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.restart();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let LoadReport {
        ledger, retries, ..
    } = load.finish().await;
    assert_eq!(
        retries, 0,
        "NATS being down must not fail a single gRPC call"
    );
    let store = db.store().await;
    assert_ledger_exactly_once(&ledger, &read_log(&store).await);
    assert_stream_holds_log(&nats.url(), whistle_bus::DEFAULT_STREAM, &store).await;
    println!(
        "{test}: {} reports, {} sign-fors while nats-server was killed twice; \
         the stream holds every event once",
        ledger.reports.len(),
        ledger.acks.len()
    );
    drop(node);
}
