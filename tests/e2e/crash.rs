//! Crash safety with the real binary: a command acknowledged to the client survives
//! SIGKILL of the server, and a retried report with the same idempotency key neither
//! loses nor duplicates the case.

use crate::both_backends;
use crate::support::{Backend, Client, Served};
use std::path::Path;
use whistle_store::EventStore;

both_backends!(sigkill_right_after_acknowledgement_loses_nothing);

fn token(data_dir: &Path, id: &str) -> String {
    whistle_server::demo::token_for(data_dir, id).expect("demo token")
}

async fn sigkill_right_after_acknowledgement_loses_nothing(b: Backend) {
    let data_dir = b.data_dir();
    let url = b.url();
    let store = b.store().await;

    let server = Served::start(&data_dir, &url, &[]);
    let gw = Client::connect(server.addr, &token(&data_dir, "gw-lin")).await;
    let wang = Client::connect(server.addr, &token(&data_dir, "h-wang")).await;
    let first = gw
        .report(
            "leak_from_above",
            "hongqi-jiayuan-b3-u2",
            "ceiling dripping",
            "crash-key-1",
        )
        .await
        .expect("report")
        .ack
        .expect("ack");
    wang.ack(&first.case_id).await.expect("signed for");
    let reported = gw
        .report(
            "corridor_clutter",
            "hongqi-jiayuan-b3-u1",
            "boxes on the stairs",
            "crash-key-2",
        )
        .await
        .expect("report")
        .ack
        .expect("ack");
    // Killed the instant the last acknowledgement reached the client.
    server.kill();
    let committed = store.count_events().await.expect("count");

    let server = Served::start(&data_dir, &url, &[]);
    let gw = Client::connect(server.addr, &token(&data_dir, "gw-lin")).await;
    let t = gw.timeline(&first.case_id).await;
    assert_eq!(
        crate::support::case_events(&t),
        ["CaseReported", "CaseAssigned", "CaseAcknowledged"]
    );
    let signed = t
        .entries
        .iter()
        .find(|e| e.event_type == "CaseAcknowledged")
        .expect("signed");
    assert_eq!(
        signed.actor.as_ref().map(|a| a.principal_id.as_str()),
        Some("h-wang")
    );
    let second = gw.timeline(&reported.case_id).await;
    assert_eq!(
        second.entries.first().map(|e| e.event_type.as_str()),
        Some("CaseReported")
    );
    assert_eq!(
        committed,
        (t.entries.len() + second.entries.len()) as u64,
        "every acknowledged event is there, nothing else"
    );

    // The client never saw an answer (say) and retries: same case, nothing added.
    let retry = gw
        .report(
            "corridor_clutter",
            "hongqi-jiayuan-b3-u1",
            "boxes on the stairs",
            "crash-key-2",
        )
        .await
        .expect("retry")
        .ack
        .expect("ack");
    assert_eq!(retry.case_id, reported.case_id);
    assert!(retry.replayed);
    assert_eq!(store.count_events().await.expect("count"), committed);
    drop(server);
    store.close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

mod database_outage {
    use crate::support::{Backend, spawn_app_at};
    use tonic::Code;
    use whistle_store::EventStore;
    use whistle_store::testing::Proxy;

    /// PostgreSQL goes away under a running server: requests get UNAVAILABLE and write
    /// nothing; when it comes back the same server serves again, and the client's retry
    /// with its idempotency key reports the case exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(b) = Backend::postgres("crash::database_outage::postgres").await else {
            return;
        };
        let url = b.url();
        let upstream = "127.0.0.1:5432".parse().expect("addr");
        let mut proxy = Proxy::start(upstream).await;
        let via_proxy = url.replacen("127.0.0.1:5432", &proxy.addr().to_string(), 1);
        assert_ne!(
            via_proxy, url,
            "test database URL must name 127.0.0.1:5432: {url}"
        );
        let app = spawn_app_at(&b, &via_proxy).await;
        let direct = b.store().await;
        let gw = app.client("gw-lin").await;
        gw.report_ok("sanitation", "binhe-xiaoqu").await;
        let before = direct.count_events().await.expect("count");
        assert!(before > 0);

        proxy.stop().await;
        let (status, body) = crate::support::http_get(app.http, "/readyz").await;
        assert_eq!(status, 503, "not ready while the database is away: {body}");
        for attempt in 0..3 {
            let e = gw
                .report(
                    "sanitation",
                    "binhe-xiaoqu-b2",
                    "overflowing bins",
                    "outage-1",
                )
                .await
                .expect_err("database is away");
            assert_eq!(e.code(), Code::Unavailable, "attempt {attempt}: {e:?}");
            let e = gw
                .get("01a20025-9a2b-764d-8c6b-310fc0c68a86")
                .await
                .expect_err("reads too");
            assert_eq!(e.code(), Code::Unavailable, "attempt {attempt}: {e:?}");
        }
        assert_eq!(
            direct.count_events().await.expect("count"),
            before,
            "nothing written"
        );

        proxy.restart().await;
        let mut retried = None;
        for _ in 0..50 {
            match gw
                .report(
                    "sanitation",
                    "binhe-xiaoqu-b2",
                    "overflowing bins",
                    "outage-1",
                )
                .await
            {
                Ok(r) => {
                    retried = Some(r);
                    break;
                }
                Err(e) if e.code() == Code::Unavailable => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        let retried = retried.expect("the server recovered by itself");
        let (status, body) = crate::support::http_get(app.http, "/readyz").await;
        assert_eq!(status, 200, "ready again: {body}");
        let again = gw
            .report(
                "sanitation",
                "binhe-xiaoqu-b2",
                "overflowing bins",
                "outage-1",
            )
            .await
            .expect("retry");
        let id = retried.ack.expect("ack").case_id;
        assert_eq!(id, again.ack.expect("ack").case_id);
        let new_events = gw.timeline(&id).await.entries.len() as u64;
        assert_eq!(
            direct.count_events().await.expect("count"),
            before + new_events
        );
        app.stop().await;
        direct.close().await;
    }
}
