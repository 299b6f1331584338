//! The clock jumps forward (a node's clock corrected by hours, or a cluster resumed
//! after a long stop) with two nodes' schedulers on one database: every deadline the
//! jump made due fires exactly once, and another jump does the same for the deadlines
//! the first one started.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration as StdDuration;

use time::Duration;
use time::macros::datetime;
use whistle_api::{Clock, ManualClock};
use whistle_store::Store;

use crate::harness::read_log;
use crate::support::{AppOptions, Backend, TestApp, spawn_app_with};

async fn node(b: &Backend, clock: &ManualClock) -> TestApp {
    spawn_app_with(
        b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: true,
            ..AppOptions::default()
        },
    )
    .await
}

/// Waits (bounded) until nothing is due at `now`.
async fn settle(store: &Store, now: time::OffsetDateTime) {
    for _ in 0..1200 {
        let (_, next) = store.deadline_summary().await.expect("summary");
        if next.is_none_or(|n| n > now) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("deadlines due at {now} were not fired within 60 s");
}

/// Per case: how many times each clock event (type and payload) is in the log.
async fn fires(store: &Store) -> BTreeMap<String, HashMap<(String, String), usize>> {
    let mut out = BTreeMap::new();
    for (stream, events) in read_log(store).await {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for e in events.iter().filter(|e| {
            matches!(
                e.event_type.as_str(),
                "MilestoneWarned" | "MilestoneBreached" | "CaseEscalated"
            )
        }) {
            *seen
                .entry((e.event_type.clone(), e.payload.to_string()))
                .or_default() += 1;
        }
        out.insert(stream, seen);
    }
    out
}

fn count(seen: &HashMap<(String, String), usize>, event_type: &str) -> usize {
    seen.iter()
        .filter(|((t, _), _)| t == event_type)
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_clock_jump_fires_each_due_deadline_once() {
    let Some(b) = Backend::postgres("faults::clock_jump").await else {
        return;
    };
    let t0 = datetime!(2026-03-02 09:00:00 +08:00);
    let clock = ManualClock::new(t0);
    let a = node(&b, &clock).await;
    let bn = node(&b, &clock).await;
    let gw_a = a.client("gw-lin").await;
    let gw_b = bn.client("gw-lin").await;
    for i in 0..100 {
        let gw = if i % 2 == 0 { &gw_a } else { &gw_b };
        gw.report_ok("leak_from_above", "hongqi-jiayuan-b3-u2")
            .await;
    }
    let store = b.store().await;

    // Three days at once: respond (8 min) and resolve (1 day) are both past due.
    clock.set(t0 + Duration::days(3));
    settle(&store, clock.now()).await;
    let first = fires(&store).await;
    assert_eq!(first.len(), 100);
    for (case, seen) in &first {
        assert!(seen.values().all(|n| *n == 1), "{case}: {seen:?}");
        assert_eq!(count(seen, "CaseEscalated"), 1, "{case}: one rung up");
        assert_eq!(
            count(seen, "MilestoneBreached"),
            2,
            "{case}: respond and resolve"
        );
    }

    // A day later: the respond clock the escalation started is past due too.
    clock.set(t0 + Duration::days(4));
    settle(&store, clock.now()).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    for (case, seen) in fires(&store).await {
        assert!(seen.values().all(|n| *n == 1), "{case}: {seen:?}");
        assert_eq!(count(&seen, "CaseEscalated"), 2, "{case}: two rungs up");
        assert_eq!(count(&seen, "MilestoneBreached"), 3, "{case}");
    }
    a.stop().await;
    bn.stop().await;
    store.close().await;
}
