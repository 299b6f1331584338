//! SIGKILL at random moments under load, many times (`WHISTLE_FAULT_TRIALS`): clients
//! report cases and sign for them, each command with its own idempotency key, retrying
//! until answered. After every restart each command acknowledged before the kill is in
//! the log exactly once; at the end every command is, JetStream holds every case event
//! exactly once in case order, and the read models equal a rebuild from zero.

use std::sync::Arc;
use std::time::Instant;

use whistle_bus::testing::NatsServer;
use whistle_store::testing::PgTestDb;

use crate::harness::*;

const WORKERS: usize = 6;

/// Every command in `ledger` (a copy taken before a kill) is in the log exactly once,
/// and the log holds no more cases than reports were attempted.
fn assert_acknowledged_before_kill_present(ledger: &Ledger, log: &LogMirror, trial: usize) {
    for (key, case_id) in &ledger.reports {
        let events = log
            .streams
            .get(&format!("case-{case_id}"))
            .unwrap_or_else(|| panic!("trial {trial}: acknowledged report {key} lost"));
        let reported = events
            .iter()
            .filter(|e| e.event_type == "CaseReported")
            .count();
        assert_eq!(reported, 1, "trial {trial}: report {key}");
    }
    for (key, case_id) in &ledger.acks {
        let signed = log.streams[&format!("case-{case_id}")]
            .iter()
            .filter(|e| e.event_type == "CaseAcknowledged")
            .count();
        assert_eq!(signed, 1, "trial {trial}: sign-for {key}");
    }
    let cases = log
        .streams
        .keys()
        .filter(|s| s.starts_with("case-"))
        .count();
    // Each worker has at most one report in flight that the ledger does not show yet.
    assert!(
        cases <= ledger.reports.len() + 2 * WORKERS,
        "trial {trial}: {cases} cases in the log for {} acknowledged reports",
        ledger.reports.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let test = "faults::kill_loop";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    let trials = trials();
    let mut rng = Rng::from_env(test);
    let data_dir = temp_dir("whistle-faults");
    let opts = NodeOptions {
        nats_url: Some(nats.url()),
        ..NodeOptions::default()
    };
    let mut node = Some(Node::start(&data_dir, db.url(), &opts));
    let (addrs, fleet) = Fleet::new(vec![node.as_ref().expect("node").addr]);
    let load = Load::start(&fleet, &data_dir, WORKERS);
    let store = db.store().await;
    let mut log = LogMirror::default();
    let started = Instant::now();
    for trial in 0..trials {
        tokio::time::sleep(rng.millis(100, 1500)).await;
        let before = {
            let l = load.ledger.lock().expect("ledger");
            Ledger {
                reports: l.reports.clone(),
                acks: l.acks.clone(),
            }
        };
        node.take().expect("node").kill();
        let _ = addrs.send(Vec::new());
        let restarted = Node::start(&data_dir, db.url(), &opts);
        let _ = addrs.send(vec![restarted.addr]);
        node = Some(restarted);
        log.catch_up(&store).await;
        assert_acknowledged_before_kill_present(&before, &log, trial);
    }
    let LoadReport {
        ledger,
        retries,
        unavailable,
        lost,
    } = load.finish().await;
    assert!(lost > 0, "answers were lost and asked for again");
    let log = read_log(&store).await;
    assert_ledger_exactly_once(&ledger, &log);
    assert!(
        ledger.reports.len() > trials,
        "the load was real: {} reports",
        ledger.reports.len()
    );
    assert_stream_holds_log(&nats.url(), whistle_bus::DEFAULT_STREAM, &store).await;
    wait_projection_caught_up(&store).await;
    node.take().expect("node").kill();
    assert_read_models_equal_rebuild(Arc::new(store)).await;
    let events: usize = log.values().map(Vec::len).sum();
    println!(
        "{test}: {trials} SIGKILLs in {:.0} s; {} reports and {} sign-fors acknowledged, \
         {retries} retries ({unavailable} UNAVAILABLE), {lost} answers thrown away and asked \
         for again, {events} events: none lost, none \
         doubled, all in JetStream once, read models equal a rebuild",
        started.elapsed().as_secs_f64(),
        ledger.reports.len(),
        ledger.acks.len(),
    );
}
