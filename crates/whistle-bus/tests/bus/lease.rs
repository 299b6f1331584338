//! What the relay needs from the store, on both backends: durable checkpoints, the
//! commit notification (on PostgreSQL across store handles, as across nodes), the
//! singleton lease, and relay failover from one node to another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use whistle_bus::Relay;
use whistle_bus::testing::NatsServer;
use whistle_store::testing::{PgTestDb, SqliteTestDb};
use whistle_store::{Checkpoint, Store};

use crate::support::*;

async fn checkpoints_round_trip(store: &Store) {
    assert_eq!(store.load_checkpoint("relay:X").await.expect("load"), None);
    let cp = Checkpoint {
        position: 42,
        aux: 7,
    };
    store.save_checkpoint("relay:X", cp).await.expect("save");
    store
        .save_checkpoint("relay:Y", Checkpoint::default())
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("relay:X").await.expect("load"),
        Some(cp)
    );
    let later = Checkpoint {
        position: 43,
        aux: 9,
    };
    store.save_checkpoint("relay:X", later).await.expect("save");
    assert_eq!(
        store.load_checkpoint("relay:X").await.expect("load"),
        Some(later)
    );
}

/// `watcher` must see a commit made through `writer` within the bound.
async fn commit_wakes(writer: Arc<Store>, watcher: &Store) {
    let mut commits = watcher.subscribe_commits();
    commits.borrow_and_update();
    // PostgreSQL LISTEN starts in the background: keep appending until it is heard.
    let cases = Cases::new(writer);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        cases
            .report("leak_from_above", "hongqi-jiayuan-b1-u1")
            .await;
        // (A LISTEN (re)connect also wakes followers, without a position.)
        let _ = tokio::time::timeout(Duration::from_millis(200), commits.changed()).await;
        if *commits.borrow_and_update() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no commit notification");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_notifications_and_lease() {
    let db = SqliteTestDb::new();
    let store = Arc::new(db.store().await);
    checkpoints_round_trip(&store).await;
    commit_wakes(store.clone(), &store).await;
    let lease = store.try_acquire_singleton("relay:X").await.expect("lease");
    let mut lease = lease.expect("one process: always granted");
    lease.check().await.expect("held");
    lease.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checkpoints_notifications_across_nodes_and_an_exclusive_lease() {
    let Some(db) = PgTestDb::create("lease::postgres").await else {
        return;
    };
    let node_a = Arc::new(db.store().await);
    let node_b = Arc::new(db.store().await);
    checkpoints_round_trip(&node_a).await;
    // A commit by node A wakes node B's followers (NOTIFY/LISTEN).
    commit_wakes(node_a.clone(), &node_b).await;

    let mut held = node_a
        .try_acquire_singleton("relay:X")
        .await
        .expect("lease")
        .expect("free");
    held.check().await.expect("held");
    assert!(
        node_b
            .try_acquire_singleton("relay:X")
            .await
            .expect("lease")
            .is_none(),
        "exclusive across nodes"
    );
    let mut other = node_b
        .try_acquire_singleton("scheduler")
        .await
        .expect("lease")
        .expect("another name is another lease");
    other.check().await.expect("held");
    held.release().await;
    assert!(
        node_b
            .try_acquire_singleton("relay:X")
            .await
            .expect("lease")
            .is_some(),
        "free again after release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_runs_on_one_node_and_fails_over_when_it_dies() {
    let test = "lease::relay_failover";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let node_a = Arc::new(db.store().await);
    let node_b = Arc::new(db.store().await);
    let cases = Cases::new(node_a.clone());
    for _ in 0..20 {
        cases.escalated_to("fire", "heping-beili-b1").await;
    }
    let cfg = relay_config(&nats.url(), "CASES_FAILOVER");
    let a = Relay::spawn(node_a.clone(), cfg.clone());
    wait_caught_up(&node_a, &a.status(), Duration::from_secs(60)).await;
    let b = Relay::spawn(node_b.clone(), cfg);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        a.status().is_running() && !b.status().is_running(),
        "one relay at a time"
    );

    // Node A dies (its lease session goes with it); node B takes over and carries on.
    a.abort().await;
    for _ in 0..20 {
        cases.escalated_to("gas", "heping-beili-b1").await;
    }
    wait_caught_up(&node_b, &b.status(), Duration::from_secs(60)).await;
    assert!(b.status().is_running());
    b.stop().await;
    let js = jetstream(&nats.url()).await;
    let mut stream = wait_stream(&js, "CASES_FAILOVER").await;
    assert_eq!(
        stream.info().await.expect("info").state.messages,
        120,
        "40 cases × 3 events, each once"
    );
}
