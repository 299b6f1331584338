//! The HTTP side: liveness, readiness and Prometheus metrics that move with the work.

use crate::both_backends;
use crate::support::{Backend, Client, http_get, spawn_app};

both_backends!(health_readiness_and_metrics_are_served_over_http);

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
