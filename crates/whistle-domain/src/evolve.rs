//! `evolve`: fold one event into the state. Events are facts already decided, so evolve
//! is total: it never fails and never consults anything but the state and the event.
//! Replaying a stream always yields the same state.

use crate::case::{
    Case, CaseState, ClockOutcome, Closure, Handler, Hold, MilestoneClock, Pause, Stage, Status,
};
use crate::event::{Event, EventBody};

pub fn evolve(state: CaseState, event: &Event) -> CaseState {
    let at = event.occurred_at;
    let Some(mut case) = state else {
        return match &event.body {
            EventBody::CaseReported {
                case_id,
                category,
                policy_class,
                requested_urgency,
                location,
                compound,
                grid,
                channel,
                description,
                level,
                fast_channel,
                contact,
            } => Some(Case {
                id: *case_id,
                version: 1,
                category: category.clone(),
                policy_class: *policy_class,
                requested_urgency: *requested_urgency,
                location: location.clone(),
                compound: compound.clone(),
                grid: grid.clone(),
                channel: *channel,
                reporter: event.actor.principal.clone(),
                description: description.clone(),
                fast_channel: *fast_channel,
                level: *level,
                status: Status::Open(Stage::Unassigned),
                paused: None,
                reported_at: at,
                resolved_at: None,
                closed_at: None,
                declined_by: Vec::new(),
                duplicates: Vec::new(),
                contact: *contact,
                contact_erased: false,
                escalations: 0,
                reopen_count: 0,
                notes: 0,
                clocks: Vec::new(),
                holds: Vec::new(),
            }),
            // A stream that does not begin with a report has no case in it.
            _ => None,
        };
    };
    case.version += 1;
    match &event.body {
        EventBody::CaseReported { .. } => {}
        EventBody::ContactErased { .. } => {
            case.contact = None;
            case.contact_erased = true;
        }
        EventBody::CaseAssigned { handler, level } => {
            hold(&mut case, handler, *level, at);
            case.status = Status::Open(Stage::Assigned(handler.clone()));
        }
        EventBody::CaseAcknowledged { handler, level } => {
            hold(&mut case, handler, *level, at);
            case.status = Status::Open(Stage::Acknowledged(handler.clone()));
        }
        EventBody::ArrivedOnSite { handler, .. } => {
            case.status = Status::Open(Stage::OnSite(handler.clone()));
        }
        EventBody::NoteAdded { .. } => case.notes += 1,
        EventBody::CaseResolved { handler, .. } => {
            release(&mut case, at);
            case.status = Status::Resolved {
                by: handler.clone(),
            };
            case.resolved_at = Some(at);
        }
        EventBody::ResolutionConfirmed { satisfaction, .. } => {
            close(
                &mut case,
                Closure::Confirmed {
                    satisfaction: *satisfaction,
                },
                at,
            );
        }
        EventBody::CaseReopened { .. } => {
            // Whoever resolved it must sign for it again; a case closed otherwise goes back
            // to the rung's queue.
            let stage = match &case.status {
                Status::Resolved { by } => {
                    let by = by.clone();
                    let level = case.level;
                    hold(&mut case, &by, level, at);
                    Stage::Assigned(by)
                }
                _ => Stage::Unassigned,
            };
            case.status = Status::Open(stage);
            case.resolved_at = None;
            case.closed_at = None;
            case.reopen_count += 1;
        }
        EventBody::CaseEscalated { to, .. } => {
            release(&mut case, at);
            case.level = *to;
            case.status = Status::Open(Stage::Unassigned);
            case.escalations += 1;
        }
        EventBody::CaseTransferred { to, level, .. } => {
            hold(&mut case, to, *level, at);
            case.status = Status::Open(Stage::Assigned(to.clone()));
        }
        EventBody::CaseDeclined { department, .. } => {
            release(&mut case, at);
            if !case.declined_by.contains(department) {
                case.declined_by.push(department.clone());
            }
            case.status = Status::Open(Stage::Unassigned);
        }
        EventBody::ClockPaused { reason } => {
            case.paused = Some(Pause {
                reason: reason.clone(),
                since: at,
            });
        }
        EventBody::ClockResumed { .. } => case.paused = None,
        EventBody::CaseWithdrawn { .. } => close(&mut case, Closure::Withdrawn, at),
        EventBody::CaseRejected { .. } => close(&mut case, Closure::Rejected, at),
        EventBody::CaseMerged { into, .. } => close(&mut case, Closure::Merged { into: *into }, at),
        EventBody::DuplicateMerged { duplicate } => {
            if !case.duplicates.contains(duplicate) {
                case.duplicates.push(*duplicate);
            }
        }
        EventBody::MilestoneStarted {
            key,
            milestone,
            scope,
            level,
            policy,
            policy_version,
            target_seconds,
            calendar,
            warn_at,
            deadline,
            on_breach,
        } => case.clocks.push(MilestoneClock {
            key: key.clone(),
            milestone: milestone.clone(),
            scope: *scope,
            level: *level,
            policy: policy.clone(),
            policy_version: *policy_version,
            target_seconds: *target_seconds,
            calendar: calendar.clone(),
            started_at: at,
            warn_at: *warn_at,
            deadline: *deadline,
            paused_seconds: 0,
            on_breach: *on_breach,
            warned: false,
            outcome: None,
        }),
        EventBody::MilestoneMet { key, on_time } => {
            end_clock(
                &mut case,
                key,
                ClockOutcome::Met {
                    at,
                    on_time: *on_time,
                },
            );
        }
        EventBody::MilestoneWarned { key } => {
            if let Some(c) = case.clocks.iter_mut().find(|c| &c.key == key) {
                c.warned = true;
            }
        }
        EventBody::MilestoneBreached { key } => {
            end_clock(&mut case, key, ClockOutcome::Breached { at });
        }
        EventBody::MilestoneCancelled { key, .. } => {
            end_clock(&mut case, key, ClockOutcome::Cancelled { at });
        }
        EventBody::DeadlineShifted {
            key,
            paused_seconds,
            warn_at,
            deadline,
        } => {
            if let Some(c) = case.clocks.iter_mut().find(|c| &c.key == key) {
                c.paused_seconds += paused_seconds;
                c.warn_at = *warn_at;
                c.deadline = *deadline;
            }
        }
        EventBody::DeliveryFailed { .. } => {}
        EventBody::CaseTakenOver { principal, .. } => {
            let handler = Handler::Principal(principal.clone());
            let level = case.level;
            hold(&mut case, &handler, level, at);
            case.status = Status::Open(Stage::Assigned(handler));
        }
    }
    Some(case)
}

/// Start charging time to `handler`, unless they already hold the case at this rung.
fn hold(case: &mut Case, handler: &Handler, level: crate::Level, at: time::OffsetDateTime) {
    if let Some(h) = case.holds.last()
        && h.to.is_none()
        && &h.handler == handler
        && h.level == level
    {
        return;
    }
    release(case, at);
    case.holds.push(Hold {
        handler: handler.clone(),
        level,
        from: at,
        to: None,
    });
}

/// Stop charging time to whoever holds the case.
fn release(case: &mut Case, at: time::OffsetDateTime) {
    if let Some(h) = case.holds.last_mut()
        && h.to.is_none()
    {
        h.to = Some(at);
    }
}

fn end_clock(case: &mut Case, key: &str, outcome: ClockOutcome) {
    if let Some(c) = case
        .clocks
        .iter_mut()
        .find(|c| c.key == key && c.outcome.is_none())
    {
        c.outcome = Some(outcome);
    }
}

fn close(case: &mut Case, closure: Closure, at: time::OffsetDateTime) {
    release(case, at);
    case.status = Status::Closed(closure);
    case.paused = None;
    case.closed_at = Some(at);
}

/// Replay a whole stream from nothing.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> CaseState {
    events.into_iter().fold(None, evolve)
}
