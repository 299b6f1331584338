//! Events: the facts of a case stream, past tense. The JSON form of [`EventBody`] is what
//! the store keeps as payload, so renaming a variant or a field is a breaking change to
//! stored history — add, never rename.

use crate::case::Handler;
use crate::catalogue::{Level, PolicyClass, Urgency};
use crate::ids::{CaseId, CategoryCode, ContactId, DepartmentId, GridId, OrgId, PrincipalId};
use crate::principal::Actor;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How a case reached whistle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    GridWorker,
    ResidentApp,
    Hotline,
    WalkIn,
    Patrol,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::GridWorker,
        Channel::ResidentApp,
        Channel::Hotline,
        Channel::WalkIn,
        Channel::Patrol,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::GridWorker => "grid_worker",
            Channel::ResidentApp => "resident_app",
            Channel::Hotline => "hotline",
            Channel::WalkIn => "walk_in",
            Channel::Patrol => "patrol",
        }
    }
}

/// A piece of evidence: a photo or document stored elsewhere, pinned by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub url: String,
    /// Lower-case hex SHA-256 of the referenced content, so a swapped file is detectable.
    pub sha256: String,
}

/// Resident satisfaction, 1 (very dissatisfied) to 5 (very satisfied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Satisfaction(u8);

impl Satisfaction {
    pub fn new(v: u8) -> Option<Satisfaction> {
        (1..=5).contains(&v).then_some(Satisfaction(v))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Satisfaction {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Satisfaction::new(v).ok_or_else(|| format!("satisfaction {v} is outside 1..=5"))
    }
}

impl From<Satisfaction> for u8 {
    fn from(s: Satisfaction) -> u8 {
        s.0
    }
}

/// Why a case moved up a rung.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EscalationCause {
    /// A handler or supervisor judged it beyond the rung ("beyond us").
    Requested { reason: String },
    /// A milestone deadline passed (automatic escalation).
    MilestoneBreached { milestone: String },
}

/// Which clock a milestone runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockScope {
    /// Restarts at each rung: what the current handler is held to.
    Rung,
    /// Runs from the report and never restarts: what the resident experiences.
    Case,
}

/// What happens when a milestone's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// Move the case one rung up; at `ESCALATED` the district takes it over (兜底).
    Escalate,
    /// Record the breach for supervisors and dashboards.
    Notify,
    /// Record nothing beyond the breach itself.
    None,
}

/// The two instants a running milestone can fire at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Warn,
    Breach,
}

impl DeadlineKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadlineKind::Warn => "warn",
            DeadlineKind::Breach => "breach",
        }
    }
}

/// What happened. Each variant is one event type; the tag is the event type name stored
/// beside the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    CaseReported {
        case_id: CaseId,
        category: CategoryCode,
        policy_class: PolicyClass,
        requested_urgency: Option<Urgency>,
        location: OrgId,
        compound: OrgId,
        grid: Option<GridId>,
        channel: Channel,
        description: String,
        /// The starting rung chosen by triage.
        level: Level,
        fast_channel: bool,
        /// The resident's contact details, stored apart from the log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<ContactId>,
    },
    /// The reporter's personal data was erased on request; the contact record is gone.
    ContactErased {
        contact: ContactId,
        reason: String,
    },
    CaseAssigned {
        level: Level,
        handler: Handler,
    },
    CaseAcknowledged {
        level: Level,
        handler: Handler,
    },
    ArrivedOnSite {
        level: Level,
        handler: Handler,
    },
    NoteAdded {
        text: String,
        evidence: Vec<Evidence>,
    },
    CaseResolved {
        level: Level,
        handler: Handler,
        summary: String,
        evidence: Vec<Evidence>,
    },
    ResolutionConfirmed {
        satisfaction: Satisfaction,
        comment: String,
    },
    CaseReopened {
        reason: String,
    },
    CaseEscalated {
        from: Level,
        to: Level,
        cause: EscalationCause,
    },
    CaseTransferred {
        level: Level,
        from: Handler,
        to: Handler,
        reason: String,
    },
    CaseDeclined {
        department: DepartmentId,
        reason: String,
    },
    ClockPaused {
        reason: String,
    },
    ClockResumed {
        /// How long the clocks stood still, in whole seconds; audited and used to shift
        /// deadlines.
        paused_seconds: i64,
    },
    CaseWithdrawn {
        reason: String,
    },
    CaseRejected {
        reason: String,
    },
    CaseMerged {
        into: CaseId,
        reason: String,
    },
    DuplicateMerged {
        duplicate: CaseId,
    },
    /// A milestone clock started, pinned to the policy version in force: its deadlines
    /// are facts from here on, and a later policy change does not rewrite them.
    MilestoneStarted {
        /// Unique within the case: `<milestone>@<level>#<n>`.
        key: String,
        milestone: String,
        scope: ClockScope,
        level: Level,
        policy: String,
        policy_version: u32,
        target_seconds: i64,
        calendar: String,
        #[serde(with = "time::serde::rfc3339")]
        warn_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        deadline: OffsetDateTime,
        on_breach: BreachAction,
    },
    MilestoneMet {
        key: String,
        on_time: bool,
    },
    MilestoneWarned {
        key: String,
    },
    MilestoneBreached {
        key: String,
    },
    /// The clock stopped without being met: the rung was left or the case closed.
    MilestoneCancelled {
        key: String,
        reason: String,
    },
    /// A pause moved a running milestone's deadlines (audited).
    DeadlineShifted {
        key: String,
        /// Counted (calendar) seconds the pause added.
        paused_seconds: i64,
        #[serde(with = "time::serde::rfc3339")]
        warn_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        deadline: OffsetDateTime,
    },
    /// A department's integration could not take an event after repeated deliveries.
    DeliveryFailed {
        department: DepartmentId,
        event_id: String,
        deliveries: u32,
    },
    /// No department signed for the case in time: the district takes it over (兜底).
    CaseTakenOver {
        principal: PrincipalId,
        milestone: String,
    },
}

impl EventBody {
    /// The event type name, as stored and as published.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventBody::CaseReported { .. } => "CaseReported",
            EventBody::CaseAssigned { .. } => "CaseAssigned",
            EventBody::CaseAcknowledged { .. } => "CaseAcknowledged",
            EventBody::ArrivedOnSite { .. } => "ArrivedOnSite",
            EventBody::NoteAdded { .. } => "NoteAdded",
            EventBody::CaseResolved { .. } => "CaseResolved",
            EventBody::ResolutionConfirmed { .. } => "ResolutionConfirmed",
            EventBody::CaseReopened { .. } => "CaseReopened",
            EventBody::CaseEscalated { .. } => "CaseEscalated",
            EventBody::CaseTransferred { .. } => "CaseTransferred",
            EventBody::CaseDeclined { .. } => "CaseDeclined",
            EventBody::ClockPaused { .. } => "ClockPaused",
            EventBody::ClockResumed { .. } => "ClockResumed",
            EventBody::CaseWithdrawn { .. } => "CaseWithdrawn",
            EventBody::CaseRejected { .. } => "CaseRejected",
            EventBody::CaseMerged { .. } => "CaseMerged",
            EventBody::DuplicateMerged { .. } => "DuplicateMerged",
            EventBody::MilestoneStarted { .. } => "MilestoneStarted",
            EventBody::MilestoneMet { .. } => "MilestoneMet",
            EventBody::MilestoneWarned { .. } => "MilestoneWarned",
            EventBody::MilestoneBreached { .. } => "MilestoneBreached",
            EventBody::MilestoneCancelled { .. } => "MilestoneCancelled",
            EventBody::DeadlineShifted { .. } => "DeadlineShifted",
            EventBody::CaseTakenOver { .. } => "CaseTakenOver",
            EventBody::DeliveryFailed { .. } => "DeliveryFailed",
            EventBody::ContactErased { .. } => "ContactErased",
        }
    }
}

/// An event with who did it and when it happened. When it was *recorded* is the store's
/// business and travels beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub actor: Actor,
    pub occurred_at: OffsetDateTime,
    pub body: EventBody,
}
