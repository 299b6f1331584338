//! The HTTP side: liveness, readiness and Prometheus metrics that move with the work.
//! Readiness waits for the SLA projector's catch-up and, with NATS, for the stream this
//! node provisions; NATS going away afterwards leaves the node ready.

use crate::both_backends;
use crate::support::{Backend, Client, Lifecycle, http_get, spawn_app, spawn_app_lifecycle};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use whistle_store::{EventStore, ReadModel};

both_backends!(
    health_readiness_and_metrics_are_served_over_http,
    readiness_waits_for_the_projector_to_catch_up_with_the_log,
    readiness_waits_for_the_nats_stream_but_not_for_nats_later,
);

/// Polls `/readyz` until `done(status, body)`; every answer before must pass `check`.
async fn poll_readyz(
    http: SocketAddr,
    what: &str,
    check: impl Fn(u16, &str),
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(http, "/readyz").await;
        if done(status, &body) {
            return (status, body);
        }
        check(status, &body);
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first sample line that contains every fragment.
fn sample(text: &str, fragments: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| fragments.iter().all(|f| l.contains(f)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn health_readiness_and_metrics_are_served_over_http(b: Backend) {
    let app = spawn_app(&b).await;
    assert_eq!(
        http_get(app.http, "/healthz").await,
        (200, "ok\n".to_string())
    );
    let (status, body) = http_get(app.http, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    let gw = app.client("gw-lin").await;
    let before = http_get(app.http, "/metrics").await.1;
    let reports = |t: &str| {
        sample(
            t,
            &[
                "whistle_rpc_requests_total{",
                "IntakeService/ReportCase",
                "code=\"OK\"",
            ],
        )
        .unwrap_or(0.0)
    };
    let denied = |t: &str| {
        sample(t, &["whistle_denied_total{", "reason=\"unauthenticated\""]).unwrap_or(0.0)
    };
    gw.report_ok("sanitation", "binhe-mingju").await;
    gw.report_ok("sanitation", "binhe-mingju-b2").await;
    let forged = Client::connect(app.addr, "not-a-token").await;
    forged
        .report("sanitation", "binhe-mingju", "x", "")
        .await
        .expect_err("bad token");
    let e = gw.get("not-a-uuid").await.expect_err("bad id");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let (status, after) = http_get(app.http, "/metrics").await;
    assert_eq!(status, 200);
    // Other tests in this process share the recorder: compare deltas, at least ours.
    assert!(reports(&after) - reports(&before) >= 2.0, "{after}");
    assert!(denied(&after) - denied(&before) >= 1.0, "{after}");
    assert!(
        sample(
            &after,
            &[
                "whistle_rpc_requests_total{",
                "CaseQueryService/GetCase",
                "code=\"INVALID_ARGUMENT\""
            ]
        )
        .is_some(),
        "{after}"
    );
    assert!(
        after.contains("whistle_rpc_duration_seconds_bucket{"),
        "{after}"
    );
    assert!(
        after.contains("whistle_append_duration_seconds_bucket{"),
        "{after}"
    );
    assert!(
        sample(&after, &["whistle_deadlines_pending"]).is_some_and(|v| v >= 4.0),
        "two cases, respond and resolve each"
    );
    assert!(sample(&after, &["whistle_log_head_position"]).is_some_and(|v| v > 0.0));
    assert!(sample(&after, &["whistle_store_batches_total"]).is_some_and(|v| v >= 1.0));
    app.stop().await;
}

/// A node started on a log whose SLA projection is behind (reset, as after `whistle
/// rebuild` or an upgrade) is ready only once the projector reached the head it saw.
async fn readiness_waits_for_the_projector_to_catch_up_with_the_log(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    for i in 0..20 {
        let location = if i % 2 == 0 {
            "binhe-mingju"
        } else {
            "binhe-mingju-b2"
        };
        gw.report_ok("sanitation", location).await;
    }
    app.stop().await;
    let direct = b.store().await;
    let head = direct.head_position().await.expect("head");
    direct
        .reset_read_model(ReadModel::Sla, whistle_projections::SLA_PROJECTION)
        .await
        .expect("reset the SLA projection");

    // `spawn_app` returns once the node reports itself ready.
    let app = spawn_app(&b).await;
    assert!(app.readiness.missing().is_empty());
    let (status, body) = http_get(app.http, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, format!("ready: log head {head}\n").as_str())
    );
    let reached = direct
        .load_checkpoint(whistle_projections::SLA_PROJECTION)
        .await
        .expect("checkpoint")
        .expect("the projector saved its checkpoint")
        .position;
    assert!(reached >= head, "ready at {reached} before the head {head}");
    app.stop().await;
    direct.close().await;
}

/// With `--nats-url` a node is not ready until it has provisioned the stream itself —
/// 503 naming NATS while nothing listens there — and ready once NATS comes; a standby
/// node (the other holds the relay's lease) too. NATS going away later does not take
/// it out of the load balancer.
async fn readiness_waits_for_the_nats_stream_but_not_for_nats_later(b: Backend) {
    let test = "http::readiness_waits_for_the_nats_stream_but_not_for_nats_later";
    if !whistle_bus::testing::available(test) {
        return;
    }
    let port = whistle_bus::testing::free_port();
    let lifecycle = Lifecycle {
        nats: Some(format!("nats://127.0.0.1:{port}")),
        ..Lifecycle::default()
    };
    let mut apps = vec![spawn_app_lifecycle(&b, lifecycle.clone()).await];
    // Two nodes share the relay's lease on PostgreSQL only (SQLite is one process).
    if matches!(b, Backend::Postgres(_)) {
        apps.push(spawn_app_lifecycle(&b, lifecycle).await);
    }
    let names_nats = |status: u16, body: &str| {
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("the NATS stream WHISTLE_CASES is not provisioned yet"),
            "{body}"
        );
    };
    for app in &apps {
        // Until the projector caught up the body names it as well; then NATS alone,
        // with the reason of the last attempt.
        let (status, body) = poll_readyz(app.http, "only NATS missing", names_nats, |s, b| {
            s == 503 && !b.contains("SLA projector") && b.contains("last attempt")
        })
        .await;
        names_nats(status, &body);
    }

    let mut nats =
        whistle_bus::testing::NatsServer::start_on_port(test, port).expect("nats-server");
    for app in &apps {
        poll_readyz(app.http, "ready once NATS is there", names_nats, |s, _| {
            s == 200
        })
        .await;
    }
    let client = async_nats::connect(nats.url()).await.expect("connect NATS");
    let stream = async_nats::jetstream::new(client)
        .get_stream("WHISTLE_CASES")
        .await
        .expect("the stream was provisioned");
    assert_eq!(
        stream.cached_info().config.subjects,
        ["whistle.qinghe.>"],
        "the district's subjects"
    );

    nats.kill();
    for app in &apps {
        let (status, body) = http_get(app.http, "/readyz").await;
        assert_eq!(status, 200, "NATS going away keeps the node ready: {body}");
    }
    for app in apps {
        app.stop().await;
    }
}
