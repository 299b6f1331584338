//! PostgreSQL-specific behaviour: several processes on one database, and the
//! database going away.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::task::JoinSet;
use whistle_store::testing::{PgTestDb, test_config};
use whistle_store::{AppendOutcome, EventStore, ExpectedVersion, Store, StoreError, StreamId};

use crate::support::{append_one, events, new_stream, read_everything, req};
use whistle_store::testing::Proxy;

const NODES: usize = 4;
const WRITERS_PER_NODE: usize = 8;
const UNITS_PER_WRITER: usize = 120;
const STREAMS: usize = 24;

/// Four stores (four pools, like four `whistle` processes) append
/// concurrently, each to streams of its own, while a reader follows
/// `read_all(cursor, 100)`. The reader must see every event exactly once, in
/// strictly increasing position, and what it saw must equal the table.
/// Without the advisory lock, positions drawn by one node become visible
/// before smaller positions of another node commit, and the reader skips
/// them (verified: it then saw ~90 % of the events, in every run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_commit_in_position_order() {
    let Some(db) =
        PgTestDb::create("postgres_only::concurrent_nodes_commit_in_position_order").await
    else {
        return;
    };
    concurrent_nodes(&db, StreamSharing::PerNode).await;
}

/// The same with all nodes appending to the same streams: the versions each
/// node decides in memory must account for the other nodes' commits
/// (without the lock: unique violations on (stream_id, version)).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_share_streams() {
    let Some(db) = PgTestDb::create("postgres_only::concurrent_nodes_share_streams").await else {
        return;
    };
    concurrent_nodes(&db, StreamSharing::Shared).await;
}

#[derive(Clone, Copy)]
enum StreamSharing {
    PerNode,
    Shared,
}

async fn concurrent_nodes(db: &PgTestDb, sharing: StreamSharing) {
    let mut nodes: Vec<Store> = Vec::new();
    for _ in 0..NODES {
        nodes.push(db.store().await);
    }
    let streams: Arc<Vec<StreamId>> = Arc::new((0..STREAMS).map(|_| new_stream()).collect());
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let store = nodes[0].clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut cursor = 0_i64;
            let mut seen = Vec::new();
            loop {
                // Read `done` BEFORE the page: an empty page read after every
                // append was acknowledged means the reader has drained the log.
                let finished = done.load(Ordering::Acquire);
                let page = store.read_all(cursor, 100).await.expect("read_all");
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for e in page {
                    assert!(
                        e.position > cursor,
                        "position {} after cursor {cursor}",
                        e.position
                    );
                    cursor = e.position;
                    seen.push((e.position, e.event_id));
                }
            }
        })
    };

    let mut writers = JoinSet::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..WRITERS_PER_NODE {
            let store = node.clone();
            let streams = Arc::clone(&streams);
            writers.spawn(async move {
                // A small deterministic pseudo-random walk over the streams.
                let mut x = (n * WRITERS_PER_NODE + w) as u64 * 2_654_435_761 + 1;
                let mut appended = Vec::with_capacity(UNITS_PER_WRITER);
                for _ in 0..UNITS_PER_WRITER {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let pick = (x >> 33) as usize;
                    let stream = match sharing {
                        StreamSharing::Shared => &streams[pick % STREAMS],
                        StreamSharing::PerNode => {
                            let per = STREAMS / NODES;
                            &streams[n * per + pick % per]
                        }
                    };
                    let n_events = 1 + (x >> 20) as usize % 3;
                    let outcome =
                        append_one(&store, req(stream, ExpectedVersion::Any, events(n_events)))
                            .await
                            .unwrap_or_else(|e| panic!("append on node {n}: {e}"));
                    let AppendOutcome::Appended(a) = outcome else {
                        panic!("unexpected duplicate: {outcome:?}");
                    };
                    appended.push((a, n_events));
                }
                appended
            });
        }
    }
    let mut acknowledged = Vec::new();
    while let Some(joined) = writers.join_next().await {
        acknowledged.extend(joined.expect("writer"));
    }
    done.store(true, Ordering::Release);
    let seen = reader.await.expect("reader");

    let expected_events: usize = acknowledged.iter().map(|(_, n)| n).sum();
    let table = read_everything(&nodes[1], 1000).await;
    assert_eq!(
        table.len(),
        expected_events,
        "table holds every acknowledged event"
    );
    assert_eq!(
        seen.len(),
        table.len(),
        "the follower saw {} of {} events: it skipped rows that committed late",
        seen.len(),
        table.len()
    );
    let table_pairs: Vec<(i64, uuid::Uuid)> =
        table.iter().map(|e| (e.position, e.event_id)).collect();
    assert_eq!(
        seen, table_pairs,
        "the follower saw exactly the table, in order"
    );
    let distinct: HashSet<uuid::Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), seen.len(), "no event seen twice");

    // Versions per stream are contiguous and follow positions.
    let mut per_stream: BTreeMap<&str, Vec<(u64, i64)>> = BTreeMap::new();
    for e in &table {
        per_stream
            .entry(e.stream.as_str())
            .or_default()
            .push((e.version, e.position));
    }
    for (stream, rows) in &per_stream {
        let versions: Vec<u64> = rows.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            versions,
            (1..=rows.len() as u64).collect::<Vec<_>>(),
            "{stream}"
        );
    }
    // Every acknowledged append is in the table where it said it was.
    let by_position: std::collections::HashMap<i64, (&str, u64)> = table
        .iter()
        .map(|e| (e.position, (e.stream.as_str(), e.version)))
        .collect();
    for (a, n) in &acknowledged {
        assert_eq!(a.last_version - a.first_version + 1, *n as u64);
        assert_eq!(
            by_position.get(&a.first_position),
            Some(&(a.stream.as_str(), a.first_version))
        );
        assert_eq!(
            by_position.get(&a.last_position),
            Some(&(a.stream.as_str(), a.last_version))
        );
    }
    let units: u64 = nodes.iter().map(|s| s.stats().units).sum();
    let batches: u64 = nodes.iter().map(|s| s.stats().batches).sum();
    assert_eq!(units, (NODES * WRITERS_PER_NODE * UNITS_PER_WRITER) as u64);
    assert!(
        batches < units,
        "no grouping: {batches} batches for {units} units"
    );
    for node in &nodes {
        node.close().await;
    }
}

/// The address of the server behind a database URL.
async fn server_addr(url: &str) -> std::net::SocketAddr {
    let options = PgConnectOptions::from_str(url).expect("url");
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

/// The database goes away (the proxy in front of it closes every connection
/// and stops listening): appends and reads fail with `Unavailable`, nothing
/// is written, and once it is back the same store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_while_the_database_is_gone_then_recovers() {
    let Some(db) =
        PgTestDb::create("postgres_only::unavailable_while_the_database_is_gone_then_recovers")
            .await
    else {
        return;
    };
    let direct = db.store().await;
    let mut proxy = Proxy::start(server_addr(db.url()).await).await;
    let proxied_url = PgConnectOptions::from_str(db.url())
        .expect("url")
        .host("127.0.0.1")
        .port(proxy.addr().port())
        .to_url_lossy()
        .to_string();
    let mut cfg = test_config(&proxied_url);
    cfg.acquire_timeout = Duration::from_millis(1500);
    let store = Store::connect(&cfg).await.expect("connect through proxy");

    let s = new_stream();
    append_one(&store, req(&s, ExpectedVersion::NoStream, events(1)))
        .await
        .expect("append while up");
    assert_eq!(
        store.read_stream(&s, 0).await.expect("read while up").len(),
        1
    );

    proxy.stop().await;
    let retry = req(&s, ExpectedVersion::Exact(1), events(1));
    let err = append_one(&store, retry.clone())
        .await
        .expect_err("append while down");
    assert!(matches!(err, StoreError::Unavailable(_)), "append: {err:?}");
    let err = store.read_stream(&s, 0).await.expect_err("read while down");
    assert!(matches!(err, StoreError::Unavailable(_)), "read: {err:?}");
    let err = store.count_events().await.expect_err("count while down");
    assert!(matches!(err, StoreError::Unavailable(_)), "count: {err:?}");
    assert_eq!(
        direct.count_events().await.expect("direct count"),
        1,
        "nothing written"
    );
    assert!(store.stats().failed_batches >= 1);

    proxy.restart().await;
    let outcome = append_one(&store, retry)
        .await
        .expect("append after recovery");
    assert_eq!(outcome.appended().first_version, 2);
    assert_eq!(
        store
            .read_stream(&s, 0)
            .await
            .expect("read after recovery")
            .len(),
        2
    );
    store.close().await;
    direct.close().await;
    proxy.stop().await;
}

/// The server drops every connection of the store (`pg_terminate_backend`,
/// as on a restart or failover): the next append and read succeed
/// transparently on fresh connections, because a statement that failed on a
/// broken connection before COMMIT is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced_transparently() {
    let Some(db) =
        PgTestDb::create("postgres_only::terminated_connections_are_replaced_transparently").await
    else {
        return;
    };
    let store = db.store().await;
    let s = new_stream();
    append_one(&store, req(&s, ExpectedVersion::NoStream, events(1)))
        .await
        .expect("append");
    assert_eq!(store.read_stream(&s, 0).await.expect("read").len(), 1);

    let mut admin = PgConnection::connect(db.admin_url()).await.expect("admin");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db.name())
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(
        terminated.len() >= 2,
        "read and write connections: {terminated:?}"
    );
    // Wait until the backends are gone, so the store's connections are dead.
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(db.name())
                .fetch_one(&mut admin)
                .await
                .expect("count backends");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = admin.close().await;

    let outcome = append_one(&store, req(&s, ExpectedVersion::Exact(1), events(1)))
        .await
        .expect("append after the connections were terminated");
    assert_eq!(outcome.appended().first_version, 2);
    assert_eq!(store.read_stream(&s, 0).await.expect("read").len(), 2);
    assert_eq!(store.count_events().await.expect("count"), 2);
    store.close().await;
}

/// Connecting to a port nobody listens on fails with `Unavailable` (after the
/// acquire timeout), not with a panic or a configuration error. Needs no server.
#[tokio::test]
async fn connecting_to_a_closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = test_config(&format!("postgres://root@127.0.0.1:{port}/whistle"));
    cfg.acquire_timeout = Duration::from_millis(300);
    match Store::connect(&cfg).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, got a store"),
    }
}
