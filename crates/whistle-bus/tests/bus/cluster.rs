//! A three-node JetStream cluster on loopback with an R3 stream keeps delivering when
//! the node leading the stream is killed: the relay and a department consumer ride
//! through the leader election, and the department ends with every event routed to
//! it, once each after de-duplication, in per-case order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use whistle_bus::Relay;
use whistle_bus::subject::department_filter;
use whistle_bus::testing::Cluster;
use whistle_store::testing::SqliteTestDb;
use whistle_store::{EventStore, Store};

use crate::support::*;

/// Pulls (tolerating errors while the cluster re-elects) until `want` distinct events.
async fn consume_tolerant(url: &str, stream: &str, filter: &str, want: usize) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out: Vec<Seen> = Vec::new();
    let js = jetstream(url).await;
    while unique_ids(&out).len() < want {
        assert!(
            Instant::now() < deadline,
            "department got {} of {want}",
            unique_ids(&out).len()
        );
        let consumer: Result<consumer::PullConsumer, _> = async {
            js.get_stream(stream)
                .await
                .map_err(|e| e.to_string())?
                .get_or_create_consumer(
                    "dept-fire",
                    consumer::pull::Config {
                        durable_name: Some("dept-fire".into()),
                        filter_subject: filter.to_owned(),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let Ok(consumer) = consumer else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Ok(mut batch) = consumer
            .fetch()
            .max_messages(200)
            .expires(Duration::from_millis(500))
            .messages()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(m)) = batch.next().await {
            out.push(seen(&m));
            let _ = m.ack().await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_keeps_delivering_with_one_node_killed() {
    let test = "cluster::an_r3_stream_keeps_delivering_with_one_node_killed";
    init_tracing();
    let Some(mut cluster) = Cluster::start(test, 3) else {
        return;
    };
    let db = SqliteTestDb::new();
    let store: Arc<Store> = Arc::new(db.store().await);
    let mut cfg = relay_config(&cluster.url(), "CASES_R3");
    cfg.stream.replicas = 3;
    let relay = Relay::spawn(store.clone(), cfg);
    let cases = Cases::new(store.clone());
    for i in 0..100 {
        cases
            .escalated_to(if i % 2 == 0 { "fire" } else { "gas" }, "hongqi-jiayuan-b1")
            .await;
    }
    wait_caught_up(&store, &relay.status(), Duration::from_secs(120)).await;

    // Kill the node leading the stream, then keep reporting.
    let js = jetstream(&cluster.url()).await;
    let mut stream = wait_stream(&js, "CASES_R3").await;
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    let index = (0..cluster.nodes.len())
        .find(|i| leader == format!("node-{i}"))
        .expect("leader is one of the nodes");
    cluster.nodes[index].kill();
    eprintln!("{test}: killed the stream leader {leader}");
    for i in 0..100 {
        cases
            .escalated_to(if i % 2 == 0 { "fire" } else { "gas" }, "heping-beili-b1")
            .await;
    }
    wait_caught_up(&store, &relay.status(), Duration::from_secs(120)).await;
    relay.stop().await;

    let (routes, _) = expected_routes(&store).await;
    let fire = routes.get("fire").cloned().unwrap_or_default();
    assert_eq!(
        fire.len(),
        200,
        "100 fire cases, dispatch and sign-for each"
    );
    let survivors = cluster
        .nodes
        .iter_mut()
        .filter_map(|n| n.is_running().then(|| n.url()))
        .collect::<Vec<_>>()
        .join(",");
    let got = consume_tolerant(
        &survivors,
        "CASES_R3",
        &department_filter(DISTRICT, "fire"),
        fire.len(),
    )
    .await;
    let mut ids = unique_ids(&got);
    ids.sort();
    let mut want = fire.clone();
    want.sort();
    assert_eq!(ids, want, "the fire brigade got exactly its events");
    assert_case_order(&got);
    assert_eq!(
        store.count_events().await.expect("count"),
        600,
        "200 cases × 3 events"
    );
}
