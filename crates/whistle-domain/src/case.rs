//! The case aggregate's state, as folded from its events by [`crate::evolve`].
//!
//! The types carry the rules: a handler exists exactly when a stage says someone holds
//! the case, a resolution always names who resolved it, and a closed case says why.

use crate::catalogue::{Level, PolicyClass, Urgency};
use crate::event::{BreachAction, Channel, ClockScope, Satisfaction};
use crate::ids::{CaseId, CategoryCode, ContactId, DepartmentId, GridId, OrgId, PrincipalId};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;

/// Who holds a case at its current rung.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Handler {
    /// A person below `ESCALATED` (household, steward, branch), or a district officer who
    /// took a case over.
    Principal(PrincipalId),
    /// A district functional department at `ESCALATED`; any of its accounts may act.
    Department(DepartmentId),
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::Principal(p) => write!(f, "principal:{p}"),
            Handler::Department(d) => write!(f, "department:{d}"),
        }
    }
}

/// Progress at the current rung while the case is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Waiting for a dispatcher to assign it or a handler of the rung to claim it.
    Unassigned,
    /// Assigned; the handler has not signed for it yet.
    Assigned(Handler),
    /// Signed for (签收): the "respond" milestone.
    Acknowledged(Handler),
    /// The handler reported arriving on site.
    OnSite(Handler),
}

impl Stage {
    pub fn handler(&self) -> Option<&Handler> {
        match self {
            Stage::Unassigned => None,
            Stage::Assigned(h) | Stage::Acknowledged(h) | Stage::OnSite(h) => Some(h),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Unassigned => "unassigned",
            Stage::Assigned(_) => "assigned",
            Stage::Acknowledged(_) => "acknowledged",
            Stage::OnSite(_) => "on_site",
        }
    }
}

/// Why a case is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closure {
    /// The resident confirmed the resolution.
    Confirmed { satisfaction: Satisfaction },
    /// The reporter withdrew it.
    Withdrawn,
    /// Rejected as invalid.
    Rejected,
    /// A duplicate, merged into another case.
    Merged { into: CaseId },
}

impl Closure {
    pub fn as_str(&self) -> &'static str {
        match self {
            Closure::Confirmed { .. } => "confirmed",
            Closure::Withdrawn => "withdrawn",
            Closure::Rejected => "rejected",
            Closure::Merged { .. } => "merged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Open(Stage),
    /// Resolved by the handler, awaiting the resident's confirmation.
    Resolved {
        by: Handler,
    },
    Closed(Closure),
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Open(_) => "open",
            Status::Resolved { .. } => "resolved",
            Status::Closed(_) => "closed",
        }
    }
}

/// A running pause of the case's clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub since: OffsetDateTime,
}

/// How a milestone clock ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockOutcome {
    Met { at: OffsetDateTime, on_time: bool },
    Breached { at: OffsetDateTime },
    Cancelled { at: OffsetDateTime },
}

/// A milestone clock of the case, as started by `MilestoneStarted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneClock {
    pub key: String,
    pub milestone: String,
    pub scope: ClockScope,
    pub level: Level,
    pub policy: String,
    pub policy_version: u32,
    pub target_seconds: i64,
    pub calendar: String,
    pub started_at: OffsetDateTime,
    pub warn_at: OffsetDateTime,
    pub deadline: OffsetDateTime,
    /// Counted seconds added by pauses so far.
    pub paused_seconds: i64,
    pub on_breach: BreachAction,
    pub warned: bool,
    /// `None` while running.
    pub outcome: Option<ClockOutcome>,
}

impl MilestoneClock {
    pub fn is_running(&self) -> bool {
        self.outcome.is_none()
    }
}

/// A span during which one handler held the case at one rung: time held is charged to
/// them (a department that declines keeps the time it held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub handler: Handler,
    pub level: Level,
    pub from: OffsetDateTime,
    /// `None` while the hold lasts.
    pub to: Option<OffsetDateTime>,
}

/// A reported case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    /// Number of events folded so far; the expected version of the next append.
    pub version: u64,
    pub category: CategoryCode,
    pub policy_class: PolicyClass,
    pub requested_urgency: Option<Urgency>,
    /// Where the problem is: a compound, building or unit.
    pub location: OrgId,
    pub compound: OrgId,
    pub grid: Option<GridId>,
    pub channel: Channel,
    pub reporter: PrincipalId,
    pub description: String,
    /// Triage sent it straight to `ESCALATED` past its category's usual start (急事急办).
    pub fast_channel: bool,
    pub level: Level,
    pub status: Status,
    pub paused: Option<Pause>,
    pub reported_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    /// Departments that declined this case at `ESCALATED` ("not ours"); they cannot claim
    /// it again unless a dispatcher assigns it to them.
    pub declined_by: Vec<DepartmentId>,
    /// Cases merged into this one.
    pub duplicates: Vec<CaseId>,
    /// The reporter's contact details (stored apart from the log); `None` when none were
    /// given or after erasure.
    #[serde(default)]
    pub contact: Option<ContactId>,
    /// The contact details were erased on request.
    #[serde(default)]
    pub contact_erased: bool,
    pub escalations: u32,
    pub reopen_count: u32,
    pub notes: u32,
    /// Every milestone clock ever started, in order.
    pub clocks: Vec<MilestoneClock>,
    /// Who held the case when, in order.
    pub holds: Vec<Hold>,
}

impl Case {
    pub fn handler(&self) -> Option<&Handler> {
        match &self.status {
            Status::Open(stage) => stage.handler(),
            Status::Resolved { by } => Some(by),
            Status::Closed(_) => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.status, Status::Closed(_))
    }

    pub fn clock(&self, key: &str) -> Option<&MilestoneClock> {
        self.clocks.iter().find(|c| c.key == key)
    }

    pub fn running_clocks(&self) -> impl Iterator<Item = &MilestoneClock> {
        self.clocks.iter().filter(|c| c.is_running())
    }
}

/// State of one case stream: nothing yet, or a reported case.
pub type CaseState = Option<Case>;
