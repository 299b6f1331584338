//! Routing: who gets a case when it arrives at a rung (DESIGN §1, §2).
//!
//! Below `ESCALATED` the district's roster names the handler of each rung for an org
//! node (a building's party-member household, a unit's steward, a compound's branch or
//! property company), each acting for a party of the five-party list; the category's
//! owner at the rung is preferred, then the most specific node at or above the case's
//! location wins, and with no entry the case waits in the rung's queue for any handler
//! to claim. At `ESCALATED` the case is
//! dispatched to the department that owns its category, paired departments (结对包建)
//! first, skipping any that declined; with none, it waits for the dispatcher.
//! A decline returns the case to the dispatcher (the time stays charged to the
//! department that held it); a case nobody signs for in time is taken over by the
//! district through the SLA's breach action.

use crate::case::{CaseState, Handler, Stage, Status};
use crate::catalogue::{Level, Party};
use crate::district::District;
use crate::event::{Event, EventBody};
use crate::evolve::evolve;
use crate::ids::{OrgId, PrincipalId};
use crate::principal::Actor;
use serde::{Deserialize, Serialize};

/// One roster line: at `level`, cases located at or below `org` go to `principal`, who
/// acts for `party` there (the five-party list says which party owns which category).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub level: Level,
    pub org: OrgId,
    pub principal: PrincipalId,
    #[serde(default)]
    pub party: Option<Party>,
}

/// The handler routing would choose for the case at its current rung.
pub fn route(district: &District, case: &crate::case::Case) -> Option<Handler> {
    if case.level == Level::Escalated {
        return district
            .candidate_departments(&case.category, &case.compound)
            .into_iter()
            .find(|d| !case.declined_by.contains(&d.id))
            .map(|d| Handler::Department(d.id.clone()));
    }
    // The party the five-party list makes responsible at this rung, at the most specific
    // node that has one; failing that, whoever the most specific node lists.
    let owner = district
        .catalogue
        .get(&case.category)
        .and_then(|c| c.owner_at(case.level));
    let pick = |want: Option<Party>| {
        district.org.ancestry(&case.location).find_map(|node| {
            district
                .roster
                .iter()
                .find(|r| {
                    r.level == case.level
                        && r.org == node.id
                        && want.is_none_or(|p| r.party == Some(p))
                })
                .map(|r| Handler::Principal(r.principal.clone()))
        })
    };
    owner.and_then(|p| pick(Some(p))).or_else(|| pick(None))
}

/// The assignments that follow `events`: a case arriving unassigned at a rung (reported,
/// escalated, or reopened into the queue) is assigned by the system when routing knows
/// who handles it.
pub fn react(before: &CaseState, events: &[Event], district: &District) -> Vec<Event> {
    let mut state = before.clone();
    let mut out = Vec::new();
    for e in events {
        state = evolve(state, e);
        let arrived = matches!(
            e.body,
            EventBody::CaseReported { .. }
                | EventBody::CaseEscalated { .. }
                | EventBody::CaseReopened { .. }
        );
        let Some(case) = state.as_ref() else {
            continue;
        };
        if !arrived || case.status != Status::Open(Stage::Unassigned) {
            continue;
        }
        if let Some(handler) = route(district, case) {
            let ev = Event {
                actor: Actor::system(),
                occurred_at: e.occurred_at,
                body: EventBody::CaseAssigned {
                    level: case.level,
                    handler,
                },
            };
            state = evolve(state, &ev);
            out.push(ev);
        }
    }
    out
}
