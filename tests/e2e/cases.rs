//! Whole case lifecycles over gRPC, on both backends.

use crate::both_backends;
use crate::support::{Backend, case_events, department, level, plain, reason, spawn_app};
use whistle_proto::v1 as pb;

both_backends!(
    grid_worker_handlers_and_resident_walk_a_case_up_the_ladder,
    urgent_case_takes_fast_channel_and_department_signs_for_it,
    department_declines_and_dispatcher_reroutes,
    duplicate_is_merged_into_another_case,
    idempotent_report_returns_original_case_and_adds_nothing,
    health_is_served,
);

async fn grid_worker_handlers_and_resident_walk_a_case_up_the_ladder(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let wang = app.client("h-wang").await;
    let li = app.client("h-li").await;

    let r = gw
        .report(
            "leak_from_above",
            "hongqi-jiayuan-b2-u1",
            "water through the ceiling",
            "",
        )
        .await
        .expect("report");
    assert_eq!(r.level, level(pb::Level::Neighbour));
    assert!(!r.fast_channel);
    let id = r.ack.expect("ack").case_id;

    // The roster routed it to Wang, the building's party-member household.
    let routed = gw.get(&id).await.expect("get");
    assert_eq!(
        routed.handler.and_then(|h| h.kind),
        Some(pb::handler::Kind::PrincipalId("h-wang".into()))
    );
    let signed = wang.ack(&id).await.expect("ack");
    assert!(signed.version > routed.version);
    // Another handler cannot resolve what Wang holds.
    let denied = li.resolve(&id).await.expect_err("not the holder");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let escalated = wang
        .escalate(&id, Some(signed.version))
        .await
        .expect("escalate");
    assert!(escalated.version > signed.version);
    li.ack(&id).await.expect("unit steward signs for it");
    li.handling()
        .arrive_on_site(li.req(plain(&id)))
        .await
        .expect("on site");
    li.resolve(&id).await.expect("resolve");
    let v = gw.get(&id).await.expect("get");
    assert_eq!(v.status, "resolved");
    assert_eq!(v.level, level(pb::Level::Unit));

    gw.intake()
        .confirm_resolution(gw.req(pb::ConfirmResolutionRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            satisfaction: 5,
            comment: "quick and polite".into(),
        }))
        .await
        .expect("confirm");

    let t = gw.timeline(&id).await;
    let case = t.case.clone().expect("case");
    assert_eq!(
        (case.status.as_str(), case.closure.as_str()),
        ("closed", "confirmed")
    );
    assert_eq!(case.satisfaction, 5);
    assert_eq!(
        case_events(&t),
        [
            "CaseReported",
            "CaseAssigned",
            "CaseAcknowledged",
            "CaseEscalated",
            "CaseAssigned",
            "CaseAcknowledged",
            "ArrivedOnSite",
            "CaseResolved",
            "ResolutionConfirmed"
        ]
    );
    let actors: Vec<&str> = t
        .entries
        .iter()
        .filter(|e| !e.event_type.starts_with("Milestone"))
        .map(|e| e.actor.as_ref().map_or("", |a| a.principal_id.as_str()))
        .collect();
    assert_eq!(
        actors,
        [
            "gw-lin", "system", "h-wang", "h-wang", "system", "h-li", "h-li", "h-li", "gw-lin"
        ]
    );
    // The clocks: respond met at both rungs, on site met, the resident's resolve met.
    let met = t
        .entries
        .iter()
        .filter(|e| e.event_type == "MilestoneMet")
        .count();
    assert_eq!(met, 4);
    for (i, e) in t.entries.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert!(e.occurred_at.is_some() && e.recorded_at.is_some());
        assert!(!e.summary.is_empty());
    }
    assert!(t.entries.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(app.event_count().await, t.entries.len() as u64);
    app.stop().await;
}

async fn urgent_case_takes_fast_channel_and_department_signs_for_it(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let housing = app.client("dept-housing").await;
    let gas = app.client("dept-gas").await;

    // A lift fault normally starts at BRANCH; someone trapped makes it urgent.
    let r = gw
        .intake()
        .report_case(gw.req(pb::ReportCaseRequest {
            category: "lift_fault".into(),
            location: "heping-beili-b3".into(),
            description: "two people trapped in the lift".into(),
            channel: pb::Channel::Hotline.into(),
            urgency: pb::Urgency::Urgent.into(),
            idempotency_key: String::new(),
            contact: None,
        }))
        .await
        .expect("report")
        .into_inner();
    assert_eq!(r.level, level(pb::Level::Escalated));
    assert!(r.fast_channel);
    assert_eq!(r.policy_class, i32::from(pb::PolicyClass::Urgent));
    let id = r.ack.expect("ack").case_id;

    // Dispatched to the owner of lift faults; the first department to sign leads
    // (首接负责) and a second one cannot take it over.
    housing.ack(&id).await.expect("housing bureau signs for it");
    // The gas company was never dispatched the case: for it the case does not exist.
    let e = gas.ack(&id).await.expect_err("not dispatched to gas");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // Departments act only at ESCALATED, handlers only below.
    let h = app.client("h-chen").await;
    let e = h.resolve(&id).await.expect_err("handler at ESCALATED");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    housing
        .handling()
        .arrive_on_site(housing.req(plain(&id)))
        .await
        .expect("on site");
    housing.resolve(&id).await.expect("resolve");
    let v = gw.get(&id).await.expect("get");
    assert_eq!(v.status, "resolved");
    assert_eq!(
        v.handler.and_then(|h| h.kind),
        Some(pb::handler::Kind::DepartmentId("housing".into()))
    );
    app.stop().await;
}

async fn department_declines_and_dispatcher_reroutes(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let sup = app.client("sup-dongfeng").await;
    let fire = app.client("dept-fire").await;
    let housing = app.client("dept-housing").await;

    let id = gw.report_ok("property_certificate", "hongqi-xinyuan").await;
    sup.handling()
        .assign_case(sup.req(pb::AssignCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            handler: department("fire"),
        }))
        .await
        .expect("dispatch to fire");
    // Housing was not dispatched and cannot sign for fire's case.
    let e = housing.ack(&id).await.expect_err("assigned to fire");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    fire.handling()
        .decline_case(fire.req(reason(&id, "property certificates are not ours")))
        .await
        .expect("decline");
    let v = gw.get(&id).await.expect("get");
    assert_eq!(v.stage, "unassigned");
    assert_eq!(v.declined_by, ["fire"]);
    // A department that declined cannot claim it back by itself.
    let e = fire.ack(&id).await.expect_err("declined");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // Dispatching to an unknown department names the field.
    let e = sup
        .handling()
        .assign_case(sup.req(pb::AssignCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            handler: department("no_such_dept"),
        }))
        .await
        .expect_err("unknown department");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("handler:"), "{}", e.message());
    sup.handling()
        .assign_case(sup.req(pb::AssignCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            handler: department("housing"),
        }))
        .await
        .expect("re-route to housing");
    housing.ack(&id).await.expect("housing signs for it");
    let t = gw.timeline(&id).await;
    assert_eq!(
        case_events(&t),
        [
            "CaseReported",
            "CaseAssigned", // routing: housing owns property certificates
            "CaseAssigned", // the dispatcher sends it to fire instead
            "CaseDeclined",
            "CaseAssigned",
            "CaseAcknowledged"
        ]
    );
    app.stop().await;
}

async fn duplicate_is_merged_into_another_case(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let chen = app.client("h-chen").await;
    let first = gw.report_ok("fire_lane_blocked", "liuyin-huayuan").await;
    let dup = gw.report_ok("fire_lane_blocked", "liuyin-huayuan-b2").await;
    let before = app.event_count().await;
    chen.handling()
        .merge_case(chen.req(pb::MergeCaseRequest {
            case_id: dup.clone(),
            expected_version: Some(gw.get(&dup).await.expect("dup").version),
            idempotency_key: "merge-1".into(),
            into_case_id: first.clone(),
            reason: "same blocked lane".into(),
        }))
        .await
        .expect("merge");
    let dup_t = gw.timeline(&dup).await;
    assert_eq!(case_events(&dup_t).last(), Some(&"CaseMerged"));
    let after_merge: Vec<&str> = dup_t
        .entries
        .iter()
        .map(|e| e.event_type.as_str())
        .skip_while(|t| *t != "CaseMerged")
        .skip(1)
        .collect();
    assert!(
        !after_merge.is_empty() && after_merge.iter().all(|t| *t == "MilestoneCancelled"),
        "merging stops the duplicate's clocks: {after_merge:?}"
    );
    let first_t = gw.timeline(&first).await;
    assert_eq!(case_events(&first_t).last(), Some(&"DuplicateMerged"));
    assert!(app.event_count().await > before);
    assert_eq!(
        app.event_count().await,
        (dup_t.entries.len() + first_t.entries.len()) as u64,
        "the merge wrote only to the two streams"
    );
    let d = gw.get(&dup).await.expect("dup");
    assert_eq!(
        (d.status.as_str(), d.closure.as_str()),
        ("closed", "merged")
    );
    assert_eq!(d.merged_into, first);
    let f = gw.get(&first).await.expect("first");
    assert_eq!(f.duplicate_case_ids, std::slice::from_ref(&dup));
    // Merging into itself names the field; a closed case cannot be merged again.
    let e = chen
        .handling()
        .merge_case(chen.req(pb::MergeCaseRequest {
            case_id: first.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            into_case_id: first.clone(),
            reason: "x".into(),
        }))
        .await
        .expect_err("self merge");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("into_case_id:"), "{}", e.message());
    app.stop().await;
}

async fn idempotent_report_returns_original_case_and_adds_nothing(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let first = gw
        .report(
            "corridor_clutter",
            "binhe-xiaoqu-b4-u1",
            "bikes and boxes",
            "app-7f3a-0001",
        )
        .await
        .expect("report");
    let count = app.event_count().await;
    let retry = gw
        .report(
            "corridor_clutter",
            "binhe-xiaoqu-b4-u1",
            "bikes and boxes",
            "app-7f3a-0001",
        )
        .await
        .expect("retry");
    let (a, r) = (first.ack.expect("ack"), retry.ack.expect("ack"));
    assert_eq!(a.case_id, r.case_id);
    assert!(!a.replayed);
    assert!(r.replayed);
    assert_eq!(app.event_count().await, count, "the retry appended nothing");
    // The same key for a different request is refused, naming the field.
    let e = gw
        .report(
            "corridor_clutter",
            "binhe-xiaoqu-b4-u1",
            "something else",
            "app-7f3a-0001",
        )
        .await
        .expect_err("key reuse");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("idempotency_key"), "{}", e.message());
    // Keys are per principal: another grid worker's identical key is independent.
    let other = app.client("resident-zhang").await;
    let o = other
        .report(
            "corridor_clutter",
            "binhe-xiaoqu-b4-u1",
            "bikes and boxes",
            "app-7f3a-0001",
        )
        .await
        .expect("other principal");
    let other_id = o.ack.expect("ack").case_id;
    assert_ne!(other_id, a.case_id);
    let other_events = gw.timeline(&other_id).await.entries.len() as u64;
    assert_eq!(app.event_count().await, count + other_events);
    app.stop().await;
}

async fn health_is_served(b: Backend) {
    let app = spawn_app(&b).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "whistle.v1.IntakeService",
        "whistle.v1.CaseHandlingService",
        "whistle.v1.CaseQueryService",
        "",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            r.status,
            i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving),
            "{service}"
        );
    }
    app.stop().await;
}
