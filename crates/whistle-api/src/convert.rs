//! Translation between the protobuf contract and domain values. Parsing is strict and
//! bounded: every refusal names the request field it came from.

use crate::error::ApiError;
use prost_types::Timestamp;
use time::OffsetDateTime;
use whistle_domain::{
    Actor, BreachAction, Case, CaseId, Channel, ClockOutcome, ClockScope, Closure, DepartmentId,
    Event, EventBody, Evidence, Handler, Level, MilestoneClock, PolicyClass, PrincipalId, Role,
    Status, Urgency, ids::is_valid_code,
};
use whistle_proto::v1 as pb;
use whistle_store::RecordedEvent;

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

pub fn case_id(field: &'static str, s: &str) -> Result<CaseId, ApiError> {
    if s.is_empty() {
        return Err(ApiError::bad(field, "is required"));
    }
    uuid::Uuid::parse_str(s)
        .map(CaseId)
        .map_err(|_| ApiError::bad(field, format!("{:?} is not a UUID", truncate(s))))
}

pub fn code(field: &'static str, s: &str) -> Result<String, ApiError> {
    if s.is_empty() {
        return Err(ApiError::bad(field, "is required"));
    }
    if !is_valid_code(s) {
        return Err(ApiError::bad(
            field,
            format!(
                "{:?} is not a valid code (1-64 of A-Z a-z 0-9 - _)",
                truncate(s)
            ),
        ));
    }
    Ok(s.to_string())
}

pub fn idempotency_key(s: &str) -> Result<Option<String>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_IDEMPOTENCY_KEY || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad(
            "idempotency_key",
            "must be 1-128 printable ASCII characters without spaces",
        ));
    }
    Ok(Some(s.to_string()))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

pub fn channel(v: i32, role: Role) -> Result<Channel, ApiError> {
    Ok(match pb::Channel::try_from(v) {
        Ok(pb::Channel::Unspecified) => match role {
            Role::Resident => Channel::ResidentApp,
            _ => Channel::GridWorker,
        },
        Ok(pb::Channel::GridWorker) => Channel::GridWorker,
        Ok(pb::Channel::ResidentApp) => Channel::ResidentApp,
        Ok(pb::Channel::Hotline) => Channel::Hotline,
        Ok(pb::Channel::WalkIn) => Channel::WalkIn,
        Ok(pb::Channel::Patrol) => Channel::Patrol,
        Err(_) => return Err(ApiError::bad("channel", format!("unknown channel {v}"))),
    })
}

pub fn urgency(v: i32) -> Result<Option<Urgency>, ApiError> {
    Ok(match pb::Urgency::try_from(v) {
        Ok(pb::Urgency::Unspecified) => None,
        Ok(pb::Urgency::Normal) => Some(Urgency::Normal),
        Ok(pb::Urgency::Urgent) => Some(Urgency::Urgent),
        Ok(pb::Urgency::Emergency) => Some(Urgency::Emergency),
        Err(_) => return Err(ApiError::bad("urgency", format!("unknown urgency {v}"))),
    })
}

pub fn handler(field: &'static str, h: Option<&pb::Handler>) -> Result<Handler, ApiError> {
    match h.and_then(|h| h.kind.as_ref()) {
        Some(pb::handler::Kind::PrincipalId(p)) => {
            Ok(Handler::Principal(PrincipalId(code(field, p)?)))
        }
        Some(pb::handler::Kind::DepartmentId(d)) => {
            Ok(Handler::Department(DepartmentId(code(field, d)?)))
        }
        None => Err(ApiError::bad(
            field,
            "is required: set principal_id or department_id",
        )),
    }
}

/// Evidence as given; the domain bounds count, URL and hash.
pub fn evidence(items: &[pb::Evidence]) -> Vec<Evidence> {
    items
        .iter()
        .map(|e| Evidence {
            url: e.url.clone(),
            sha256: e.sha256.clone(),
        })
        .collect()
}

pub fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

pub fn level(l: Level) -> pb::Level {
    match l {
        Level::Neighbour => pb::Level::Neighbour,
        Level::Unit => pb::Level::Unit,
        Level::Branch => pb::Level::Branch,
        Level::Escalated => pb::Level::Escalated,
    }
}

pub fn policy_class(c: PolicyClass) -> pb::PolicyClass {
    match c {
        PolicyClass::Routine => pb::PolicyClass::Routine,
        PolicyClass::Complex => pb::PolicyClass::Complex,
        PolicyClass::Urgent => pb::PolicyClass::Urgent,
        PolicyClass::Emergency => pb::PolicyClass::Emergency,
    }
}

fn channel_pb(c: Channel) -> pb::Channel {
    match c {
        Channel::GridWorker => pb::Channel::GridWorker,
        Channel::ResidentApp => pb::Channel::ResidentApp,
        Channel::Hotline => pb::Channel::Hotline,
        Channel::WalkIn => pb::Channel::WalkIn,
        Channel::Patrol => pb::Channel::Patrol,
    }
}

pub fn handler_pb(h: &Handler) -> pb::Handler {
    pb::Handler {
        kind: Some(match h {
            Handler::Principal(p) => pb::handler::Kind::PrincipalId(p.0.clone()),
            Handler::Department(d) => pb::handler::Kind::DepartmentId(d.0.clone()),
        }),
    }
}

fn duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn milestone_view(m: &MilestoneClock, now: OffsetDateTime) -> pb::MilestoneView {
    let (state, ended_at) = match &m.outcome {
        None if m.warned => ("warned", None),
        None => ("pending", None),
        Some(ClockOutcome::Met { at, on_time: true }) => ("met", Some(*at)),
        Some(ClockOutcome::Met { at, on_time: false }) => ("met_late", Some(*at)),
        Some(ClockOutcome::Breached { at }) => ("breached", Some(*at)),
        Some(ClockOutcome::Cancelled { at }) => ("cancelled", Some(*at)),
    };
    let remaining = if m.outcome.is_none() {
        (m.deadline - now).whole_seconds()
    } else {
        0
    };
    pb::MilestoneView {
        key: m.key.clone(),
        milestone: m.milestone.clone(),
        scope: match m.scope {
            ClockScope::Rung => "rung",
            ClockScope::Case => "case",
        }
        .into(),
        level: level(m.level).into(),
        policy: m.policy.clone(),
        policy_version: m.policy_version,
        target: Some(duration(m.target_seconds)),
        calendar: m.calendar.clone(),
        started_at: Some(timestamp(m.started_at)),
        warn_at: Some(timestamp(m.warn_at)),
        deadline: Some(timestamp(m.deadline)),
        paused: Some(duration(m.paused_seconds)),
        state: state.into(),
        remaining: Some(duration(remaining)),
        on_breach: match m.on_breach {
            BreachAction::Escalate => "escalate",
            BreachAction::Notify => "notify",
            BreachAction::None => "none",
        }
        .into(),
        ended_at: ended_at.map(timestamp),
    }
}

/// The case as it stands at `now` (remaining times are computed against it).
pub fn case_view(c: &Case, now: OffsetDateTime) -> pb::CaseView {
    let (stage, closure) = match &c.status {
        Status::Open(s) => (s.as_str(), ""),
        Status::Resolved { .. } => ("", ""),
        Status::Closed(cl) => ("", cl.as_str()),
    };
    let (satisfaction, merged_into) = match &c.status {
        Status::Closed(Closure::Confirmed { satisfaction }) => {
            (u32::from(satisfaction.get()), String::new())
        }
        Status::Closed(Closure::Merged { into }) => (0, into.to_string()),
        _ => (0, String::new()),
    };
    pb::CaseView {
        case_id: c.id.to_string(),
        version: c.version,
        category: c.category.0.clone(),
        policy_class: policy_class(c.policy_class).into(),
        location: c.location.0.clone(),
        compound: c.compound.0.clone(),
        grid: c.grid.as_ref().map(|g| g.0.clone()).unwrap_or_default(),
        channel: channel_pb(c.channel).into(),
        reporter_id: c.reporter.0.clone(),
        description: c.description.clone(),
        level: level(c.level).into(),
        fast_channel: c.fast_channel,
        status: c.status.as_str().to_string(),
        stage: stage.to_string(),
        closure: closure.to_string(),
        handler: c.handler().map(handler_pb),
        paused: c.paused.is_some(),
        pause_reason: c
            .paused
            .as_ref()
            .map(|p| p.reason.clone())
            .unwrap_or_default(),
        reported_at: Some(timestamp(c.reported_at)),
        resolved_at: c.resolved_at.map(timestamp),
        closed_at: c.closed_at.map(timestamp),
        satisfaction,
        escalations: c.escalations,
        reopen_count: c.reopen_count,
        declined_by: c.declined_by.iter().map(|d| d.0.clone()).collect(),
        duplicate_case_ids: c.duplicates.iter().map(|d| d.to_string()).collect(),
        merged_into,
        milestones: c.clocks.iter().map(|m| milestone_view(m, now)).collect(),
        holds: c
            .holds
            .iter()
            .map(|h| pb::HoldView {
                handler: Some(handler_pb(&h.handler)),
                level: level(h.level).into(),
                from: Some(timestamp(h.from)),
                to: h.to.map(timestamp),
            })
            .collect(),
        contact: None,
    }
}

/// Bounds of a resident's contact details.
pub const MAX_CONTACT_NAME_CHARS: usize = 50;
pub const MAX_CONTACT_ADDRESS_CHARS: usize = 200;

/// A report's contact details, validated; `None` when none were given.
pub fn resident_contact(
    c: Option<&pb::ResidentContact>,
) -> Result<Option<(String, String, String)>, ApiError> {
    let Some(c) = c else { return Ok(None) };
    let name = c.name.trim();
    let phone = c.phone.trim();
    let address = c.address.trim();
    if name.is_empty() && phone.is_empty() && address.is_empty() {
        return Ok(None);
    }
    let printable = |s: &str| !s.chars().any(|ch| ch.is_control() || is_bidi_control(ch));
    let n = name.chars().count();
    if n == 0 || n > MAX_CONTACT_NAME_CHARS || !printable(name) {
        return Err(ApiError::bad(
            "contact.name",
            format!("1-{MAX_CONTACT_NAME_CHARS} printable characters"),
        ));
    }
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    if !(5..=20).contains(&phone.len())
        || digits < 5
        || !phone
            .chars()
            .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | ' '))
    {
        return Err(ApiError::bad(
            "contact.phone",
            "5-20 characters: digits, spaces, '+' and '-'",
        ));
    }
    if address.chars().count() > MAX_CONTACT_ADDRESS_CHARS || !printable(address) {
        return Err(ApiError::bad(
            "contact.address",
            format!("at most {MAX_CONTACT_ADDRESS_CHARS} printable characters"),
        ));
    }
    Ok(Some((
        name.to_string(),
        phone.to_string(),
        address.to_string(),
    )))
}

/// Unicode bidirectional controls: invisible, and able to make a name display as another.
fn is_bidi_control(ch: char) -> bool {
    matches!(ch, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Who sees a case's contact details in full: admins, the reporter, and whoever holds
/// the case now (they must reach the resident). Everyone else sees them masked.
pub fn sees_contact_in_full(actor: &Actor, case: &Case) -> bool {
    if actor.role == Role::Admin || case.reporter == actor.principal {
        return true;
    }
    match case.handler() {
        Some(Handler::Principal(p)) => *p == actor.principal,
        Some(Handler::Department(d)) => {
            actor.role == Role::Department && actor.department.as_ref() == Some(d)
        }
        None => false,
    }
}

fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return "*".repeat(digits.len());
    }
    let head: String = digits.iter().take(3).collect();
    let tail: String = digits.iter().skip(digits.len() - 4).collect();
    format!("{head}{}{tail}", "*".repeat(digits.len() - 7))
}

/// The contact as `actor` may see it (`personal`: the stored record, if still there).
pub fn contact_view(
    actor: &Actor,
    case: &Case,
    personal: Option<&whistle_store::PersonalData>,
) -> Option<pb::ContactView> {
    if case.contact_erased {
        return Some(pb::ContactView {
            erased: true,
            ..Default::default()
        });
    }
    let p = personal?;
    Some(if sees_contact_in_full(actor, case) {
        pb::ContactView {
            name: p.name.clone(),
            phone: p.phone.clone(),
            address: p.address.clone(),
            masked: false,
            erased: false,
        }
    } else {
        pb::ContactView {
            name: mask_name(&p.name),
            phone: mask_phone(&p.phone),
            address: if p.address.is_empty() {
                String::new()
            } else {
                "***".to_string()
            },
            masked: true,
            erased: false,
        }
    })
}

/// Decode a stored event into a domain event (the one decoder lives in
/// `whistle_bus::route`, shared with the relay).
pub fn decode(rec: &RecordedEvent) -> Result<Event, ApiError> {
    whistle_bus::decode(rec).map_err(|e| ApiError::Corrupt(e.to_string()))
}

/// `2026-03-02 09:08:00+08`: times in summaries are shown in China Standard Time.
pub fn local_time(t: OffsetDateTime) -> String {
    let l = t.to_offset(time::macros::offset!(+8));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+08",
        l.year(),
        u8::from(l.month()),
        l.day(),
        l.hour(),
        l.minute(),
        l.second()
    )
}

/// One human line per event, for timelines and the CLI.
pub fn summary(body: &EventBody) -> String {
    match body {
        EventBody::CaseReported {
            category,
            level,
            fast_channel,
            location,
            ..
        } => format!(
            "reported {category} at {location}; triage: {level}{}",
            if *fast_channel {
                " (fast channel 急事急办)"
            } else {
                ""
            }
        ),
        EventBody::CaseAssigned { level, handler } => format!("assigned to {handler} at {level}"),
        EventBody::CaseAcknowledged { level, handler } => {
            format!("signed for (签收) by {handler} at {level}")
        }
        EventBody::ArrivedOnSite { handler, .. } => format!("{handler} arrived on site"),
        EventBody::NoteAdded { text, evidence } => {
            format!("note: {text} ({} evidence)", evidence.len())
        }
        EventBody::CaseResolved {
            handler, summary, ..
        } => {
            format!("resolved by {handler}: {summary}")
        }
        EventBody::ResolutionConfirmed {
            satisfaction,
            comment,
        } => format!(
            "resolution confirmed, satisfaction {}/5 {comment}",
            satisfaction.get()
        ),
        EventBody::CaseReopened { reason } => format!("reopened: {reason}"),
        EventBody::CaseEscalated { from, to, cause } => match cause {
            whistle_domain::EscalationCause::Requested { reason } => {
                format!("escalated {from} → {to}: {reason}")
            }
            whistle_domain::EscalationCause::MilestoneBreached { milestone } => {
                format!("escalated {from} → {to}: milestone {milestone} breached")
            }
        },
        EventBody::CaseTransferred {
            from, to, reason, ..
        } => {
            format!("transferred {from} → {to}: {reason}")
        }
        EventBody::CaseDeclined { department, reason } => {
            format!("declined by department:{department}: {reason}")
        }
        EventBody::ClockPaused { reason } => format!("clock paused: {reason}"),
        EventBody::ClockResumed { paused_seconds } => {
            format!("clock resumed after {paused_seconds} s")
        }
        EventBody::CaseWithdrawn { reason } => format!("withdrawn: {reason}"),
        EventBody::CaseRejected { reason } => format!("rejected: {reason}"),
        EventBody::CaseMerged { into, reason } => format!("merged into {into}: {reason}"),
        EventBody::DuplicateMerged { duplicate } => format!("duplicate {duplicate} merged in"),
        EventBody::MilestoneStarted {
            milestone,
            level,
            deadline,
            policy,
            policy_version,
            ..
        } => format!(
            "clock {milestone} started at {level}: due {} ({policy} v{policy_version})",
            local_time(*deadline)
        ),
        EventBody::MilestoneMet { key, on_time } => {
            format!("{key} met {}", if *on_time { "on time" } else { "late" })
        }
        EventBody::MilestoneWarned { key } => format!("{key} at risk"),
        EventBody::MilestoneBreached { key } => format!("{key} breached"),
        EventBody::MilestoneCancelled { key, reason } => format!("{key} stopped: {reason}"),
        EventBody::DeadlineShifted {
            key,
            paused_seconds,
            ..
        } => format!("{key} moved {paused_seconds} s by the pause"),
        EventBody::ContactErased { reason, .. } => {
            format!("the reporter's personal data was erased: {reason}")
        }
        EventBody::DeliveryFailed {
            department,
            event_id,
            deliveries,
        } => format!(
            "department:{department} could not take event {event_id} after {deliveries} deliveries"
        ),
        EventBody::CaseTakenOver {
            principal,
            milestone,
        } => format!(
            "taken over by the district ({principal}): no department signed, {milestone} breached"
        ),
    }
}

pub fn timeline_entry(rec: &RecordedEvent, event: &Event) -> pb::TimelineEntry {
    pb::TimelineEntry {
        version: rec.version,
        position: rec.position,
        event_id: rec.event_id.to_string(),
        event_type: rec.event_type.clone(),
        actor: Some(pb::Actor {
            principal_id: rec.actor_id.clone(),
            role: rec.actor_role.clone(),
        }),
        occurred_at: Some(timestamp(rec.occurred_at)),
        recorded_at: Some(timestamp(rec.recorded_at)),
        summary: summary(&event.body),
        payload_json: rec.payload.to_string(),
    }
}
