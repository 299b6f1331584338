//! Everything whistle must refuse, with the precise status, and without writing anything.

use crate::both_backends;
use crate::support::{Backend, Client, plain, spawn_app};
use tonic::Code;
use whistle_proto::v1 as pb;

both_backends!(
    invalid_reports_are_refused_with_the_field_named_and_log_unchanged,
    authentication_and_roles_are_enforced_and_log_unchanged,
    two_clients_escalating_at_the_same_version_one_wins_one_aborted,
    forbidden_transitions_are_failed_precondition,
    unversioned_commands_are_decided_again_after_a_concurrent_write,
    residents_and_departments_read_only_their_own_cases,
);

fn field(s: &tonic::Status) -> String {
    s.metadata()
        .get("whistle-field")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn invalid_reports_are_refused_with_the_field_named_and_log_unchanged(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    gw.report_ok("sanitation", "hongqi-jiayuan").await;
    let before = app.event_count().await;
    let huge = "漏".repeat(100 * 1024 / 3);
    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        (
            "unknown category",
            "no_such_category",
            "hongqi-jiayuan",
            "x",
            "category",
        ),
        (
            "malformed category",
            "bad category!",
            "hongqi-jiayuan",
            "x",
            "category",
        ),
        (
            "unknown compound",
            "sanitation",
            "no-such-compound",
            "x",
            "location",
        ),
        (
            "street is not a location",
            "sanitation",
            "dongfeng",
            "x",
            "location",
        ),
        (
            "empty description",
            "sanitation",
            "hongqi-jiayuan",
            "",
            "description",
        ),
        (
            "blank description",
            "sanitation",
            "hongqi-jiayuan",
            "  \n ",
            "description",
        ),
        (
            "100 KB description",
            "sanitation",
            "hongqi-jiayuan",
            &huge,
            "description",
        ),
        (
            "control characters",
            "sanitation",
            "hongqi-jiayuan",
            "bad\u{7}bell",
            "description",
        ),
    ];
    for (what, category, location, description, expected_field) in cases {
        let e = gw
            .report(category, location, description, "")
            .await
            .expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert_eq!(field(&e), expected_field, "{what}: {e:?}");
        assert!(
            e.message().starts_with(expected_field),
            "{what}: {}",
            e.message()
        );
    }
    let e = gw
        .intake()
        .report_case(gw.req(pb::ReportCaseRequest {
            category: "sanitation".into(),
            location: "hongqi-jiayuan".into(),
            description: "x".into(),
            channel: 99,
            urgency: 0,
            idempotency_key: String::new(),
            contact: None,
        }))
        .await
        .expect_err("bad channel");
    assert_eq!(
        (e.code(), field(&e).as_str()),
        (Code::InvalidArgument, "channel")
    );
    let e = gw
        .report("sanitation", "hongqi-jiayuan", "x", "has space")
        .await
        .expect_err("bad key");
    assert_eq!(
        (e.code(), field(&e).as_str()),
        (Code::InvalidArgument, "idempotency_key")
    );
    // Bad ids on case commands.
    let e = gw.get("not-a-uuid").await.expect_err("bad id");
    assert_eq!(
        (e.code(), field(&e).as_str()),
        (Code::InvalidArgument, "case_id")
    );
    let e = gw
        .get("01a20025-9a2b-764d-8c6b-310fc0c68a86")
        .await
        .expect_err("unknown case");
    assert_eq!(e.code(), Code::NotFound);
    let e = gw
        .intake()
        .confirm_resolution(gw.req(pb::ConfirmResolutionRequest {
            case_id: "01a20025-9a2b-764d-8c6b-310fc0c68a86".into(),
            expected_version: None,
            idempotency_key: String::new(),
            satisfaction: 3,
            comment: String::new(),
        }))
        .await
        .expect_err("unknown case");
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        app.event_count().await,
        before,
        "refused requests wrote nothing"
    );
    app.stop().await;
}

async fn authentication_and_roles_are_enforced_and_log_unchanged(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let id = gw.report_ok("neighbour_noise", "heping-lijing-b1-u2").await;
    let before = app.event_count().await;

    let anon = gw.anonymous();
    let e = anon
        .report("neighbour_noise", "heping-lijing", "x", "")
        .await
        .expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = anon.get(&id).await.expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    let forged = Client::connect(app.addr, "test-token-gw-lin-forged").await;
    let e = forged
        .report("neighbour_noise", "heping-lijing", "x", "")
        .await
        .expect_err("bad token");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = forged.ack(&id).await.expect_err("bad token");
    assert_eq!(e.code(), Code::Unauthenticated);

    // Wrong role for the RPC.
    let fire = app.client("dept-fire").await;
    let e = fire
        .report("neighbour_noise", "heping-lijing", "x", "")
        .await
        .expect_err("department reporting");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let resident = app.client("resident-zhang").await;
    let e = resident
        .ack(&id)
        .await
        .expect_err("resident signing for a case");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = resident
        .escalate(&id, None)
        .await
        .expect_err("resident escalating");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = gw
        .handling()
        .decline_case(gw.req(crate::support::reason(&id, "no")))
        .await
        .expect_err("grid worker declining");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Right role, but the case was never dispatched to the department (it is at
    // NEIGHBOUR): for the department it does not exist.
    let e = fire.ack(&id).await.expect_err("department below ESCALATED");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A resident who did not report it cannot withdraw it: for them it does not exist.
    let e = resident
        .intake()
        .withdraw_case(resident.req(pb::WithdrawCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            reason: "never mind".into(),
        }))
        .await
        .expect_err("not the reporter");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(
        app.event_count().await,
        before,
        "refused requests wrote nothing"
    );
    app.stop().await;
}

async fn two_clients_escalating_at_the_same_version_one_wins_one_aborted(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let sup = app.client("sup-dongfeng").await;
    let admin = app.client("admin").await;
    for round in 0..5 {
        let id = gw.report_ok("leak_from_above", "binhe-mingju-b1-u1").await;
        let v = gw.get(&id).await.expect("get").version;
        let (a, b) = tokio::join!(sup.escalate(&id, Some(v)), admin.escalate(&id, Some(v)));
        let results = [a, b];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let aborted: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            ok, 1,
            "round {round}: exactly one escalation succeeds: {results:?}"
        );
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            aborted[0].code(),
            Code::Aborted,
            "round {round}: {:?}",
            aborted[0]
        );
        let case = gw.get(&id).await.expect("get");
        assert!(case.version > v);
        assert_eq!(case.level, i32::from(pb::Level::Unit), "one rung, not two");
        let t = gw.timeline(&id).await;
        let escalations = t
            .entries
            .iter()
            .filter(|e| e.event_type == "CaseEscalated")
            .count();
        assert_eq!(escalations, 1, "round {round}");
    }
    app.stop().await;
}

async fn forbidden_transitions_are_failed_precondition(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let wang = app.client("h-wang").await;
    let sup = app.client("sup-dongfeng").await;
    let id = gw
        .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
        .await;
    let before = app.event_count().await;
    let e = wang.resolve(&id).await.expect_err("resolve before signing");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = wang
        .handling()
        .arrive_on_site(wang.req(plain(&id)))
        .await
        .expect_err("on site before signing");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = wang
        .handling()
        .resume_clock(wang.req(plain(&id)))
        .await
        .expect_err("resume a running clock");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(app.event_count().await, before);
    // Climb to the top; escalating further is refused.
    for _ in 0..3 {
        sup.escalate(&id, None).await.expect("escalate");
    }
    let e = sup.escalate(&id, None).await.expect_err("above ESCALATED");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Closed accepts nothing but reopen.
    gw.intake()
        .withdraw_case(gw.req(pb::WithdrawCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            reason: "the neighbours made peace".into(),
        }))
        .await
        .expect("withdraw");
    let closed = app.event_count().await;
    let e = sup.escalate(&id, None).await.expect_err("closed");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = gw
        .intake()
        .add_note(gw.req(pb::AddNoteRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            text: "late note".into(),
            evidence: vec![],
        }))
        .await
        .expect_err("closed");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(app.event_count().await, closed);
    gw.intake()
        .reopen_case(gw.req(pb::ReopenCaseRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            reason: "the noise is back".into(),
        }))
        .await
        .expect("reopen");
    let v = gw.get(&id).await.expect("get");
    assert_eq!((v.status.as_str(), v.reopen_count), ("open", 1));
    app.stop().await;
}

/// Commands without an expected version mean "on the case as it is": three notes racing
/// on one case all land (the loser of each version race decides again).
async fn unversioned_commands_are_decided_again_after_a_concurrent_write(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let id = gw.report_ok("sanitation", "liuyin-gongyu").await;
    let note = |c: crate::support::Client, text: &'static str| {
        let id = id.clone();
        async move {
            c.intake()
                .add_note(c.req(pb::AddNoteRequest {
                    case_id: id,
                    expected_version: None,
                    idempotency_key: String::new(),
                    text: text.into(),
                    evidence: vec![],
                }))
                .await
        }
    };
    let (a, b2, c) = tokio::join!(
        note(app.client("gw-lin").await, "first"),
        note(app.client("sup-dongfeng").await, "second"),
        note(app.client("admin").await, "third")
    );
    for r in [a, b2, c] {
        r.expect("every note lands");
    }
    let t = gw.timeline(&id).await;
    let notes = t
        .entries
        .iter()
        .filter(|e| e.event_type == "NoteAdded")
        .count();
    assert_eq!(notes, 3);
    app.stop().await;
}

/// A resident reads the cases they reported; a department the cases dispatched to it.
/// Anything else reads as NOT_FOUND, by id and by timeline.
async fn residents_and_departments_read_only_their_own_cases(b: Backend) {
    let app = spawn_app(&b).await;
    let zhang = app.client("resident-zhang").await;
    let other = app.client("resident-other").await;
    let gw = app.client("gw-lin").await;
    let fire = app.client("dept-fire").await;
    let gas = app.client("dept-gas").await;

    let mine = zhang
        .report_ok("neighbour_noise", "liuyin-huayuan-b1-u1")
        .await;
    zhang.get(&mine).await.expect("the reporter reads it");
    gw.get(&mine).await.expect("the grid worker reads it");
    let e = other.get(&mine).await.expect_err("another resident");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = fire.get(&mine).await.expect_err("never dispatched to fire");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let hazard = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;
    fire.get(&hazard).await.expect("dispatched to fire");
    let e = gas.get(&hazard).await.expect_err("not gas's case");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = gas
        .query()
        .get_case_timeline(gas.req(pb::GetCaseTimelineRequest {
            case_id: hazard.clone(),
        }))
        .await
        .expect_err("nor its timeline");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A department that declined still sees what it held.
    fire.handling()
        .decline_case(fire.req(crate::support::reason(&hazard, "not ours")))
        .await
        .expect("decline");
    fire.get(&hazard)
        .await
        .expect("the declining department keeps its view");
    app.stop().await;
}
