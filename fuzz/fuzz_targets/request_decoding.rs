//! Fuzz target `request_decoding`: arbitrary bytes are decoded as a `whistle.v1` request
//! message with `prost` (the first byte picks which one, the rest is the wire form a
//! client would send) and then parsed the way the gRPC services parse them, with the
//! API's strict conversion functions (`whistle_api::convert`, `whistle_api::dashboard`)
//! and, for the commands, the domain's own validation (`whistle_domain::decide`) against
//! a case of the bundled demo district. Pure functions only: no store, no network.
//!
//! Checked besides "no panic":
//! * a message that decodes re-encodes to the same message;
//! * every refusal of the API layer is `ApiError::BadRequest` naming a field of *that*
//!   request (and becomes `INVALID_ARGUMENT` with the `whistle-field` trailer), and every
//!   `DomainError::Invalid` of the domain names a field the request actually has — the
//!   README promises clients the field of every `INVALID_ARGUMENT`;
//! * what is accepted is what the contract says: UUIDs, codes, keys within bounds,
//!   windows ordered and at most 400 days.
//!
//! Admin requests go further, because what they accept becomes the configuration every
//! later command is decided under: a `PublishSla` book that builds, or a `SetRoster`
//! roster the district accepts, is then used to report cases and fire their deadlines
//! (as the scheduler does), which must not panic either. One selector feeds the raw
//! input to `PublishSla` as its TOML text: the length prefix of the wire form would
//! otherwise make most mutations of the TOML undecodable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::sync::LazyLock;
use time::{Duration, OffsetDateTime};
use whistle_api::convert::{self, case_id, code, idempotency_key};
use whistle_api::{ApiError, dashboard};
use whistle_domain::{
    Actor, CaseId, CaseState, CategoryCode, Command, Ctx, DeadlineKind, District, DistrictSpec,
    DomainError, Level, MergeCase, OrgId, Party, PrincipalId, Role, RosterEntry, SlaBook, SlaSpec,
    decide, decide_merge, evolve, process,
};
use whistle_proto::v1 as pb;

const DISTRICT_TOML: &str = include_str!("../../crates/whistle-server/demo/district.toml");

/// Largest SLA document `PublishSla` accepts (crates/whistle-api/src/admin.rs).
const MAX_SLA_TOML: usize = 256 * 1024;
/// Most roster entries `SetRoster` accepts (crates/whistle-api/src/admin.rs).
const MAX_ROSTER: usize = 100_000;

struct World {
    district: District,
    book: SlaBook,
    now: OffsetDateTime,
    /// A reported case at NEIGHBOUR in 红旗家园, routed to h-wang, to decide commands on.
    open: CaseState,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let spec: DistrictSpec = toml::from_str(DISTRICT_TOML).expect("demo district parses");
    let district = District::build(spec).expect("demo district is valid");
    let sla: SlaSpec = toml::from_str(whistle_domain::sla::PRESET_83012).expect("preset parses");
    let book = SlaBook::build(sla).expect("preset is valid");
    let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid");
    let open = report(
        &district,
        &book,
        "leak_from_above",
        "hongqi-jiayuan-b1-u1",
        now,
    )
    .expect("the demo district takes a leak report");
    World {
        district,
        book,
        now,
        open,
    }
});

fn report(
    district: &District,
    book: &SlaBook,
    category: &str,
    location: &str,
    now: OffsetDateTime,
) -> Option<CaseState> {
    let cmd = Command::Report {
        case_id: CaseId(uuid::Uuid::from_u128(1)),
        category: CategoryCode::new(category),
        location: OrgId::new(location),
        description: "water through the ceiling".into(),
        channel: whistle_domain::Channel::GridWorker,
        urgency: None,
        contact: None,
    };
    let actor = Actor::new("gw-lin", Role::GridWorker);
    let ctx = Ctx {
        district,
        actor: &actor,
        now,
    };
    let events = process(&None, &cmd, &ctx, book).ok()?;
    Some(events.iter().fold(None, evolve))
}

/// Decodes `bytes` as `M`; a message that decodes must survive a re-encoding.
fn decoded<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert_eq!(again, m, "message changed through re-encoding");
    Some(m)
}

/// The API layer's answer: `Ok`, or a refusal naming one of `fields` that maps to
/// `INVALID_ARGUMENT` with the field in the trailer.
fn api<T>(r: Result<T, ApiError>, fields: &[&str]) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ApiError::BadRequest { field, reason }) => {
            assert!(
                fields.contains(&field),
                "refusal names {field:?}, not one of {fields:?}"
            );
            assert!(!reason.is_empty(), "{field}: refusal without a reason");
            let status = tonic::Status::from(ApiError::BadRequest { field, reason });
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            let trailer = status.metadata().get(whistle_api::error::FIELD_METADATA);
            assert_eq!(trailer.and_then(|v| v.to_str().ok()), Some(field));
            None
        }
        Err(other) => panic!("conversion refused with {other:?}, not BadRequest"),
    }
}

/// The domain's answer to a command parsed from a request: a refusal of the input must
/// name one of the request's `fields`.
fn domain<T>(r: Result<T, DomainError>, fields: &[&str]) {
    if let Err(DomainError::Invalid { field, .. }) = r {
        assert!(
            fields.contains(&field),
            "domain refusal names {field:?}, not one of {fields:?}"
        );
    }
}

/// The fields every case command carries (services.rs `target`).
fn target(id: &str, key: &str) -> Option<CaseId> {
    let id = api(case_id("case_id", id), &["case_id"])?;
    if let Some(k) = api(idempotency_key(key), &["idempotency_key"])? {
        assert!(!k.is_empty() && k.len() <= convert::MAX_IDEMPOTENCY_KEY);
        assert!(k.bytes().all(|b| b.is_ascii_graphic()));
    }
    Some(id)
}

/// Decides `cmd` on the open demo case as each role that may issue it.
fn decide_as_allowed(cmd: &Command, fields: &[&str]) {
    let w = &*WORLD;
    for role in cmd.allowed_roles() {
        let actor = match role {
            Role::Department => Actor::department("dept-fire", "fire"),
            Role::Handler => Actor::new("h-wang", Role::Handler),
            r => Actor::new("someone", *r),
        };
        let ctx = Ctx {
            district: &w.district,
            actor: &actor,
            now: w.now + Duration::minutes(1),
        };
        domain(decide(&w.open, cmd, &ctx), fields);
    }
}

fn handler_checked(
    field: &'static str,
    h: Option<&pb::Handler>,
) -> Option<whistle_domain::Handler> {
    let h = api(convert::handler(field, h), &[field])?;
    let id = match &h {
        whistle_domain::Handler::Principal(p) => p.as_str(),
        whistle_domain::Handler::Department(d) => d.as_str(),
    };
    assert!(
        whistle_domain::ids::is_valid_code(id),
        "accepted handler {id:?}"
    );
    Some(h)
}

/// Runs reports under `book` and `district` through every deadline the scheduler would
/// fire, with a pause in between: what a newly published configuration is used for.
fn exercise(district: &District, book: &SlaBook) {
    let w = &*WORLD;
    let system = Actor::system();
    let supervisor = Actor::new("sup", Role::Supervisor);
    for (category, location) in [
        ("leak_from_above", "hongqi-jiayuan-b1-u1"),
        ("gas_smell", "heping-beili-b2"),
        ("property_certificate", "liuyin-gongyu"),
    ] {
        let Some(mut state) = report(district, book, category, location, w.now) else {
            continue;
        };
        let mut now = w.now;
        for step in 0..12 {
            let Some(case) = state.as_ref() else { break };
            let cmd = if step == 3 {
                Command::Pause {
                    reason: "waiting for the owner".into(),
                }
            } else if step == 4 {
                now += Duration::hours(5);
                Command::Resume
            } else {
                let Some(c) = case.running_clocks().min_by_key(|c| c.deadline) else {
                    break;
                };
                now = now.max(c.deadline);
                Command::FireDeadline {
                    clock: c.key.clone(),
                    kind: DeadlineKind::Breach,
                }
            };
            let actor = if matches!(cmd, Command::FireDeadline { .. }) {
                &system
            } else {
                &supervisor
            };
            let ctx = Ctx {
                district,
                actor,
                now,
            };
            if let Ok(events) = process(&state, &cmd, &ctx, book) {
                let _ = whistle_domain::sla::deadline_ops(&events);
                state = events.iter().fold(state, evolve);
            }
        }
    }
}

fn publish_sla(toml_text: &str) {
    let w = &*WORLD;
    if toml_text.len() > MAX_SLA_TOML {
        return;
    }
    let Ok(update) = toml::from_str::<SlaSpec>(toml_text) else {
        return;
    };
    // As AdminService.PublishSla: merged into the book in force, then built.
    let Ok((spec, _changes)) = whistle_domain::admin::publish_sla(&w.book, update) else {
        return;
    };
    let Ok(book) = SlaBook::build(spec) else {
        return;
    };
    exercise(&w.district, &book);
}

fn set_roster(r: pb::SetRosterRequest) {
    let w = &*WORLD;
    if r.entries.len() > MAX_ROSTER {
        return;
    }
    let mut roster = Vec::new();
    for e in &r.entries {
        // admin.rs level_of / party_of are private; the same mapping, refusing the same.
        let level = match pb::Level::try_from(e.level) {
            Ok(pb::Level::Neighbour) => Level::Neighbour,
            Ok(pb::Level::Unit) => Level::Unit,
            Ok(pb::Level::Branch) => Level::Branch,
            Ok(pb::Level::Escalated) => Level::Escalated,
            _ => return,
        };
        let Some(org) = api(code("entries", &e.org), &["entries"]) else {
            return;
        };
        let Some(principal) = api(code("entries", &e.principal_id), &["entries"]) else {
            return;
        };
        let party = if e.party.is_empty() {
            None
        } else {
            match serde_json::from_value::<Party>(serde_json::Value::String(e.party.clone())) {
                Ok(p) => Some(p),
                Err(_) => return,
            }
        };
        roster.push(RosterEntry {
            level,
            org: OrgId(org),
            principal: PrincipalId(principal),
            party,
        });
    }
    if let Ok(district) = whistle_domain::admin::replace_roster(&w.district, roster) {
        exercise(&district, &w.book);
    }
}

/// Roles the API derives a report's default channel from.
const ROLES: [Role; 4] = [Role::Resident, Role::GridWorker, Role::Handler, Role::Admin];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let w = &*WORLD;
    let role = ROLES[usize::from(selector >> 6)];
    match selector % 21 {
        0 => {
            let Some(r) = decoded::<pb::ReportCaseRequest>(bytes) else {
                return;
            };
            let category = api(code("category", &r.category), &["category"]);
            let location = api(code("location", &r.location), &["location"]);
            let channel = api(convert::channel(r.channel, role), &["channel"]);
            let urgency = api(convert::urgency(r.urgency), &["urgency"]);
            let _ = api(
                convert::resident_contact(r.contact.as_ref()),
                &["contact.name", "contact.phone", "contact.address"],
            );
            let _ = api(idempotency_key(&r.idempotency_key), &["idempotency_key"]);
            let (Some(category), Some(location), Some(channel), Some(urgency)) =
                (category, location, channel, urgency)
            else {
                return;
            };
            let cmd = Command::Report {
                case_id: CaseId(uuid::Uuid::from_u128(7)),
                category: CategoryCode(category),
                location: OrgId(location),
                description: r.description,
                channel,
                urgency,
                contact: None,
            };
            let actor = Actor::new("reporter", role);
            let ctx = Ctx {
                district: &w.district,
                actor: &actor,
                now: w.now,
            };
            let result = process(&None, &cmd, &ctx, &w.book);
            domain(result, &["category", "location", "description"]);
        }
        1 => {
            let Some(r) = decoded::<pb::AddNoteRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                let cmd = Command::AddNote {
                    text: r.text,
                    evidence: convert::evidence(&r.evidence),
                };
                decide_as_allowed(&cmd, &["text", "evidence"]);
            }
        }
        2 => {
            let Some(r) = decoded::<pb::WithdrawCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                decide_as_allowed(&Command::Withdraw { reason: r.reason }, &["reason"]);
            }
        }
        3 => {
            let Some(r) = decoded::<pb::ConfirmResolutionRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                let s = api(
                    u8::try_from(r.satisfaction)
                        .map_err(|_| ApiError::bad("satisfaction", "must be 1 to 5")),
                    &["satisfaction"],
                );
                if let Some(satisfaction) = s {
                    let cmd = Command::Confirm {
                        satisfaction,
                        comment: r.comment,
                    };
                    decide_as_allowed(&cmd, &["satisfaction", "comment"]);
                }
            }
        }
        4 => {
            let Some(r) = decoded::<pb::ReopenCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                decide_as_allowed(&Command::Reopen { reason: r.reason }, &["reason"]);
            }
        }
        5 => {
            let Some(r) = decoded::<pb::CaseCommandRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                for cmd in [Command::Acknowledge, Command::ArriveOnSite, Command::Resume] {
                    decide_as_allowed(&cmd, &[]);
                }
            }
        }
        6 => {
            let Some(r) = decoded::<pb::ReasonRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                let reason = r.reason;
                for cmd in [
                    Command::Escalate {
                        reason: reason.clone(),
                    },
                    Command::Decline {
                        reason: reason.clone(),
                    },
                    Command::Pause {
                        reason: reason.clone(),
                    },
                    Command::Reject {
                        reason: reason.clone(),
                    },
                    Command::EraseContact { reason },
                ] {
                    decide_as_allowed(&cmd, &["reason"]);
                }
            }
        }
        7 => {
            let Some(r) = decoded::<pb::AssignCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some()
                && let Some(handler) = handler_checked("handler", r.handler.as_ref())
            {
                decide_as_allowed(&Command::Assign { handler }, &["handler"]);
            }
        }
        8 => {
            let Some(r) = decoded::<pb::ResolveCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some() {
                let cmd = Command::Resolve {
                    summary: r.summary,
                    evidence: convert::evidence(&r.evidence),
                };
                decide_as_allowed(&cmd, &["summary", "evidence"]);
            }
        }
        9 => {
            let Some(r) = decoded::<pb::TransferCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some()
                && let Some(to) = handler_checked("to", r.to.as_ref())
            {
                decide_as_allowed(
                    &Command::Transfer {
                        to,
                        reason: r.reason,
                    },
                    &["to", "reason"],
                );
            }
        }
        10 => {
            let Some(r) = decoded::<pb::MergeCaseRequest>(bytes) else {
                return;
            };
            if target(&r.case_id, &r.idempotency_key).is_some()
                && let Some(into) = api(case_id("into_case_id", &r.into_case_id), &["into_case_id"])
            {
                let cmd = MergeCase {
                    into,
                    reason: r.reason,
                };
                let actor = Actor::new("sup", Role::Supervisor);
                let ctx = Ctx {
                    district: &w.district,
                    actor: &actor,
                    now: w.now,
                };
                // The target is looked up by the id given: unknown here, so also the open
                // case merged into itself.
                domain(
                    decide_merge(&w.open, &None, &cmd, &ctx),
                    &["into_case_id", "reason"],
                );
                domain(
                    decide_merge(&w.open, &w.open, &cmd, &ctx),
                    &["into_case_id", "reason"],
                );
            }
        }
        11 => {
            let Some(r) = decoded::<pb::GetCaseRequest>(bytes) else {
                return;
            };
            if let Some(id) = api(case_id("case_id", &r.case_id), &["case_id"]) {
                assert_eq!(uuid::Uuid::parse_str(&r.case_id).ok(), Some(id.0));
            }
        }
        12 => {
            let Some(r) = decoded::<pb::GetCaseTimelineRequest>(bytes) else {
                return;
            };
            let _ = api(case_id("case_id", &r.case_id), &["case_id"]);
        }
        13 => {
            let Some(r) = decoded::<pb::ListCasesRequest>(bytes) else {
                return;
            };
            let fields = [
                "filter.statuses",
                "filter.levels",
                "filter.categories",
                "filter.compounds",
                "filter.communities",
                "filter.streets",
                "filter.departments",
                "filter.grids",
                "filter.window",
            ];
            if let Some(Some(f)) = api(
                dashboard::filter(r.filter.as_ref(), &w.district, w.now),
                &fields,
            ) && let (Some(from), Some(to)) = (f.reported_from, f.reported_to)
            {
                assert!(from < to, "accepted an empty window");
            }
        }
        14 => {
            let Some(r) = decoded::<pb::GetSlaSummaryRequest>(bytes) else {
                return;
            };
            if let Some((from, to)) =
                api(dashboard::window(r.window.as_ref(), "window"), &["window"])
            {
                assert!(
                    from < to && to - from <= dashboard::MAX_WINDOW,
                    "accepted {from}..{to}"
                );
            }
        }
        15 => {
            let _ = decoded::<pb::ListAtRiskRequest>(bytes);
        }
        16 => {
            let _ = decoded::<pb::WatchSlaRequest>(bytes);
        }
        17 => {
            let _ = decoded::<pb::WatchAssignmentsRequest>(bytes);
        }
        18 => {
            if let Some(r) = decoded::<pb::PublishSlaRequest>(bytes) {
                publish_sla(&r.toml);
            }
        }
        19 => {
            if let Some(r) = decoded::<pb::SetRosterRequest>(bytes) {
                set_roster(r);
            }
        }
        _ => {
            // The TOML of a PublishSla request, as the server receives it after decoding.
            if let Ok(text) = std::str::from_utf8(bytes) {
                publish_sla(text);
            }
        }
    }
});
