//! `decide`: the rules of the escalation ladder as one pure function from
//! (state, command, context) to events or a refusal.
//!
//! The invariants it keeps (proven by the table and property tests in `tests/`):
//! no rung is skipped except by triage into the fast channel; a closed case accepts no
//! command but reopen; only the holder of a case signs for, works and resolves it.

use crate::case::{Case, CaseState, Closure, Handler, Stage, Status};
use crate::catalogue::{Category, Level, PolicyClass, Urgency};
use crate::command::{Command, MergeCase};
use crate::district::District;
use crate::error::DomainError;
use crate::event::{
    BreachAction, ClockScope, DeadlineKind, EscalationCause, Event, EventBody, Satisfaction,
};
use crate::ids::is_valid_code;
use crate::org::OrgKind;
use crate::principal::{Actor, Role};
use crate::validate::{
    MAX_DESCRIPTION_CHARS, MAX_REASON_CHARS, MAX_TEXT_CHARS, evidence, optional_text, required_text,
};
use time::OffsetDateTime;

/// Everything `decide` needs besides the state and the command.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub district: &'a District,
    pub actor: &'a Actor,
    /// The time the command takes effect; becomes the events' `occurred_at`.
    pub now: OffsetDateTime,
}

/// Triage: the starting rung and the response-time class of a new case.
/// Pressing cases (urgent/emergency, by category or by the reporter's claim) take the
/// fast channel straight to `ESCALATED` (急事急办); the flag says whether that skipped the
/// category's usual start.
pub fn triage(category: &Category, requested: Option<Urgency>) -> (Level, PolicyClass, bool) {
    let class = requested
        .and_then(Urgency::as_class)
        .map_or(category.policy, |c| c.max(category.policy));
    if class.is_pressing() {
        (
            Level::Escalated,
            class,
            category.starts_at != Level::Escalated,
        )
    } else {
        (category.starts_at, class, false)
    }
}

pub fn decide(state: &CaseState, cmd: &Command, ctx: &Ctx<'_>) -> Result<Vec<Event>, DomainError> {
    if !cmd.allowed_roles().contains(&ctx.actor.role) {
        return Err(DomainError::Forbidden(format!(
            "role {} may not {}",
            ctx.actor.role,
            cmd.name()
        )));
    }
    // Outside the actor's view a case does not exist for them: checked before any rule,
    // so a refusal never tells what state the case is in.
    if let Some(case) = state
        && !crate::scope::may_address(ctx.actor, case, ctx.district)
    {
        return Err(DomainError::NotFound);
    }
    let bodies = match (state, cmd) {
        (Some(_), Command::Report { .. }) => return Err(DomainError::AlreadyExists),
        (
            None,
            Command::Report {
                case_id,
                category,
                location,
                description,
                channel,
                urgency,
                contact,
            },
        ) => {
            let cat = ctx.district.catalogue.get(category).ok_or_else(|| {
                DomainError::invalid("category", format!("unknown category {category}"))
            })?;
            let node = ctx.district.org.get(location).ok_or_else(|| {
                DomainError::invalid("location", format!("unknown location {location}"))
            })?;
            if node.kind < OrgKind::Compound {
                return Err(DomainError::invalid(
                    "location",
                    format!(
                        "{location} is a {}; give a compound, building or unit",
                        node.kind.as_str()
                    ),
                ));
            }
            if !crate::scope::may_report_at(ctx.actor, location, ctx.district) {
                return Err(DomainError::Forbidden(format!(
                    "location {location} is outside the reporter's scope"
                )));
            }
            let compound = ctx
                .district
                .org
                .ancestor_of_kind(location, OrgKind::Compound)
                .map(|n| n.id.clone())
                .ok_or_else(|| DomainError::invalid("location", "is not inside a compound"))?;
            let description = required_text("description", description, MAX_DESCRIPTION_CHARS)?;
            let (level, policy_class, fast_channel) = triage(cat, *urgency);
            vec![EventBody::CaseReported {
                case_id: *case_id,
                category: category.clone(),
                policy_class,
                requested_urgency: *urgency,
                location: location.clone(),
                compound,
                grid: ctx.district.org.grid_of(location).cloned(),
                channel: *channel,
                description,
                level,
                fast_channel,
                contact: *contact,
            }]
        }
        (None, _) => return Err(DomainError::NotFound),
        (Some(case), cmd) => on_case(case, cmd, ctx)?,
    };
    Ok(bodies
        .into_iter()
        .map(|body| Event {
            actor: ctx.actor.clone(),
            occurred_at: ctx.now,
            body,
        })
        .collect())
}

/// Merge `dup` into `target`: returns the events for the duplicate's stream and for the
/// target's stream, to be appended atomically.
pub fn decide_merge(
    dup: &CaseState,
    target: &CaseState,
    cmd: &MergeCase,
    ctx: &Ctx<'_>,
) -> Result<(Vec<Event>, Vec<Event>), DomainError> {
    if !MergeCase::ALLOWED_ROLES.contains(&ctx.actor.role) {
        return Err(DomainError::Forbidden(format!(
            "role {} may not MergeCase",
            ctx.actor.role
        )));
    }
    let dup = dup.as_ref().ok_or(DomainError::NotFound)?;
    let target = target
        .as_ref()
        .ok_or_else(|| DomainError::invalid("into_case_id", "no such case"))?;
    if !crate::scope::may_address(ctx.actor, dup, ctx.district) {
        return Err(DomainError::NotFound);
    }
    if !crate::scope::may_address(ctx.actor, target, ctx.district) {
        return Err(DomainError::invalid("into_case_id", "no such case"));
    }
    if dup.id == target.id {
        return Err(DomainError::invalid(
            "into_case_id",
            "a case cannot be merged into itself",
        ));
    }
    let reason = required_text("reason", &cmd.reason, MAX_REASON_CHARS)?;
    if dup.is_closed() {
        return Err(transition(
            "MergeCase",
            dup,
            "a closed case accepts no command but reopen",
        ));
    }
    if target.is_closed() {
        return Err(DomainError::Transition {
            command: "MergeCase",
            state: "closed (target)".into(),
            reason: "cannot merge into a closed case".into(),
        });
    }
    let ev = |body| Event {
        actor: ctx.actor.clone(),
        occurred_at: ctx.now,
        body,
    };
    Ok((
        vec![ev(EventBody::CaseMerged {
            into: target.id,
            reason,
        })],
        vec![ev(EventBody::DuplicateMerged { duplicate: dup.id })],
    ))
}

fn state_name(case: &Case) -> String {
    let mut s = match &case.status {
        Status::Open(stage) => format!("open/{} at {}", stage.as_str(), case.level),
        Status::Resolved { .. } => format!("resolved at {}", case.level),
        Status::Closed(c) => format!("closed ({})", c.as_str()),
    };
    if case.paused.is_some() {
        s.push_str(", paused");
    }
    s
}

fn transition(command: &'static str, case: &Case, reason: impl Into<String>) -> DomainError {
    DomainError::Transition {
        command,
        state: state_name(case),
        reason: reason.into(),
    }
}

/// Does the actor act for `handler`?
fn holds(actor: &Actor, handler: &Handler) -> bool {
    match handler {
        Handler::Principal(p) => &actor.principal == p,
        Handler::Department(d) => {
            actor.role == Role::Department && actor.department.as_ref() == Some(d)
        }
    }
}

/// Supervisors and administrators may steer any case they can see.
fn oversees(actor: &Actor) -> bool {
    matches!(actor.role, Role::Supervisor | Role::Admin | Role::System)
}

/// The handler an actor signs as at `level`, if their role can hold a case there.
fn signer(actor: &Actor, level: Level) -> Result<Handler, DomainError> {
    match (level, actor.role) {
        (Level::Escalated, Role::Department) => actor
            .department
            .clone()
            .map(Handler::Department)
            .ok_or_else(|| {
                DomainError::Forbidden("department account without a department".into())
            }),
        (Level::Escalated, _) => Err(DomainError::Forbidden(
            "at ESCALATED only a department signs for a case".into(),
        )),
        (_, Role::Handler) => Ok(Handler::Principal(actor.principal.clone())),
        (_, _) => Err(DomainError::Forbidden(format!(
            "at {level} only a handler of the rung signs for a case"
        ))),
    }
}

/// Validate a handler named by a dispatcher or in a transfer for the case's rung.
fn check_handler(
    field: &'static str,
    handler: &Handler,
    level: Level,
    district: &District,
) -> Result<(), DomainError> {
    match (level, handler) {
        (Level::Escalated, Handler::Department(d)) => {
            if district.departments.contains_key(d) {
                Ok(())
            } else {
                Err(DomainError::invalid(
                    field,
                    format!("unknown department {d}"),
                ))
            }
        }
        (_, Handler::Department(_)) => Err(DomainError::invalid(
            field,
            format!("a department handles cases only at ESCALATED; the case is at {level}"),
        )),
        (_, Handler::Principal(p)) => {
            if is_valid_code(p.as_str()) {
                Ok(())
            } else {
                Err(DomainError::invalid(
                    field,
                    format!("invalid principal id {p:?}"),
                ))
            }
        }
    }
}

fn on_case(case: &Case, cmd: &Command, ctx: &Ctx<'_>) -> Result<Vec<EventBody>, DomainError> {
    let name = cmd.name();
    let actor = ctx.actor;
    // Erasure is the one other command a closed case accepts: a resident's right to have
    // their details removed does not end with the case.
    if case.is_closed() && !matches!(cmd, Command::Reopen { .. } | Command::EraseContact { .. }) {
        return Err(transition(
            name,
            case,
            "a closed case accepts no command but reopen",
        ));
    }
    let not_paused = || {
        if case.paused.is_some() {
            Err(transition(
                name,
                case,
                "the clock is paused; resume it first",
            ))
        } else {
            Ok(())
        }
    };
    let stage = match &case.status {
        Status::Open(stage) => Some(stage),
        _ => None,
    };
    let open_stage = || stage.ok_or_else(|| transition(name, case, "the case is not open"));

    let events = match cmd {
        Command::Report { .. } => return Err(DomainError::AlreadyExists),
        Command::Assign { handler } => {
            let stage = open_stage()?;
            check_handler("handler", handler, case.level, ctx.district)?;
            if stage.handler() == Some(handler) {
                return Err(transition(name, case, format!("already held by {handler}")));
            }
            vec![EventBody::CaseAssigned {
                level: case.level,
                handler: handler.clone(),
            }]
        }
        Command::Acknowledge => {
            not_paused()?;
            // Whoever a dispatcher assigned the case to signs as that handler, even a district
            // officer at ESCALATED taking over what no department accepted (兜底); otherwise
            // the actor must be able to hold a case at this rung.
            let me = match (&case.status, signer(actor, case.level)) {
                (Status::Open(Stage::Assigned(h)), _) if holds(actor, h) => h.clone(),
                (_, me) => me?,
            };
            match open_stage()? {
                Stage::Unassigned => {
                    if let Handler::Department(d) = &me
                        && case.declined_by.contains(d)
                    {
                        return Err(DomainError::Forbidden(format!(
                            "department {d} declined this case; a dispatcher must assign it again"
                        )));
                    }
                }
                Stage::Assigned(h) => {
                    if h != &me {
                        return Err(DomainError::Forbidden(format!(
                            "the case is assigned to {h}"
                        )));
                    }
                }
                Stage::Acknowledged(_) | Stage::OnSite(_) => {
                    return Err(transition(name, case, "already signed for"));
                }
            }
            vec![EventBody::CaseAcknowledged {
                level: case.level,
                handler: me,
            }]
        }
        Command::ArriveOnSite => {
            not_paused()?;
            match open_stage()? {
                Stage::Acknowledged(h) if holds(actor, h) => vec![EventBody::ArrivedOnSite {
                    level: case.level,
                    handler: h.clone(),
                }],
                Stage::Acknowledged(h) | Stage::OnSite(h) | Stage::Assigned(h)
                    if !holds(actor, h) =>
                {
                    return Err(DomainError::Forbidden(format!("the case is held by {h}")));
                }
                Stage::OnSite(_) => return Err(transition(name, case, "already on site")),
                _ => return Err(transition(name, case, "sign for the case first")),
            }
        }
        Command::AddNote {
            text,
            evidence: items,
        } => vec![EventBody::NoteAdded {
            text: required_text("text", text, MAX_TEXT_CHARS)?,
            evidence: evidence("evidence", items)?,
        }],
        Command::Resolve {
            summary,
            evidence: items,
        } => {
            not_paused()?;
            let h = match open_stage()? {
                Stage::Acknowledged(h) | Stage::OnSite(h) if holds(actor, h) => h.clone(),
                Stage::Assigned(h) | Stage::Acknowledged(h) | Stage::OnSite(h)
                    if !holds(actor, h) =>
                {
                    return Err(DomainError::Forbidden(format!("the case is held by {h}")));
                }
                _ => return Err(transition(name, case, "sign for the case first")),
            };
            vec![EventBody::CaseResolved {
                level: case.level,
                handler: h,
                summary: required_text("summary", summary, MAX_TEXT_CHARS)?,
                evidence: evidence("evidence", items)?,
            }]
        }
        Command::Confirm {
            satisfaction,
            comment,
        } => {
            let satisfaction = Satisfaction::new(*satisfaction)
                .ok_or_else(|| DomainError::invalid("satisfaction", "must be 1 to 5"))?;
            let comment = optional_text("comment", comment, MAX_TEXT_CHARS)?;
            if !matches!(case.status, Status::Resolved { .. }) {
                return Err(transition(
                    name,
                    case,
                    "only a resolved case can be confirmed",
                ));
            }
            if actor.role == Role::Resident && actor.principal != case.reporter {
                return Err(DomainError::Forbidden(
                    "only the reporter confirms a resolution".into(),
                ));
            }
            vec![EventBody::ResolutionConfirmed {
                satisfaction,
                comment,
            }]
        }
        Command::Reopen { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            match &case.status {
                Status::Open(_) => return Err(transition(name, case, "the case is open")),
                Status::Closed(Closure::Merged { into }) => {
                    return Err(transition(
                        name,
                        case,
                        format!("merged into case {into}; reopen that case"),
                    ));
                }
                Status::Resolved { .. } | Status::Closed(_) => {}
            }
            if actor.role == Role::Resident && actor.principal != case.reporter {
                return Err(DomainError::Forbidden(
                    "only the reporter reopens a case".into(),
                ));
            }
            vec![EventBody::CaseReopened { reason }]
        }
        Command::Escalate { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let stage = open_stage()?;
            if !oversees(actor) {
                match stage.handler() {
                    Some(h) if !holds(actor, h) => {
                        return Err(DomainError::Forbidden(format!("the case is held by {h}")));
                    }
                    Some(_) => {}
                    None => {
                        signer(actor, case.level)?;
                    }
                }
            }
            escalate(case, name, EscalationCause::Requested { reason })?
        }
        Command::Transfer { to, reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let from = open_stage()?.handler().cloned().ok_or_else(|| {
                transition(name, case, "nobody holds the case; assign it instead")
            })?;
            if !oversees(actor) && !holds(actor, &from) {
                return Err(DomainError::Forbidden(format!(
                    "the case is held by {from}"
                )));
            }
            check_handler("to", to, case.level, ctx.district)?;
            if to == &from {
                return Err(DomainError::invalid("to", "the case is already held there"));
            }
            vec![EventBody::CaseTransferred {
                level: case.level,
                from,
                to: to.clone(),
                reason,
            }]
        }
        Command::Decline { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let me = signer(actor, case.level)?;
            match (case.level, open_stage()?) {
                (Level::Escalated, Stage::Assigned(h)) if h == &me => {}
                (Level::Escalated, Stage::Acknowledged(h) | Stage::OnSite(h)) if h == &me => {
                    return Err(transition(
                        name,
                        case,
                        "signed for already: the first department to sign leads (首接负责); transfer instead",
                    ));
                }
                (Level::Escalated, _) => {
                    return Err(DomainError::Forbidden(
                        "only the department the case is dispatched to can decline it".into(),
                    ));
                }
                _ => return Err(transition(name, case, "only ESCALATED cases are declined")),
            }
            let Handler::Department(department) = me else {
                return Err(DomainError::Forbidden("not a department".into()));
            };
            vec![EventBody::CaseDeclined { department, reason }]
        }
        Command::Pause { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let stage = open_stage()?;
            not_paused()?;
            steer_check(actor, case.level, stage)?;
            // Pausing stops the respond clock too: a handler must sign for the case (and
            // so meet or miss "respond") before pausing it; overseers may pause any time
            // (weather, a district-wide incident).
            if !oversees(actor) && !matches!(stage, Stage::Acknowledged(_) | Stage::OnSite(_)) {
                return Err(transition(
                    name,
                    case,
                    "sign for the case before pausing its clock",
                ));
            }
            vec![EventBody::ClockPaused { reason }]
        }
        Command::Resume => {
            let stage = open_stage()?;
            let since = case
                .paused
                .as_ref()
                .map(|p| p.since)
                .ok_or_else(|| transition(name, case, "the clock is not paused"))?;
            steer_check(actor, case.level, stage)?;
            vec![EventBody::ClockResumed {
                paused_seconds: (ctx.now - since).whole_seconds().max(0),
            }]
        }
        Command::Withdraw { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            if actor.role == Role::Resident && actor.principal != case.reporter {
                return Err(DomainError::Forbidden(
                    "only the reporter withdraws a case".into(),
                ));
            }
            vec![EventBody::CaseWithdrawn { reason }]
        }
        Command::Reject { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let stage = open_stage()?;
            steer_check(actor, case.level, stage)?;
            vec![EventBody::CaseRejected { reason }]
        }
        Command::EraseContact { reason } => {
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            match case.contact {
                Some(contact) => vec![EventBody::ContactErased { contact, reason }],
                None if case.contact_erased => {
                    return Err(transition(
                        name,
                        case,
                        "the contact details are already erased",
                    ));
                }
                None => {
                    return Err(transition(name, case, "the case holds no contact details"));
                }
            }
        }
        Command::FireDeadline { clock, kind } => fire(case, clock, *kind, ctx)?,
        Command::RecordDeliveryFailure {
            department,
            event_id,
            deliveries,
        } => {
            let event_id = required_text("event_id", event_id, 64)?;
            let mut out = vec![EventBody::DeliveryFailed {
                department: department.clone(),
                event_id,
                deliveries: *deliveries,
            }];
            let held_unsigned = matches!(
                &case.status,
                Status::Open(Stage::Assigned(Handler::Department(d))) if d == department
            );
            if held_unsigned
                && case.paused.is_none()
                && let Some(principal) = &ctx.district.takeover_principal
            {
                out.push(EventBody::CaseTakenOver {
                    principal: principal.clone(),
                    milestone: "delivery".into(),
                });
            }
            out
        }
    };
    Ok(events)
}

/// One instant of a milestone clock fires. Nothing happens when it is stale: the clock
/// ended, its deadline moved later, or the case is paused (resuming re-arms it).
fn fire(
    case: &Case,
    key: &str,
    kind: DeadlineKind,
    ctx: &Ctx<'_>,
) -> Result<Vec<EventBody>, DomainError> {
    let Some(clock) = case.clock(key).filter(|c| c.is_running()) else {
        return Ok(vec![]);
    };
    if case.paused.is_some() {
        return Ok(vec![]);
    }
    match kind {
        DeadlineKind::Warn => {
            if clock.warned || ctx.now < clock.warn_at {
                return Ok(vec![]);
            }
            Ok(vec![EventBody::MilestoneWarned {
                key: clock.key.clone(),
            }])
        }
        DeadlineKind::Breach => {
            if ctx.now < clock.deadline {
                return Ok(vec![]);
            }
            let mut out = vec![EventBody::MilestoneBreached {
                key: clock.key.clone(),
            }];
            let holds_rung = clock.scope == ClockScope::Rung && clock.level == case.level;
            let unsigned = matches!(
                case.status,
                Status::Open(Stage::Unassigned | Stage::Assigned(_))
            );
            if clock.on_breach == BreachAction::Escalate && holds_rung && case.paused.is_none() {
                match case.level.next() {
                    Some(to) => out.push(EventBody::CaseEscalated {
                        from: case.level,
                        to,
                        cause: EscalationCause::MilestoneBreached {
                            milestone: clock.milestone.clone(),
                        },
                    }),
                    None if unsigned => {
                        if let Some(principal) = &ctx.district.takeover_principal {
                            out.push(EventBody::CaseTakenOver {
                                principal: principal.clone(),
                                milestone: clock.milestone.clone(),
                            });
                        }
                    }
                    None => {}
                }
            }
            Ok(out)
        }
    }
}

/// Pause, resume and reject: the holder, a handler of the rung while nobody holds it, or
/// an overseer. Handlers are the rungs below `ESCALATED`; an unheld `ESCALATED` case is the
/// dispatcher's.
fn steer_check(actor: &Actor, level: Level, stage: &Stage) -> Result<(), DomainError> {
    if oversees(actor) {
        return Ok(());
    }
    match stage.handler() {
        Some(h) if holds(actor, h) => Ok(()),
        Some(h) => Err(DomainError::Forbidden(format!("the case is held by {h}"))),
        None if actor.role == Role::Handler && level < Level::Escalated => Ok(()),
        None => Err(DomainError::Forbidden("nobody holds the case yet".into())),
    }
}

fn escalate(
    case: &Case,
    name: &'static str,
    cause: EscalationCause,
) -> Result<Vec<EventBody>, DomainError> {
    if case.paused.is_some() {
        return Err(transition(
            name,
            case,
            "the clock is paused; resume it first",
        ));
    }
    let to = case.level.next().ok_or_else(|| {
        transition(
            name,
            case,
            "already at the top rung: dispatch to another department or let the district take over",
        )
    })?;
    Ok(vec![EventBody::CaseEscalated {
        from: case.level,
        to,
        cause,
    }])
}
