//! The whole pure reaction to a command: the case rules ([`crate::decide`]), then routing
//! ([`crate::routing::react`]: who gets the case at a new rung), then the clocks
//! ([`crate::sla::react`]). Everything returned is appended atomically, so a case never
//! sits at a rung without its handler and its deadlines.

use crate::case::CaseState;
use crate::command::{Command, MergeCase};
use crate::decide::{Ctx, decide, decide_merge};
use crate::error::DomainError;
use crate::event::Event;
use crate::sla::SlaBook;

pub fn process(
    state: &CaseState,
    cmd: &Command,
    ctx: &Ctx<'_>,
    book: &SlaBook,
) -> Result<Vec<Event>, DomainError> {
    let mut events = decide(state, cmd, ctx)?;
    react(state, &mut events, ctx, book);
    Ok(events)
}

/// Merge with its reactions on both streams (closing the duplicate ends its clocks).
pub fn process_merge(
    dup: &CaseState,
    target: &CaseState,
    cmd: &MergeCase,
    ctx: &Ctx<'_>,
    book: &SlaBook,
) -> Result<(Vec<Event>, Vec<Event>), DomainError> {
    let (mut d, mut t) = decide_merge(dup, target, cmd, ctx)?;
    react(dup, &mut d, ctx, book);
    react(target, &mut t, ctx, book);
    Ok((d, t))
}

fn react(state: &CaseState, events: &mut Vec<Event>, ctx: &Ctx<'_>, book: &SlaBook) {
    let routed = crate::routing::react(state, events, ctx.district);
    events.extend(routed);
    let clocks = crate::sla::react(state, events, book);
    events.extend(clocks);
}
