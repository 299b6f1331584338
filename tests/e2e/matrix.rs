//! The authorization matrix (DESIGN §6, issue #6): every RPC of `proto/` × every role ×
//! (a principal in scope, one out of scope) × anonymous, each with the status it must
//! get — and no out-of-scope row in any list, summary or stream.
//!
//! The table is checked against the RPCs in the embedded descriptor set: adding an RPC to
//! `proto/` without rows here fails this test.

use crate::both_backends;
use crate::support::{Backend, Client, TestApp, spawn_app};
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::Code;
use whistle_domain::Role;
use whistle_proto::v1 as pb;

both_backends!(
    every_rpc_by_role_and_scope,
    no_list_or_stream_shows_a_row_out_of_scope
);

/// What a cell must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No or a bad token: UNAUTHENTICATED.
    Unauthenticated,
    /// The role may not call it (or report outside its scope): PERMISSION_DENIED.
    Denied,
    /// The case is outside the caller's view: NOT_FOUND.
    Hidden,
    /// Past authentication and authorization: whatever the case's state machine says
    /// (OK, FAILED_PRECONDITION, INVALID_ARGUMENT …) but never one of the three above.
    Allowed,
}

/// How an RPC addresses data, which decides what "out of scope" means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Creates a case at a location: out of scope is PERMISSION_DENIED for scoped roles.
    Report,
    /// Addresses one case: out of scope is NOT_FOUND.
    Case,
    /// Lists, summaries, streams, configuration: scope narrows rows, never the status.
    Unscoped,
}

use Role::{Admin, Department, GridWorker, Handler, Resident, Supervisor};

const READERS: &[Role] = &[Resident, GridWorker, Handler, Department, Supervisor, Admin];
const HANDLING: &[Role] = &[Handler, Department];
const DASHBOARD: &[Role] = &[Supervisor, Admin];

/// (service/method, roles allowed, kind).
const ROWS: &[(&str, &[Role], Kind)] = &[
    (
        "IntakeService/ReportCase",
        &[Resident, GridWorker, Handler, Admin],
        Kind::Report,
    ),
    ("IntakeService/AddNote", READERS, Kind::Case),
    (
        "IntakeService/WithdrawCase",
        &[Resident, GridWorker, Admin],
        Kind::Case,
    ),
    (
        "IntakeService/ConfirmResolution",
        &[Resident, GridWorker],
        Kind::Case,
    ),
    (
        "IntakeService/ReopenCase",
        &[Resident, GridWorker, Supervisor, Admin],
        Kind::Case,
    ),
    (
        "CaseHandlingService/AssignCase",
        &[Supervisor, Admin],
        Kind::Case,
    ),
    ("CaseHandlingService/AcknowledgeCase", HANDLING, Kind::Case),
    ("CaseHandlingService/ArriveOnSite", HANDLING, Kind::Case),
    ("CaseHandlingService/ResolveCase", HANDLING, Kind::Case),
    (
        "CaseHandlingService/EscalateCase",
        &[Handler, Supervisor, Admin],
        Kind::Case,
    ),
    (
        "CaseHandlingService/TransferCase",
        &[Handler, Department, Supervisor, Admin],
        Kind::Case,
    ),
    ("CaseHandlingService/DeclineCase", &[Department], Kind::Case),
    (
        "CaseHandlingService/PauseClock",
        &[Handler, Department, Supervisor, Admin],
        Kind::Case,
    ),
    (
        "CaseHandlingService/ResumeClock",
        &[Handler, Department, Supervisor, Admin],
        Kind::Case,
    ),
    (
        "CaseHandlingService/RejectCase",
        &[Handler, Supervisor, Admin],
        Kind::Case,
    ),
    (
        "CaseHandlingService/MergeCase",
        &[Handler, Supervisor, Admin],
        Kind::Case,
    ),
    ("CaseHandlingService/EraseContact", &[Admin], Kind::Case),
    ("CaseQueryService/GetCase", READERS, Kind::Case),
    ("CaseQueryService/GetCaseTimeline", READERS, Kind::Case),
    (
        "DepartmentService/WatchAssignments",
        &[Department],
        Kind::Unscoped,
    ),
    (
        "DepartmentService/AcknowledgeCase",
        &[Department],
        Kind::Case,
    ),
    ("DepartmentService/ArriveOnSite", &[Department], Kind::Case),
    ("DepartmentService/ResolveCase", &[Department], Kind::Case),
    ("DepartmentService/DeclineCase", &[Department], Kind::Case),
    ("DepartmentService/TransferCase", &[Department], Kind::Case),
    ("DepartmentService/PauseClock", &[Department], Kind::Case),
    ("DepartmentService/ResumeClock", &[Department], Kind::Case),
    ("DepartmentService/AddNote", &[Department], Kind::Case),
    ("AdminService/GetSla", &[Admin], Kind::Unscoped),
    ("AdminService/PublishSla", &[Admin], Kind::Unscoped),
    ("AdminService/GetRouting", &[Admin], Kind::Unscoped),
    ("AdminService/SetRoster", &[Admin], Kind::Unscoped),
    ("AdminService/IssueToken", &[Admin], Kind::Unscoped),
    ("AdminService/RevokeToken", &[Admin], Kind::Unscoped),
    ("AdminService/ListTokens", &[Admin], Kind::Unscoped),
    ("DashboardService/ListCases", DASHBOARD, Kind::Unscoped),
    ("DashboardService/GetSlaSummary", DASHBOARD, Kind::Unscoped),
    ("DashboardService/ListAtRisk", DASHBOARD, Kind::Unscoped),
    ("DashboardService/WatchSla", DASHBOARD, Kind::Unscoped),
];

/// Callers: (principal, role, in scope of the fixture cases). The fixtures are located in
/// 红旗家园 (community dongfeng-hongqi, grid g-hongqi).
const CALLERS: &[(&str, Role, bool)] = &[
    ("resident-zhang", Resident, true), // reported the resident's fixture
    ("resident-other", Resident, false),
    ("gw-lin", GridWorker, true), // reported the fixture; district-wide
    ("gw-zhao", GridWorker, false), // grid g-liuyin
    ("h-wang", Handler, true),    // holds the fixture
    ("h-heping", Handler, false), // compound heping-lijing
    ("dept-fire", Department, true), // dispatched the department fixture
    ("dept-gas", Department, false),
    ("sup-hongqi", Supervisor, true), // community dongfeng-hongqi
    ("sup-xihu", Supervisor, false),  // street xihu
    ("admin", Admin, true),
];

fn expect(roles: &[Role], kind: Kind, role: Role, in_scope: bool) -> Expect {
    if !roles.contains(&role) {
        return Expect::Denied;
    }
    match (kind, in_scope) {
        (_, true) | (Kind::Unscoped, false) => Expect::Allowed,
        (Kind::Case, false) => Expect::Hidden,
        // Residents report anywhere; scoped roles only inside their scope.
        (Kind::Report, false) if role == Resident => Expect::Allowed,
        (Kind::Report, false) => Expect::Denied,
    }
}

/// Every whistle.v1 RPC in the embedded descriptor set, as `Service/Method`.
fn rpcs_in_proto() -> BTreeSet<String> {
    let fds: prost_types::FileDescriptorSet =
        prost::Message::decode(whistle_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    fds.file
        .iter()
        .filter(|f| f.package() == "whistle.v1")
        .flat_map(|f| f.service.iter())
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect()
}

/// A fresh case for one call: the caller's role decides which fixture (so an in-scope
/// caller is its natural actor: the reporter, the holder, the dispatched department).
async fn fixture(app: &TestApp, role: Role) -> String {
    let gw = app.client("gw-lin").await;
    match role {
        Resident => {
            let zhang = app.client("resident-zhang").await;
            zhang
                .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
                .await
        }
        Department => {
            let id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b1").await;
            let fire = app.client("dept-fire").await;
            fire.departments()
                .acknowledge_case(fire.req(pb::CaseCommandRequest {
                    case_id: id.clone(),
                    ..Default::default()
                }))
                .await
                .expect("fire signs for its fixture");
            id
        }
        _ => {
            let id = gw
                .report_ok("neighbour_noise", "hongqi-jiayuan-b1-u1")
                .await;
            app.client("h-wang")
                .await
                .ack(&id)
                .await
                .expect("h-wang signs for the fixture");
            id
        }
    }
}

fn cmd(id: &str) -> pb::CaseCommandRequest {
    pb::CaseCommandRequest {
        case_id: id.into(),
        ..Default::default()
    }
}

fn reason(id: &str) -> pb::ReasonRequest {
    pb::ReasonRequest {
        case_id: id.into(),
        reason: "matrix".into(),
        ..Default::default()
    }
}

fn window() -> Option<pb::TimeWindow> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Some(pb::TimeWindow {
        from: Some(prost_types::Timestamp {
            seconds: now - 3600,
            nanos: 0,
        }),
        to: Some(prost_types::Timestamp {
            seconds: now + 3600,
            nanos: 0,
        }),
    })
}

/// Calls `rpc` as `c` on case `id` (`other`: a second case, for merges) and returns the
/// status (OK for success; a stream counts as answered once it opens).
async fn call(c: &Client, rpc: &str, id: &str, other: &str) -> Code {
    fn code<T>(r: Result<T, tonic::Status>) -> Code {
        match r {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    }
    let transfer = |to: pb::Handler| pb::TransferCaseRequest {
        case_id: id.into(),
        to: Some(to),
        reason: "matrix".into(),
        ..Default::default()
    };
    let principal = |p: &str| pb::Handler {
        kind: Some(pb::handler::Kind::PrincipalId(p.into())),
    };
    let dept = |d: &str| pb::Handler {
        kind: Some(pb::handler::Kind::DepartmentId(d.into())),
    };
    let note = pb::AddNoteRequest {
        case_id: id.into(),
        text: "matrix".into(),
        ..Default::default()
    };
    let resolve = pb::ResolveCaseRequest {
        case_id: id.into(),
        summary: "fixed".into(),
        ..Default::default()
    };
    match rpc {
        "IntakeService/ReportCase" => code(
            c.report("neighbour_noise", "hongqi-jiayuan-b2-u1", "matrix", "")
                .await,
        ),
        "IntakeService/AddNote" => code(c.intake().add_note(c.req(note)).await),
        "IntakeService/WithdrawCase" => code(
            c.intake()
                .withdraw_case(c.req(pb::WithdrawCaseRequest {
                    case_id: id.into(),
                    reason: "matrix".into(),
                    ..Default::default()
                }))
                .await,
        ),
        "IntakeService/ConfirmResolution" => code(
            c.intake()
                .confirm_resolution(c.req(pb::ConfirmResolutionRequest {
                    case_id: id.into(),
                    satisfaction: 5,
                    ..Default::default()
                }))
                .await,
        ),
        "IntakeService/ReopenCase" => code(
            c.intake()
                .reopen_case(c.req(pb::ReopenCaseRequest {
                    case_id: id.into(),
                    reason: "matrix".into(),
                    ..Default::default()
                }))
                .await,
        ),
        "CaseHandlingService/AssignCase" => code(
            c.handling()
                .assign_case(c.req(pb::AssignCaseRequest {
                    case_id: id.into(),
                    handler: Some(principal("h-li")),
                    ..Default::default()
                }))
                .await,
        ),
        "CaseHandlingService/AcknowledgeCase" => {
            code(c.handling().acknowledge_case(c.req(cmd(id))).await)
        }
        "CaseHandlingService/ArriveOnSite" => {
            code(c.handling().arrive_on_site(c.req(cmd(id))).await)
        }
        "CaseHandlingService/ResolveCase" => code(c.handling().resolve_case(c.req(resolve)).await),
        "CaseHandlingService/EscalateCase" => {
            code(c.handling().escalate_case(c.req(reason(id))).await)
        }
        "CaseHandlingService/TransferCase" => code(
            c.handling()
                .transfer_case(c.req(transfer(principal("h-li"))))
                .await,
        ),
        "CaseHandlingService/DeclineCase" => {
            code(c.handling().decline_case(c.req(reason(id))).await)
        }
        "CaseHandlingService/PauseClock" => code(c.handling().pause_clock(c.req(reason(id))).await),
        "CaseHandlingService/ResumeClock" => code(c.handling().resume_clock(c.req(cmd(id))).await),
        "CaseHandlingService/RejectCase" => code(c.handling().reject_case(c.req(reason(id))).await),
        "CaseHandlingService/MergeCase" => code(
            c.handling()
                .merge_case(c.req(pb::MergeCaseRequest {
                    case_id: id.into(),
                    into_case_id: other.into(),
                    reason: "matrix".into(),
                    ..Default::default()
                }))
                .await,
        ),
        "CaseHandlingService/EraseContact" => {
            code(c.handling().erase_contact(c.req(reason(id))).await)
        }
        "CaseQueryService/GetCase" => code(
            c.query()
                .get_case(c.req(pb::GetCaseRequest { case_id: id.into() }))
                .await,
        ),
        "CaseQueryService/GetCaseTimeline" => code(
            c.query()
                .get_case_timeline(c.req(pb::GetCaseTimelineRequest { case_id: id.into() }))
                .await,
        ),
        "DepartmentService/WatchAssignments" => code(
            c.departments()
                .watch_assignments(c.req(pb::WatchAssignmentsRequest { after_position: 0 }))
                .await,
        ),
        "DepartmentService/AcknowledgeCase" => {
            code(c.departments().acknowledge_case(c.req(cmd(id))).await)
        }
        "DepartmentService/ArriveOnSite" => {
            code(c.departments().arrive_on_site(c.req(cmd(id))).await)
        }
        "DepartmentService/ResolveCase" => code(c.departments().resolve_case(c.req(resolve)).await),
        "DepartmentService/DeclineCase" => {
            code(c.departments().decline_case(c.req(reason(id))).await)
        }
        "DepartmentService/TransferCase" => code(
            c.departments()
                .transfer_case(c.req(transfer(dept("gas"))))
                .await,
        ),
        "DepartmentService/PauseClock" => {
            code(c.departments().pause_clock(c.req(reason(id))).await)
        }
        "DepartmentService/ResumeClock" => code(c.departments().resume_clock(c.req(cmd(id))).await),
        "DepartmentService/AddNote" => code(c.departments().add_note(c.req(note)).await),
        "AdminService/GetSla" => code(c.admin().get_sla(c.req(pb::GetSlaRequest {})).await),
        "AdminService/PublishSla" => code(
            c.admin()
                .publish_sla(c.req(pb::PublishSlaRequest {
                    toml: "not a policy".into(),
                    expected_version: None,
                }))
                .await,
        ),
        "AdminService/GetRouting" => {
            code(c.admin().get_routing(c.req(pb::GetRoutingRequest {})).await)
        }
        "AdminService/SetRoster" => code(
            c.admin()
                .set_roster(c.req(pb::SetRosterRequest {
                    entries: Vec::new(),
                    expected_version: Some(u64::MAX),
                }))
                .await,
        ),
        // Invalid on purpose (nothing issued or revoked): INVALID_ARGUMENT once past the
        // role check.
        "AdminService/IssueToken" => code(
            c.admin()
                .issue_token(c.req(pb::IssueTokenRequest {
                    principal_id: "matrix".into(),
                    role: "not-a-role".into(),
                    ..Default::default()
                }))
                .await,
        ),
        "AdminService/RevokeToken" => code(
            c.admin()
                .revoke_token(c.req(pb::RevokeTokenRequest::default()))
                .await,
        ),
        "AdminService/ListTokens" => code(
            c.admin()
                .list_tokens(c.req(pb::ListTokensRequest::default()))
                .await,
        ),
        "DashboardService/ListCases" => code(
            c.dashboards()
                .list_cases(c.req(pb::ListCasesRequest::default()))
                .await,
        ),
        "DashboardService/GetSlaSummary" => code(
            c.dashboards()
                .get_sla_summary(c.req(pb::GetSlaSummaryRequest {
                    window: window(),
                    group_by: 0,
                }))
                .await,
        ),
        "DashboardService/ListAtRisk" => code(
            c.dashboards()
                .list_at_risk(c.req(pb::ListAtRiskRequest { limit: 10 }))
                .await,
        ),
        "DashboardService/WatchSla" => code(
            c.dashboards()
                .watch_sla(c.req(pb::WatchSlaRequest { after_position: 0 }))
                .await,
        ),
        other => panic!("no call for {other}: add it to matrix::call"),
    }
}

fn satisfies(code: Code, e: Expect) -> bool {
    match e {
        Expect::Unauthenticated => code == Code::Unauthenticated,
        Expect::Denied => code == Code::PermissionDenied,
        Expect::Hidden => code == Code::NotFound,
        Expect::Allowed => !matches!(
            code,
            Code::Unauthenticated
                | Code::PermissionDenied
                | Code::NotFound
                | Code::Unknown
                | Code::Internal
        ),
    }
}

async fn every_rpc_by_role_and_scope(b: Backend) {
    let in_proto = rpcs_in_proto();
    let in_table: BTreeSet<String> = ROWS.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(
        in_proto, in_table,
        "every RPC in proto/ needs rows in the matrix (and no row may name a missing RPC)"
    );
    let app = spawn_app(&b).await;
    let anonymous = app.client("gw-lin").await.anonymous();
    let mut failures = Vec::new();
    let mut cells = 0;
    for (rpc, roles, kind) in ROWS {
        let id = fixture(&app, GridWorker).await;
        let code = call(&anonymous, rpc, &id, &id).await;
        cells += 1;
        if !satisfies(code, Expect::Unauthenticated) {
            failures.push(format!("{rpc} anonymous: got {code:?}"));
        }
        for (who, role, in_scope) in CALLERS {
            let want = expect(roles, *kind, *role, *in_scope);
            let id = fixture(&app, *role).await;
            let other = fixture(&app, *role).await;
            let c = app.client(who).await;
            let before = app.event_count().await;
            let code = call(&c, rpc, &id, &other).await;
            cells += 1;
            if !satisfies(code, want) {
                failures.push(format!(
                    "{rpc} as {who} ({role}, in scope: {in_scope}): want {want:?}, got {code:?}"
                ));
            }
            if want != Expect::Allowed && app.event_count().await != before {
                failures.push(format!("{rpc} as {who}: a refused call wrote events"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("authorization matrix: {cells} cells, {} RPCs", ROWS.len());
    app.stop().await;
}

/// Lists, summaries and streams: a caller out of scope gets answers without the rows it
/// may not see — for supervisors (ListCases, ListAtRisk, GetSlaSummary, WatchSla) and
/// departments (WatchAssignments).
async fn no_list_or_stream_shows_a_row_out_of_scope(b: Backend) {
    let app = spawn_app(&b).await;
    let xihu = app.client("sup-xihu").await;
    let gas = app.client("dept-gas").await;
    let mut sla = xihu
        .dashboards()
        .watch_sla(xihu.req(pb::WatchSlaRequest { after_position: 0 }))
        .await
        .expect("watch sla")
        .into_inner();
    let mut assignments = gas
        .departments()
        .watch_assignments(gas.req(pb::WatchAssignmentsRequest { after_position: 0 }))
        .await
        .expect("watch assignments")
        .into_inner();
    // Out of their scope: 红旗家园 cases, one of them the fire brigade's.
    let hidden = [
        fixture(&app, GridWorker).await,
        fixture(&app, Department).await,
    ];
    // In their scope, reported afterwards: a barrier proving the streams were read past
    // the hidden cases' events.
    let zhao = app.client("gw-zhao").await;
    let visible = zhao.report_ok("gas_smell", "liuyin-huayuan-b1").await;

    let mut seen = Vec::new();
    while !seen.contains(&visible) {
        let change = tokio::time::timeout(Duration::from_secs(10), sla.message())
            .await
            .expect("WatchSla answers within 10 s")
            .expect("stream")
            .expect("open");
        seen.push(change.case_id);
    }
    for h in &hidden {
        assert!(
            !seen.contains(h),
            "WatchSla showed {h} to a supervisor of xihu"
        );
    }
    let mut seen = Vec::new();
    while !seen.contains(&visible) {
        let a = tokio::time::timeout(Duration::from_secs(10), assignments.message())
            .await
            .expect("WatchAssignments answers within 10 s")
            .expect("stream")
            .expect("open");
        seen.push(a.case_id);
    }
    for h in &hidden {
        assert!(
            !seen.contains(h),
            "WatchAssignments showed {h} to the gas company"
        );
    }

    let listed = xihu
        .dashboards()
        .list_cases(xihu.req(pb::ListCasesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = listed.cases.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(ids, [visible.as_str()]);
    let at_risk = xihu
        .dashboards()
        .list_at_risk(xihu.req(pb::ListAtRiskRequest { limit: 100 }))
        .await
        .expect("at risk")
        .into_inner();
    assert!(at_risk.cases.iter().all(|f| {
        f.case
            .as_ref()
            .is_some_and(|c| c.compound.starts_with("liuyin"))
    }));
    let summary = xihu
        .dashboards()
        .get_sla_summary(xihu.req(pb::GetSlaSummaryRequest {
            window: window(),
            group_by: pb::Dimension::Compound as i32,
        }))
        .await
        .expect("summary")
        .into_inner();
    assert_eq!(
        summary.totals.and_then(|t| t.rates).map(|r| r.cases),
        Some(1)
    );
    assert!(summary.groups.iter().all(|g| g.key == "liuyin-huayuan"));
    app.stop().await;
}
