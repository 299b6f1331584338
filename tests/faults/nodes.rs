//! Three `whistle serve` processes on one PostgreSQL database and a three-node NATS
//! JetStream cluster (stream replicated three times). Clients spread their reports over
//! all nodes; respond deadlines are seconds long, so cases climb rungs by themselves
//! while the test runs. Mid-load the node holding the singleton work (the relay) is
//! SIGKILLed: another node takes the relay over, every deadline still fires exactly
//! once, and every event is relayed exactly once and in case order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use whistle_bus::testing::Cluster;
use whistle_store::testing::PgTestDb;

use crate::harness::*;

/// Seconds to sign for a case at each rung (the 83012 preset says 480).
const RESPOND_SECONDS: u64 = 4;

fn fast_sla(dir: &std::path::Path) -> std::path::PathBuf {
    let text = whistle_domain::sla::PRESET_83012.replace(
        "target_seconds = 480",
        &format!("target_seconds = {RESPOND_SECONDS}"),
    );
    assert_ne!(
        text,
        whistle_domain::sla::PRESET_83012,
        "the preset changed"
    );
    let path = dir.join("fast-sla.toml");
    std::fs::write(&path, text).expect("writing the SLA file");
    path
}

/// Reports (no sign-for: the deadlines do the rest) until `stop`, retrying over the
/// fleet with the same key.
async fn report(
    fleet: Fleet,
    token: String,
    worker: usize,
    ledger: SharedLedger,
    stop: watch::Receiver<bool>,
) -> HashMap<std::net::SocketAddr, usize> {
    let mut client = Retrying::new(fleet.clone(), &token, worker);
    let mut n = 0;
    while !*stop.borrow() {
        let (category, location) = WORK[n % WORK.len()];
        let key = format!("w{worker}-r{n}");
        let k = key.clone();
        let r = client
            .call(&key, |c| {
                let k = k.clone();
                async move { c.report(category, location, "three nodes", &k).await }
            })
            .await
            .unwrap_or_else(|s| panic!("report {key} refused: {s:?}"));
        let case_id = r.ack.expect("ack").case_id;
        ledger.lock().expect("ledger").reports.insert(key, case_id);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.served_by()
}

/// Which node runs the relay now (its `/metrics` says `whistle_relay_running 1`).
async fn relay_holder(nodes: &[Option<Node>]) -> Option<usize> {
    for (i, n) in nodes.iter().enumerate() {
        if let Some(n) = n
            && n.metric("whistle_relay_running").await == Some(1.0)
        {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_holding_singleton_work_killed_mid_load_loses_and_doubles_nothing() {
    let test = "faults::three_nodes";
    let Some(cluster) = Cluster::start(test, 3) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let data_dir = temp_dir("whistle-faults");
    let opts = NodeOptions {
        nats_url: Some(cluster.url()),
        nats_replicas: Some(3),
        sla_file: Some(fast_sla(&data_dir)),
    };
    // One after the other: the first creates the demo tokens the others read.
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|_| Some(Node::start(&data_dir, db.url(), &opts)))
        .collect();
    let addrs = |nodes: &[Option<Node>]| nodes.iter().flatten().map(|n| n.addr).collect();
    let (fleet_tx, fleet) = Fleet::new(addrs(&nodes));
    let gw = token(&data_dir, "gw-lin");
    let ledger = SharedLedger::default();
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..6)
        .map(|w| {
            tokio::spawn(report(
                fleet.clone(),
                gw.clone(),
                w,
                ledger.clone(),
                stopped.clone(),
            ))
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        if let Some(i) = relay_holder(&nodes).await {
            break i;
        }
        assert!(Instant::now() < deadline, "no node took the relay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Mid-load: some cases are climbing, some deadlines are claimed by the victim.
    tokio::time::sleep(Duration::from_secs(RESPOND_SECONDS * 2)).await;
    let reported_before = ledger.lock().expect("ledger").reports.len();
    nodes[holder].take().expect("holder").kill();
    let killed = Instant::now();
    let _ = fleet_tx.send(addrs(&nodes));
    let new_holder = loop {
        if let Some(i) = relay_holder(&nodes).await {
            break i;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no node took the relay over within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failover = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(RESPOND_SECONDS)).await;
    let _ = stop.send(true);
    let mut served: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for w in workers {
        for (a, n) in w.await.expect("worker") {
            *served.entry(a).or_default() += n;
        }
    }
    assert_eq!(
        served.len(),
        3,
        "intake spread over all three nodes: {served:?}"
    );

    // Every deadline that falls due fires: wait until only the long clocks (on site,
    // resolve) are left. The victim's claimed rows come back after their 30 s lease.
    let store = db.store().await;
    let settle = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, next) = store.deadline_summary().await.expect("deadlines");
        let now = time::OffsetDateTime::now_utc();
        if next.is_none_or(|n| n > now + time::Duration::minutes(10)) {
            break;
        }
        assert!(
            Instant::now() < settle,
            "deadlines still due after 180 s (next {next:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("workers are done")
        .into_inner()
        .expect("ledger");
    let log = read_log(&store).await;
    assert_ledger_exactly_once(&ledger, &log);
    let (mut fired, mut escalations) = (0usize, 0usize);
    for (stream, events) in log.iter().filter(|(s, _)| s.starts_with("case-")) {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for e in events.iter().filter(|e| {
            matches!(
                e.event_type.as_str(),
                "MilestoneWarned" | "MilestoneBreached" | "CaseEscalated" | "CaseTakenOver"
            )
        }) {
            *seen
                .entry((e.event_type.clone(), e.payload.to_string()))
                .or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{stream}: fired more than once: {twice:?}"
        );
        let climbed = seen.keys().filter(|(t, _)| t == "CaseEscalated").count();
        assert!(climbed >= 1, "{stream} climbed by itself: {seen:?}");
        assert!(
            seen.keys().any(|(t, _)| t == "CaseTakenOver"),
            "{stream}: the district took over at ESCALATED"
        );
        fired += seen
            .keys()
            .filter(|(t, _)| t.starts_with("Milestone"))
            .count();
        escalations += climbed;
    }
    assert_stream_holds_log(&cluster.url(), whistle_bus::DEFAULT_STREAM, &store).await;
    println!(
        "{test}: {} reports over 3 nodes ({served:?}); node {holder} (relay) killed after \
         {reported_before}; node {new_holder} took the relay over in {:.1} s; {fired} \
         warnings/breaches and {escalations} escalations, each once; every event relayed \
         once, in case order",
        ledger.reports.len(),
        failover.as_secs_f64(),
    );
}
