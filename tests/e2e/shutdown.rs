//! Graceful shutdown: SIGTERM to the real binary under load answers every request the
//! server accepted and exits 0; what was acknowledged is in the log after a restart, and
//! what failed was never accepted. In-process (PostgreSQL, a table lock holding a
//! request in flight): `/readyz` says "draining" while that request is still answered,
//! and a drain that cannot finish is abandoned at its timeout.

use crate::both_backends;
use crate::support::{
    Backend, Client, Lifecycle, Served, http_get, spawn_app, spawn_app_lifecycle,
};
use sqlx::Connection;
use std::error::Error as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;
use whistle_proto::v1 as pb;

both_backends!(sigterm_under_load_answers_what_was_accepted_and_exits_zero);

const CLIENTS: usize = 16;
/// Reports answered before SIGTERM is sent, so that it lands in the middle of the load.
const BEFORE_SIGTERM: usize = 64;

fn token(data_dir: &Path, id: &str) -> String {
    whistle_server::demo::token_for(data_dir, id).expect("demo token")
}

/// The report every test here makes, under an idempotency key.
async fn report(gw: &Client, key: &str) -> Result<pb::ReportCaseResponse, tonic::Status> {
    gw.report(
        "leak_from_above",
        "hongqi-jiayuan-b3-u2",
        "water through the ceiling",
        key,
    )
    .await
}

/// Polls until `done()`, panicking with `what` after 60 s (a hang guard, not a timing
/// assertion).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm_under_load_answers_what_was_accepted_and_exits_zero(b: Backend) {
    let data_dir = b.data_dir();
    let url = b.url();
    // The per-principal rate limit would turn this load into RESOURCE_EXHAUSTED.
    let config = data_dir.join("whistle.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_second = 1000000.0\nburst = 1000000\n",
    )
    .expect("config file");
    let config = config.display().to_string();
    let mut server = Served::start(&data_dir, &url, &["--config", &config]);
    eventually("the binary reports itself ready", async || {
        http_get(server.http, "/readyz").await.0 == 200
    })
    .await;
    let gw_token = token(&data_dir, "gw-lin");

    let answered = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (answered, acked) = (answered.clone(), acked.clone());
        let gw = Client::connect(server.addr, &gw_token).await;
        clients.push(tokio::spawn(async move {
            // Each client reports until the server is gone; its last request fails.
            for n in 0.. {
                let key = format!("drain-{c}-{n}");
                match report(&gw, &key).await {
                    Ok(r) => {
                        let id = r.ack.expect("ack").case_id;
                        acked.lock().expect("acked").push((key, id));
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return (key, e),
                }
            }
            unreachable!("the loop ends with the server")
        }));
    }
    eventually("reports answered before SIGTERM", async || {
        answered.load(Ordering::Relaxed) >= BEFORE_SIGTERM
    })
    .await;
    let status = server.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    let mut failed = Vec::new();
    for client in clients {
        let (key, e) = tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("a client ends once the server is gone")
            .expect("client task");
        // UNAVAILABLE, or a status the client library made from a transport failure (it
        // carries that error as its source); never one the server answered with.
        assert!(
            e.code() == Code::Unavailable || e.source().is_some(),
            "{key}: {e:?}"
        );
        failed.push(key);
    }
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    assert!(acked.len() >= BEFORE_SIGTERM);

    drop(server);
    let server = Served::start(&data_dir, &url, &["--config", &config]);
    let gw = Client::connect(server.addr, &gw_token).await;
    for (key, id) in &acked {
        let case = gw.get(id).await.unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_eq!(&case.case_id, id);
    }
    // The failed requests were never accepted: retried with their keys they report a
    // new case (an accepted one would be replayed).
    for key in &failed {
        let retry = report(&gw, key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert!(
            !retry.ack.expect("ack").replayed,
            "{key} failed at the client but was committed"
        );
    }
    // And an acknowledged one is replayed, not reported twice.
    let (key, id) = &acked[0];
    let again = report(&gw, key).await.expect("retry").ack.expect("ack");
    assert!(again.replayed);
    assert_eq!(&again.case_id, id);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A transaction holding `case_views` exclusively: a report blocks inside its append
/// (the view is written in the same transaction) until it ends.
struct ViewsLocked {
    conn: sqlx::PgConnection,
    url: String,
}

impl ViewsLocked {
    async fn take(url: &str) -> ViewsLocked {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        for sql in ["BEGIN", "LOCK TABLE case_views IN ACCESS EXCLUSIVE MODE"] {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
        }
        ViewsLocked {
            conn,
            url: url.to_string(),
        }
    }

    /// Backends of the database waiting for the lock on `case_views`.
    async fn waiting(&self) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%case_views%'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        let _ = conn.close().await;
        n
    }

    async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .expect("ROLLBACK");
        let _ = self.conn.close().await;
    }
}

/// A report held in flight by the lock: shutdown turns /readyz to 503 "draining" at
/// once, and the report is still answered (and committed) before the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_answers_the_request_in_flight_and_readyz_says_so() {
    let Some(b) = Backend::postgres("shutdown::draining_answers_the_request_in_flight").await
    else {
        return;
    };
    let mut app = spawn_app(&b).await;
    assert_eq!(http_get(app.http, "/readyz").await.0, 200);
    let lock = ViewsLocked::take(&b.url()).await;
    let gw = app.client("gw-lin").await;
    let in_flight = tokio::spawn(async move { report(&gw, "held-1").await.map(|_| ()) });
    eventually("the report waits for the lock", async || {
        lock.waiting().await >= 1
    })
    .await;

    app.begin_shutdown();
    eventually("/readyz says draining", async || {
        let (status, body) = http_get(app.http, "/readyz").await;
        assert!(status == 200 || status == 503, "{status} {body}");
        status == 503 && body.contains("draining")
    })
    .await;
    assert!(!in_flight.is_finished(), "the report is still in flight");
    lock.release().await;
    tokio::time::timeout(Duration::from_secs(60), in_flight)
        .await
        .expect("answered")
        .expect("task")
        .expect("the request in flight is answered OK");
    tokio::time::timeout(Duration::from_secs(60), app.stop())
        .await
        .expect("the drain ends");

    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let retry = report(&gw, "held-1").await.expect("retry");
    assert!(
        retry.ack.expect("ack").replayed,
        "the answered report was committed"
    );
    app.stop().await;
}

/// A request that cannot finish does not hold the process: at the drain timeout it is
/// abandoned and `run_until_stopped` returns `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_finish_is_abandoned_at_its_timeout() {
    let Some(b) = Backend::postgres("shutdown::a_drain_that_cannot_finish_is_abandoned").await
    else {
        return;
    };
    let app = spawn_app_lifecycle(
        &b,
        Lifecycle {
            drain_timeout: Some(Duration::from_secs(1)),
            ..Lifecycle::default()
        },
    )
    .await;
    let lock = ViewsLocked::take(&b.url()).await;
    let gw = app.client("gw-lin").await;
    let in_flight = tokio::spawn(async move { report(&gw, "stuck-1").await.map(|_| ()) });
    eventually("the report waits for the lock", async || {
        lock.waiting().await >= 1
    })
    .await;
    // `stop` asserts that the server returned Ok; the deadline only guards a hang.
    tokio::time::timeout(Duration::from_secs(120), app.stop())
        .await
        .expect("the drain gave up at its timeout");
    assert!(
        lock.waiting().await >= 1,
        "the request was abandoned, not answered"
    );
    lock.release().await;
    in_flight.abort();
}
