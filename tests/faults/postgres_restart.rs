//! PostgreSQL crashed (immediate shutdown) and restarted under load, twice, under a
//! running whistle: clients see `UNAVAILABLE` and retry with their idempotency keys;
//! whistle recovers by itself, without a restart; nothing acknowledged is lost and
//! nothing is doubled.

use std::time::Duration;

use whistle_store::testing::test_config;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_acknowledged() {
    let test = "faults::postgres_restart";
    let Some(mut pg) = PgInstance::start(test) else {
        return;
    };
    pg.create_database("whistle").await;
    let url = pg.url("whistle");
    let data_dir = temp_dir("whistle-faults");
    let node = Node::start(&data_dir, &url, &NodeOptions::default());
    let (_addrs, fleet) = Fleet::new(vec![node.addr]);
    let load = Load::start(&fleet, &data_dir, 6);
    let mut answered = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        answered.push(load.reports());
        pg.crash();
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg.restart();
    }
    // The same server process goes on serving once the database is back.
    let resumed_from = load.reports();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let LoadReport {
        ledger,
        retries,
        unavailable,
        ..
    } = load.finish().await;
    assert!(
        unavailable > 0,
        "clients saw UNAVAILABLE while the database was down"
    );
    assert!(
        ledger.reports.len() > resumed_from,
        "reports were answered after the restart without restarting whistle"
    );
    let store = whistle_store::Store::connect(&test_config(&url))
        .await
        .expect("store");
    assert_ledger_exactly_once(&ledger, &read_log(&store).await);
    println!(
        "{test}: PostgreSQL crashed twice (after {answered:?} reports); {} reports and {} \
         sign-fors acknowledged, {retries} retries ({unavailable} UNAVAILABLE); none lost, \
         none doubled, no whistle restart",
        ledger.reports.len(),
        ledger.acks.len()
    );
    drop(node);
}
