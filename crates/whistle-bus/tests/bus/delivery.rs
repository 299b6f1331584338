//! Delivery: 10,000 cases reported while two departments consume from NATS; each
//! receives exactly the events routed to it, in per-case order, nothing missing or
//! doubled after de-duplication by event id.

use std::sync::Arc;
use std::time::Duration;

use whistle_bus::Relay;
use whistle_bus::subject::department_filter;
use whistle_bus::testing::NatsServer;
use whistle_store::testing::PgTestDb;

use crate::support::*;

const CASES: usize = 10_000;
const WRITERS: usize = 16;
const COMPOUNDS: [&str; 4] = [
    "hongqi-jiayuan-b1",
    "heping-beili-b2",
    "binhe-xiaoqu-b1",
    "liuyin-gongyu-b2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cases_two_departments_each_get_exactly_their_events_in_case_order() {
    let test = "delivery::ten_thousand_cases_two_departments";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let Some(db) = PgTestDb::create(test).await else {
        return;
    };
    eprintln!("{test}: {}", whistle_bus::testing::version());
    let store = Arc::new(db.store().await);
    let relay = Relay::spawn(store.clone(), relay_config(&nats.url(), "CASES_10K"));
    let js = jetstream(&nats.url()).await;
    wait_stream(&js, "CASES_10K").await;

    // Both departments consume while the cases are being reported; each stops once it
    // has as many distinct events as the log routes to it (known after writing).
    use std::sync::atomic::{AtomicUsize, Ordering};
    let targets: Vec<Arc<AtomicUsize>> = (0..2)
        .map(|_| Arc::new(AtomicUsize::new(usize::MAX)))
        .collect();
    let consumers: Vec<_> = ["fire", "gas"]
        .into_iter()
        .zip(targets.iter().cloned())
        .map(|(dept, target)| {
            let js = js.clone();
            tokio::spawn(async move {
                consume(
                    &js,
                    "CASES_10K",
                    &format!("dept-{dept}"),
                    &department_filter(DISTRICT, dept),
                    Duration::from_secs(240),
                    move |seen| unique_ids(seen).len() >= target.load(Ordering::Relaxed),
                )
                .await
            })
        })
        .collect();

    // 10,000 cases from 16 concurrent writers: every 4th stays at NEIGHBOUR (routed to
    // no department), the others are escalated to fire or gas and signed for.
    let cases = Cases::new(store.clone());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let cases = cases.clone();
            tokio::spawn(async move {
                for i in (w..CASES).step_by(WRITERS) {
                    let location = COMPOUNDS[i % COMPOUNDS.len()];
                    match i % 4 {
                        0 => {
                            cases
                                .report("leak_from_above", &format!("{location}-u1"))
                                .await;
                        }
                        1 | 3 => {
                            cases.escalated_to("fire", location).await;
                        }
                        _ => {
                            cases.escalated_to("gas", location).await;
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let (routes, total) = expected_routes(&store).await;
    assert_eq!(total, CASES / 4 + 3 * (CASES - CASES / 4), "events written");
    let fire = routes.get("fire").cloned().unwrap_or_default();
    let gas = routes.get("gas").cloned().unwrap_or_default();
    // Departments only see the dispatch and the signing-for; the report goes to `_`.
    assert_eq!(fire.len(), 2 * CASES / 2);
    assert_eq!(gas.len(), 2 * CASES / 4);
    wait_caught_up(&store, &relay.status(), Duration::from_secs(120)).await;

    targets[0].store(fire.len(), Ordering::Relaxed);
    targets[1].store(gas.len(), Ordering::Relaxed);
    let mut results = Vec::new();
    for c in consumers {
        results.push(c.await.expect("consumer task"));
    }
    for (dept, seen, expected) in [("fire", &results[0], &fire), ("gas", &results[1], &gas)] {
        let ids = unique_ids(seen);
        let mut got = ids.clone();
        got.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(got.len(), want.len(), "{dept}: distinct events received");
        assert_eq!(got, want, "{dept}: exactly the events routed to it");
        assert!(
            seen.iter()
                .all(|s| s.subject.split('.').nth(3) == Some(dept)),
            "{dept}: only its own subjects"
        );
        assert_case_order(seen);
        eprintln!(
            "{dept}: {} deliveries, {} distinct events",
            seen.len(),
            ids.len()
        );
    }
    relay.stop().await;
}
