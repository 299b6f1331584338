//! What-if replay (DESIGN §3): recompute every milestone of a case's history under a
//! candidate policy book, beside what actually happened, changing nothing.
//!
//! The case events (reports, signatures, escalations …) are replayed as they happened;
//! the recorded clock events are set aside and the clock engine runs again under the
//! candidate book, with breaches fired in virtual time. What the candidate would have
//! changed downstream (an earlier automatic escalation, a different handler) is not
//! invented: the replay answers "how would these same actions have scored".
//! Replaying under the book in force reproduces the recorded outcomes exactly.

use crate::case::{Case, ClockOutcome, Handler, MilestoneClock};
use crate::catalogue::Level;
use crate::event::{Event, EventBody};
use crate::evolve::evolve;
use crate::ids::{CategoryCode, DepartmentId};
use crate::principal::Actor;
use crate::sla::{SlaBook, react};
use time::OffsetDateTime;

/// How one milestone clock ended, as scored at the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Score {
    OnTime,
    /// Met after its deadline, or breached.
    Late,
    /// Still running and not yet due at the horizon.
    Running,
    /// Stopped without being met (rung left, case closed).
    Cancelled,
}

/// One scored clock with the dimensions supervisors group by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    pub milestone: String,
    pub level: Level,
    pub category: CategoryCode,
    /// The department holding the case at that rung when the clock ended, if any.
    pub department: Option<DepartmentId>,
    pub policy: String,
    pub policy_version: u32,
    pub score: Score,
}

pub fn is_clock_event(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::MilestoneStarted { .. }
            | EventBody::MilestoneMet { .. }
            | EventBody::MilestoneWarned { .. }
            | EventBody::MilestoneBreached { .. }
            | EventBody::MilestoneCancelled { .. }
            | EventBody::DeadlineShifted { .. }
    )
}

/// The clocks as recorded in the log, scored at `horizon`.
pub fn actual(events: &[Event], horizon: OffsetDateTime) -> Vec<Scored> {
    let state = events.iter().fold(None, evolve);
    state.map_or_else(Vec::new, |c| score_case(&c, horizon))
}

/// The clocks the case would have run under `book`, scored at `horizon`.
pub fn candidate(events: &[Event], book: &SlaBook, horizon: OffsetDateTime) -> Vec<Scored> {
    let mut state: Option<Case> = None;
    for e in events.iter().filter(|e| !is_clock_event(&e.body)) {
        state = fire_due(state, e.occurred_at);
        let reactions = react(&state, std::slice::from_ref(e), book);
        state = evolve(state, e);
        for r in &reactions {
            state = evolve(state, r);
        }
    }
    state = fire_due(state, horizon);
    state.map_or_else(Vec::new, |c| score_case(&c, horizon))
}

/// Breach every running clock whose deadline is at or before `now` (unless paused).
fn fire_due(state: Option<Case>, now: OffsetDateTime) -> Option<Case> {
    let case = state?;
    if case.paused.is_some() {
        return Some(case);
    }
    let due: Vec<(String, OffsetDateTime)> = case
        .running_clocks()
        .filter(|c| c.deadline <= now)
        .map(|c| (c.key.clone(), c.deadline))
        .collect();
    let mut state = Some(case);
    for (key, at) in due {
        state = evolve(
            state,
            &Event {
                actor: Actor::system(),
                occurred_at: at,
                body: EventBody::MilestoneBreached { key },
            },
        );
    }
    state
}

fn score_case(case: &Case, horizon: OffsetDateTime) -> Vec<Scored> {
    case.clocks
        .iter()
        .map(|c| Scored {
            milestone: c.milestone.clone(),
            level: c.level,
            category: case.category.clone(),
            department: department_of(case, c, horizon),
            policy: c.policy.clone(),
            policy_version: c.policy_version,
            score: score(c, horizon),
        })
        .collect()
}

fn score(c: &MilestoneClock, horizon: OffsetDateTime) -> Score {
    match &c.outcome {
        Some(ClockOutcome::Met { on_time: true, .. }) => Score::OnTime,
        Some(ClockOutcome::Met { on_time: false, .. } | ClockOutcome::Breached { .. }) => {
            Score::Late
        }
        Some(ClockOutcome::Cancelled { .. }) => Score::Cancelled,
        None if c.deadline <= horizon => Score::Late,
        None => Score::Running,
    }
}

fn department_of(case: &Case, c: &MilestoneClock, horizon: OffsetDateTime) -> Option<DepartmentId> {
    let end = match &c.outcome {
        Some(
            ClockOutcome::Met { at, .. }
            | ClockOutcome::Breached { at }
            | ClockOutcome::Cancelled { at },
        ) => *at,
        None => horizon,
    };
    case.holds
        .iter()
        .rev()
        .filter(|h| h.level == c.level && h.from <= end)
        .find_map(|h| match &h.handler {
            Handler::Department(d) => Some(d.clone()),
            Handler::Principal(_) => None,
        })
}
