//! PostgreSQL crashed (immediate shutdown) and restarted under load, twice, under a
//! running whistle: clients see `UNAVAILABLE` and retry with their idempotency keys;
//! whistle recovers by itself, without a restart; nothing acknowledged is lost and
//! nothing is doubled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
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
    let tokens = (token(&data_dir, "gw-lin"), token(&data_dir, "h-wang"));
    let (_addrs, fleet) = Fleet::new(vec![node.addr]);
    let ledger = SharedLedger::default();
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..6)
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
    let mut answered = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        answered.push(ledger.lock().expect("ledger").reports.len());
        pg.crash();
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg.restart();
    }
    // The same server process goes on serving once the database is back.
    let resumed_from = ledger.lock().expect("ledger").reports.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop.send(true);
    let (mut retries, mut unavailable) = (0, 0);
    for w in workers {
        let (r, u) = w.await.expect("worker");
        retries += r;
        unavailable += u;
    }
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("workers are done")
        .into_inner()
        .expect("ledger");
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
