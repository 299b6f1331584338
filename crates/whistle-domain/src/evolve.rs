//! `evolve`: fold one event into the state. Events are facts already decided, so evolve
//! is total: it never fails and never consults anything but the state and the event.
//! Replaying a stream always yields the same state.

use crate::case::{Case, CaseState, Closure, Pause, Stage, Status};
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
                escalations: 0,
                reopen_count: 0,
                notes: 0,
            }),
            // A stream that does not begin with a report has no case in it.
            _ => None,
        };
    };
    case.version += 1;
    match &event.body {
        EventBody::CaseReported { .. } => {}
        EventBody::CaseAssigned { handler, .. } => {
            case.status = Status::Open(Stage::Assigned(handler.clone()));
        }
        EventBody::CaseAcknowledged { handler, .. } => {
            case.status = Status::Open(Stage::Acknowledged(handler.clone()));
        }
        EventBody::ArrivedOnSite { handler, .. } => {
            case.status = Status::Open(Stage::OnSite(handler.clone()));
        }
        EventBody::NoteAdded { .. } => case.notes += 1,
        EventBody::CaseResolved { handler, .. } => {
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
                Status::Resolved { by } => Stage::Assigned(by.clone()),
                _ => Stage::Unassigned,
            };
            case.status = Status::Open(stage);
            case.resolved_at = None;
            case.closed_at = None;
            case.reopen_count += 1;
        }
        EventBody::CaseEscalated { to, .. } => {
            case.level = *to;
            case.status = Status::Open(Stage::Unassigned);
            case.escalations += 1;
        }
        EventBody::CaseTransferred { to, .. } => {
            case.status = Status::Open(Stage::Assigned(to.clone()));
        }
        EventBody::CaseDeclined { department, .. } => {
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
    }
    Some(case)
}

fn close(case: &mut Case, closure: Closure, at: time::OffsetDateTime) {
    case.status = Status::Closed(closure);
    case.paused = None;
    case.closed_at = Some(at);
}

/// Replay a whole stream from nothing.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> CaseState {
    events.into_iter().fold(None, evolve)
}
