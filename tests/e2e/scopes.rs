//! Row-level scopes (DESIGN §6): a grid worker sees and reports within their grids, a
//! handler within their org node (and what they hold or held), a supervisor within their
//! community or street — in reads, commands, lists, summaries, streams and the dashboard
//! JSON. Out of scope reads as NOT_FOUND (existence does not leak); reporting outside
//! one's scope is PERMISSION_DENIED.

use crate::both_backends;
use crate::support::{Backend, Client, http_get_with, spawn_app, token};
use std::time::Duration;
use whistle_proto::v1 as pb;

both_backends!(
    grid_workers_report_and_see_within_their_grids,
    handlers_cannot_claim_cases_outside_their_node,
    supervisors_see_only_their_area_everywhere,
);

fn note(case_id: &str) -> pb::AddNoteRequest {
    pb::AddNoteRequest {
        case_id: case_id.into(),
        text: "seen".into(),
        ..Default::default()
    }
}

async fn grid_workers_report_and_see_within_their_grids(b: Backend) {
    let app = spawn_app(&b).await;
    let lin = app.client("gw-lin").await; // district-wide in the tests
    let zhao = app.client("gw-zhao").await; // g-liuyin only
    let hongqi = lin
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    let liuyin = zhao.report_ok("fire_lane_blocked", "liuyin-huayuan").await;

    let before = app.event_count().await;
    let err = zhao
        .report("neighbour_noise", "hongqi-jiayuan-b1-u1", "outside", "")
        .await
        .expect_err("outside the grid");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("location"), "{}", err.message());
    let err = zhao.get(&hongqi).await.expect_err("read outside");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = zhao
        .intake()
        .add_note(zhao.req(note(&hongqi)))
        .await
        .expect_err("note outside");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    assert_eq!(zhao.get(&liuyin).await.expect("own grid").case_id, liuyin);
    zhao.intake()
        .add_note(zhao.req(note(&liuyin)))
        .await
        .expect("note in the grid");
    app.stop().await;
}

async fn handlers_cannot_claim_cases_outside_their_node(b: Backend) {
    let app = spawn_app(&b).await;
    let lin = app.client("gw-lin").await;
    let heping = app.client("h-heping").await; // scope: heping-lijing
    // Nobody is rostered at heping-lijing's NEIGHBOUR rung: the case waits in the queue.
    let own = lin
        .report_ok("neighbour_noise", "heping-lijing-b1-u1")
        .await;
    let other = lin.report_ok("neighbour_noise", "heping-beili").await;
    let before = app.event_count().await;
    let err = heping
        .ack(&other)
        .await
        .expect_err("claim outside the node");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(app.event_count().await, before);
    heping.ack(&own).await.expect("claim inside the node");
    // A handler keeps seeing what it held, wherever its scope.
    assert_eq!(heping.get(&own).await.expect("read").stage, "acknowledged");
    app.stop().await;
}

async fn supervisors_see_only_their_area_everywhere(b: Backend) {
    let app = spawn_app(&b).await;
    let lin = app.client("gw-lin").await;
    let sup = app.client("sup-hongqi").await; // community dongfeng-hongqi
    let district = app.client("sup-dongfeng").await; // district-wide in the tests
    let mut stream = sup
        .dashboards()
        .watch_sla(sup.req(pb::WatchSlaRequest { after_position: 0 }))
        .await
        .expect("watch")
        .into_inner();
    let inside = lin
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    let outside = lin.report_ok("fire_lane_blocked", "liuyin-huayuan").await;
    let inside2 = lin.report_ok("leak_from_above", "hongqi-xinyuan").await;

    let listed = |c: &Client| {
        let c = c.clone();
        async move {
            let r = c
                .dashboards()
                .list_cases(c.req(pb::ListCasesRequest::default()))
                .await
                .expect("list")
                .into_inner();
            let mut ids: Vec<String> = r.cases.into_iter().map(|c| c.case_id).collect();
            ids.sort();
            ids
        }
    };
    let mut want = vec![inside.clone(), inside2.clone()];
    want.sort();
    assert_eq!(listed(&sup).await, want, "the community's cases only");
    assert_eq!(listed(&district).await.len(), 3);
    // Asking for the other community explicitly finds nothing rather than leaking it.
    let r = sup
        .dashboards()
        .list_cases(sup.req(pb::ListCasesRequest {
            filter: Some(pb::CaseFilter {
                compounds: vec!["liuyin-huayuan".into()],
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert!(r.cases.is_empty());

    let err = sup.get(&outside).await.expect_err("read outside");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let before = app.event_count().await;
    let err = sup
        .handling()
        .escalate_case(sup.req(pb::ReasonRequest {
            case_id: outside.clone(),
            reason: "not mine".into(),
            ..Default::default()
        }))
        .await
        .expect_err("act outside");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(app.event_count().await, before);

    // Summaries count only the area's cases.
    let now = time::OffsetDateTime::now_utc();
    let window = Some(pb::TimeWindow {
        from: Some(prost_types::Timestamp {
            seconds: (now - time::Duration::hours(1)).unix_timestamp(),
            nanos: 0,
        }),
        to: Some(prost_types::Timestamp {
            seconds: (now + time::Duration::hours(1)).unix_timestamp(),
            nanos: 0,
        }),
    });
    let s = sup
        .dashboards()
        .get_sla_summary(sup.req(pb::GetSlaSummaryRequest {
            window,
            group_by: pb::Dimension::Compound as i32,
        }))
        .await
        .expect("summary")
        .into_inner();
    assert_eq!(
        s.totals.as_ref().and_then(|t| t.rates).map(|r| r.cases),
        Some(2)
    );
    let keys: Vec<&str> = s.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["hongqi-jiayuan", "hongqi-xinyuan"]);

    // The stream carries the area's changes only.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let change = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a change within 10 s")
            .expect("stream")
            .expect("open");
        assert_ne!(
            change.case_id, outside,
            "an out-of-scope change was streamed"
        );
        seen.insert(change.case_id);
    }
    // …and the dashboard JSON likewise.
    let auth = format!("Bearer {}", token("sup-hongqi"));
    let (status, body) =
        http_get_with(app.http, "/api/dashboard", &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["totals"]["cases"], 2);
    assert!(!body.contains(&outside));
    app.stop().await;
}
