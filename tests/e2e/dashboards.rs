//! Supervisors' dashboards end to end: lists with filters and cursor pages, the case view
//! read back in the same breath as the write, SLA summaries once projected, cases at risk
//! as warn points pass in virtual time, the live stream of SLA changes, the web page's
//! JSON, and refusals that name their field.

use crate::both_backends;
use crate::support::{
    AppOptions, Backend, Client, TestApp, http_get, http_get_with, spawn_app_with, token,
};
use std::time::Duration as StdDuration;
use time::Duration;
use time::macros::datetime;
use whistle_api::ManualClock;
use whistle_proto::v1 as pb;
use whistle_store::EventStore;

both_backends!(
    supervisors_list_filter_and_page_cases,
    the_sla_summary_and_at_risk_list_follow_the_clocks,
    watch_sla_streams_changes_as_they_commit,
    the_dashboard_json_is_for_supervisors,
);

const T0: time::OffsetDateTime = datetime!(2026-11-20 09:00:00 +08:00);

async fn app(b: &Backend, clock: &ManualClock) -> TestApp {
    spawn_app_with(
        b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: true,
            tls: None,
        },
    )
    .await
}

fn ts(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    }
}

fn window(from: time::OffsetDateTime, to: time::OffsetDateTime) -> Option<pb::TimeWindow> {
    Some(pb::TimeWindow {
        from: Some(ts(from)),
        to: Some(ts(to)),
    })
}

fn field(s: &tonic::Status) -> &str {
    s.metadata()
        .get("whistle-field")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Waits (bounded) until the SLA projection has caught up with the log.
async fn projected(app: &TestApp) {
    let head = app.store.head_position().await.expect("head");
    for _ in 0..400 {
        let cp = app
            .store
            .load_checkpoint(whistle_projections::SLA_PROJECTION)
            .await
            .expect("checkpoint");
        if cp.is_some_and(|c| c.position >= head) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    panic!("the SLA projection did not reach position {head}");
}

async fn list(
    sup: &Client,
    req: pb::ListCasesRequest,
) -> Result<pb::ListCasesResponse, tonic::Status> {
    sup.dashboards()
        .list_cases(sup.req(req))
        .await
        .map(|r| r.into_inner())
}

async fn supervisors_list_filter_and_page_cases(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let sup = app.client("sup-dongfeng").await;
    let mut ids = Vec::new();
    for (cat, loc) in [
        ("neighbour_noise", "hongqi-jiayuan-b1-u1"),
        ("leak_from_above", "hongqi-jiayuan-b2-u1"),
        ("fire_lane_blocked", "liuyin-huayuan"),
    ] {
        ids.push(gw.report_ok(cat, loc).await);
        clock.advance(Duration::minutes(1));
    }
    // Read-your-writes: the view is written with the events.
    let wang = app.client("h-wang").await;
    let acked = wang.ack(&ids[0]).await.expect("ack");
    let view = sup.get(&ids[0]).await.expect("get");
    assert_eq!(view.version, acked.version);
    assert_eq!(view.stage, "acknowledged");

    let all = list(&sup, pb::ListCasesRequest::default())
        .await
        .expect("list");
    let got: Vec<&str> = all.cases.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(
        got,
        [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()],
        "newest first"
    );
    assert_eq!(all.next_page_token, "");

    // Pages of two: the cursor continues exactly after the last row.
    let first = list(
        &sup,
        pb::ListCasesRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .expect("page 1");
    assert_eq!(first.cases.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &sup,
        pb::ListCasesRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("page 2");
    assert_eq!(
        second
            .cases
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    assert_eq!(second.next_page_token, "");

    let by = |f: pb::CaseFilter| pb::ListCasesRequest {
        filter: Some(f),
        ..Default::default()
    };
    let hongqi = list(
        &sup,
        by(pb::CaseFilter {
            communities: vec!["dongfeng-hongqi".into()],
            ..Default::default()
        }),
    )
    .await
    .expect("community");
    assert_eq!(
        hongqi.cases.len(),
        2,
        "the community holds hongqi-jiayuan's two cases"
    );
    let street = list(
        &sup,
        by(pb::CaseFilter {
            streets: vec!["xihu".into()],
            ..Default::default()
        }),
    )
    .await
    .expect("street");
    assert_eq!(
        street
            .cases
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        [ids[2].as_str()]
    );
    let leak = list(
        &sup,
        by(pb::CaseFilter {
            categories: vec!["leak_from_above".into()],
            ..Default::default()
        }),
    )
    .await
    .expect("category");
    assert_eq!(
        leak.cases
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        [ids[1].as_str()]
    );
    let branch = list(
        &sup,
        by(pb::CaseFilter {
            levels: vec![pb::Level::Branch as i32],
            ..Default::default()
        }),
    )
    .await
    .expect("level");
    assert_eq!(
        branch
            .cases
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        [ids[2].as_str()]
    );
    let windowed = list(
        &sup,
        by(pb::CaseFilter {
            window: window(T0, T0 + Duration::seconds(90)),
            ..Default::default()
        }),
    )
    .await
    .expect("window");
    assert_eq!(windowed.cases.len(), 2);
    let disjoint = list(
        &sup,
        by(pb::CaseFilter {
            communities: vec!["dongfeng-hongqi".into()],
            streets: vec!["xihu".into()],
            ..Default::default()
        }),
    )
    .await
    .expect("disjoint");
    assert!(disjoint.cases.is_empty());

    // Refusals name the field and change nothing.
    let before = app.event_count().await;
    for (req, want) in [
        (
            by(pb::CaseFilter {
                levels: vec![0],
                ..Default::default()
            }),
            "filter.levels",
        ),
        (
            by(pb::CaseFilter {
                statuses: vec!["lost".into()],
                ..Default::default()
            }),
            "filter.statuses",
        ),
        (
            by(pb::CaseFilter {
                communities: vec!["hongqi-jiayuan".into()],
                ..Default::default()
            }),
            "filter.communities",
        ),
        (
            by(pb::CaseFilter {
                categories: vec!["no-such".into()],
                ..Default::default()
            }),
            "filter.categories",
        ),
        (
            pb::ListCasesRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListCasesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let err = list(&sup, req).await.expect_err(want);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{want}: {err:?}");
        assert_eq!(field(&err), want);
    }
    assert_eq!(app.event_count().await, before);
    for who in ["gw-lin", "h-wang", "dept-fire", "resident-zhang"] {
        let c = app.client(who).await;
        let err = list(&c, pb::ListCasesRequest::default())
            .await
            .expect_err(who);
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{who}");
    }
    let err = list(&sup.anonymous(), pb::ListCasesRequest::default())
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    app.stop().await;
}

async fn the_sla_summary_and_at_risk_list_follow_the_clocks(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let sup = app.client("sup-dongfeng").await;
    let wang = app.client("h-wang").await;
    let a = gw
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    let c = gw
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u2")
        .await;
    clock.advance(Duration::minutes(4));
    wang.ack(&a).await.expect("ack a");
    // 7 minutes in: c's respond clock is past its warn point (75 % of 8 min).
    clock.advance(Duration::minutes(3));
    let at_risk = sup
        .dashboards()
        .list_at_risk(sup.req(pb::ListAtRiskRequest { limit: 10 }))
        .await
        .expect("at risk")
        .into_inner();
    let got: Vec<(&str, &str, i64)> = at_risk
        .cases
        .iter()
        .map(|f| {
            (
                f.case.as_ref().map_or("", |c| c.case_id.as_str()),
                f.milestone.as_str(),
                f.seconds_left,
            )
        })
        .collect();
    assert_eq!(got, [(c.as_str(), "respond", 60)]);

    projected(&app).await;
    let summary = |group_by: pb::Dimension| {
        let sup = sup.clone();
        async move {
            sup.dashboards()
                .get_sla_summary(sup.req(pb::GetSlaSummaryRequest {
                    window: window(T0 - Duration::hours(1), T0 + Duration::hours(1)),
                    group_by: group_by as i32,
                }))
                .await
                .expect("summary")
                .into_inner()
        }
    };
    let s = summary(pb::Dimension::Unspecified).await;
    let totals = s.totals.as_ref().and_then(|t| t.rates).expect("totals");
    assert_eq!((totals.cases, totals.open, totals.at_risk), (2, 2, 1));
    assert_eq!(
        totals.response_rate,
        Some(1.0),
        "one respond clock decided, met in 4 min"
    );
    let respond = s
        .totals
        .as_ref()
        .expect("totals")
        .milestones
        .iter()
        .find(|m| m.milestone == "respond")
        .expect("respond");
    assert_eq!(
        (respond.decided, respond.on_time, respond.p50_seconds),
        (1, 1, Some(240.0))
    );

    // Past 8 minutes c breaches and climbs to UNIT.
    clock.advance(Duration::minutes(2));
    let mut breached = false;
    for _ in 0..400 {
        let v = sup.get(&c).await.expect("get c");
        if v.level == pb::Level::Unit as i32 {
            breached = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    assert!(breached, "the scheduler escalated the unanswered case");
    projected(&app).await;
    let s = summary(pb::Dimension::Level).await;
    let totals = s.totals.as_ref().and_then(|t| t.rates).expect("totals");
    assert_eq!(totals.breaches, 1);
    assert_eq!(totals.response_rate, Some(0.5));
    let neighbour = s
        .groups
        .iter()
        .find(|g| g.key == "NEIGHBOUR")
        .expect("NEIGHBOUR group");
    assert_eq!(
        neighbour.rates.as_ref().map(|r| r.response_rate),
        Some(Some(0.5))
    );
    let funnel: Vec<(i32, u64)> = s.funnel.iter().map(|f| (f.level, f.count)).collect();
    assert_eq!(funnel, [(1, 1), (2, 1), (3, 0), (4, 0)]);
    let s = summary(pb::Dimension::Compound).await;
    assert_eq!(
        s.groups
            .iter()
            .map(|g| (g.key.as_str(), g.label.as_str()))
            .collect::<Vec<_>>(),
        [("hongqi-jiayuan", "红旗家园")]
    );

    let err = sup
        .dashboards()
        .get_sla_summary(sup.req(pb::GetSlaSummaryRequest {
            window: window(T0, T0 - Duration::hours(1)),
            group_by: 0,
        }))
        .await
        .expect_err("inverted window");
    assert_eq!(
        (err.code(), field(&err)),
        (tonic::Code::InvalidArgument, "window")
    );
    let err = sup
        .dashboards()
        .get_sla_summary(sup.req(pb::GetSlaSummaryRequest {
            window: None,
            group_by: 0,
        }))
        .await
        .expect_err("no window");
    assert_eq!(
        (err.code(), field(&err)),
        (tonic::Code::InvalidArgument, "window")
    );
    app.stop().await;
}

async fn watch_sla_streams_changes_as_they_commit(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let sup = app.client("sup-dongfeng").await;
    let a = gw
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    let mut stream = sup
        .dashboards()
        .watch_sla(sup.req(pb::WatchSlaRequest { after_position: 0 }))
        .await
        .expect("watch")
        .into_inner();
    let wang = app.client("h-wang").await;
    wang.ack(&a).await.expect("ack");
    let mut seen = Vec::new();
    while !seen.contains(&"CaseAcknowledged".to_string()) {
        let change = tokio::time::timeout(StdDuration::from_secs(10), stream.message())
            .await
            .expect("a change within 10 s")
            .expect("stream")
            .expect("not ended");
        assert_eq!(change.case_id, a);
        assert!(change.position > 0);
        seen.push(change.event_type);
    }
    assert!(
        !seen.contains(&"CaseReported".to_string()),
        "starts after the head: {seen:?}"
    );
    let err = gw
        .dashboards()
        .watch_sla(gw.req(pb::WatchSlaRequest { after_position: 0 }))
        .await
        .expect_err("grid worker");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = sup
        .dashboards()
        .watch_sla(sup.req(pb::WatchSlaRequest { after_position: -1 }))
        .await
        .expect_err("negative");
    assert_eq!(
        (err.code(), field(&err)),
        (tonic::Code::InvalidArgument, "after_position")
    );
    app.stop().await;
}

async fn the_dashboard_json_is_for_supervisors(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let id = gw
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    clock.advance(Duration::minutes(7));
    projected(&app).await;
    let auth = format!("Bearer {}", token("sup-dongfeng"));
    let (status, body) = http_get_with(
        app.http,
        "/api/dashboard?window=24h",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["totals"]["cases"], 1);
    assert_eq!(json["totals"]["at_risk"], 1);
    assert_eq!(json["at_risk"][0]["case_id"], id.as_str());
    assert_eq!(json["at_risk"][0]["milestone"], "respond");
    assert_eq!(json["at_risk"][0]["seconds_left"], 60);
    assert_eq!(json["at_risk"][0]["compound_name"], "红旗家园");
    assert_eq!(json["funnel"][0]["level"], "NEIGHBOUR");
    assert_eq!(json["funnel"][0]["cases"], 1);
    assert_eq!(json["trend"].as_array().map(Vec::len), Some(24));

    let (status, _) = http_get(app.http, "/api/dashboard").await;
    assert_eq!(status, 401);
    let grid = format!("Bearer {}", token("gw-lin"));
    let (status, _) = http_get_with(app.http, "/api/dashboard", &[("Authorization", &grid)]).await;
    assert_eq!(status, 403);
    let (status, body) = http_get_with(
        app.http,
        "/api/dashboard?window=3y",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("\"field\":\"window\""), "{body}");
    app.stop().await;
}
