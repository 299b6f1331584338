//! SLA policies and clocks (DESIGN §3).
//!
//! A policy is a named, versioned list of milestones; the [`SlaBook`] picks one by
//! category × policy class × level (first matching rule wins) and keeps every version.
//! [`react`] is the clock engine: given the events a command produced, it returns the
//! clock events that follow (milestones started, met, cancelled, deadlines shifted by a
//! pause). Deadlines are computed once, when a clock starts, from the policy version in
//! force, and recorded in `MilestoneStarted`; from then on they are facts of the log and
//! a policy change never rewrites them. [`deadline_ops`] turns clock events into the
//! rows of the store's deadline table that the scheduler fires.

use crate::calendar::Calendar;
use crate::case::{Case, CaseState};
use crate::catalogue::{Level, PolicyClass};
use crate::event::{BreachAction, ClockScope, DeadlineKind, Event, EventBody};
use crate::evolve::evolve;
use crate::ids::CategoryCode;
use crate::principal::Actor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The shipped presets, as TOML text (parsed at the edge; the domain does no IO).
pub const PRESET_83012: &str = include_str!("../presets/83012.toml");
pub const PRESET_BEIJING_12345: &str = include_str!("../presets/beijing-12345.toml");
/// Example business-hours calendar: mainland China 2025 with holidays and 调休.
pub const CALENDAR_CN_2025: &str = include_str!("../presets/calendar-cn-2025.toml");

/// Longest milestone target, in seconds of the calendar's time: 3660 days, the horizon
/// business-hours calendars search for working time. Deadlines are computed by adding the
/// target to the time a clock starts; an unbounded target (a typo in a published book)
/// overflowed that addition and panicked every command that started such a clock.
pub const MAX_TARGET_SECONDS: i64 = 3660 * 86_400;

/// The name of the built-in round-the-clock calendar.
pub const ALWAYS_OPEN: &str = "24x7";

/// What starts a milestone's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The case arrives at a rung: reported there, escalated to it, or reopened at it.
    RungEntered,
    /// The case is reported (for case-scope clocks).
    Reported,
    /// An event of this type, e.g. `CaseAcknowledged` starts the on-site clock.
    Event(String),
}

/// One commitment, e.g. "respond within 8 minutes".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestone {
    pub name: String,
    pub scope: ClockScope,
    pub starts_on: Trigger,
    /// Event types that meet the milestone.
    pub stops_on: Vec<String>,
    /// Target in seconds of the calendar's time.
    pub target_seconds: i64,
    #[serde(default = "always_open")]
    pub calendar: String,
    /// When to warn, as a percentage of the target (1–99); 0 disables the warning.
    #[serde(default = "default_warn")]
    pub warn_at_percent: u8,
    pub on_breach: BreachAction,
}

fn always_open() -> String {
    ALWAYS_OPEN.to_string()
}

fn default_warn() -> u8 {
    75
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub version: u32,
    pub milestones: Vec<Milestone>,
}

/// Chooses a policy; `None` fields match anything. First matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub category: Option<CategoryCode>,
    #[serde(default)]
    pub class: Option<PolicyClass>,
    #[serde(default)]
    pub level: Option<Level>,
    pub policy: String,
}

/// Policies, rules and calendars as written in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaSpec {
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub calendars: BTreeMap<String, Calendar>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    #[error("policy {0} version {1} is defined twice")]
    DuplicateVersion(String, u32),
    #[error("rule names unknown policy {0}")]
    UnknownPolicy(String),
    #[error("policy {policy}: milestone {milestone} uses unknown calendar {calendar}")]
    UnknownCalendar {
        policy: String,
        milestone: String,
        calendar: String,
    },
    #[error("policy {policy}: milestone {milestone}: {reason}")]
    BadMilestone {
        policy: String,
        milestone: String,
        reason: String,
    },
    #[error("calendar {0}: {1}")]
    BadCalendar(String, crate::calendar::CalendarError),
}

/// The validated policy book. Every version of every policy is kept: clocks started
/// under an older version stay pinned to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaBook {
    versions: BTreeMap<String, BTreeMap<u32, Policy>>,
    rules: Vec<Rule>,
    calendars: BTreeMap<String, Calendar>,
}

impl SlaBook {
    pub fn build(spec: SlaSpec) -> Result<SlaBook, SlaError> {
        let mut calendars = spec.calendars;
        calendars.insert(ALWAYS_OPEN.to_string(), Calendar::AlwaysOpen);
        for (name, cal) in &calendars {
            cal.validate()
                .map_err(|e| SlaError::BadCalendar(name.clone(), e))?;
        }
        let mut versions: BTreeMap<String, BTreeMap<u32, Policy>> = BTreeMap::new();
        for p in spec.policies {
            for m in &p.milestones {
                let bad = |reason: &str| SlaError::BadMilestone {
                    policy: p.name.clone(),
                    milestone: m.name.clone(),
                    reason: reason.to_string(),
                };
                if !calendars.contains_key(&m.calendar) {
                    return Err(SlaError::UnknownCalendar {
                        policy: p.name.clone(),
                        milestone: m.name.clone(),
                        calendar: m.calendar.clone(),
                    });
                }
                if m.target_seconds <= 0 {
                    return Err(bad("target must be positive"));
                }
                if m.target_seconds > MAX_TARGET_SECONDS {
                    return Err(bad("target must be at most 316224000 seconds (3660 days)"));
                }
                if m.warn_at_percent >= 100 {
                    return Err(bad("warn_at_percent must be below 100"));
                }
                if m.stops_on.is_empty() {
                    return Err(bad("stops_on is empty"));
                }
                if m.name.is_empty() || m.name.contains(['@', '#', '/']) {
                    return Err(bad("name must be non-empty without '@', '#' or '/'"));
                }
            }
            let entry = versions.entry(p.name.clone()).or_default();
            if entry.contains_key(&p.version) {
                return Err(SlaError::DuplicateVersion(p.name, p.version));
            }
            entry.insert(p.version, p);
        }
        for r in &spec.rules {
            if !versions.contains_key(&r.policy) {
                return Err(SlaError::UnknownPolicy(r.policy.clone()));
            }
        }
        Ok(SlaBook {
            versions,
            rules: spec.rules,
            calendars,
        })
    }

    /// The policy in force (latest version) for a case at a level.
    pub fn select(
        &self,
        category: &CategoryCode,
        class: PolicyClass,
        level: Level,
    ) -> Option<&Policy> {
        let rule = self.rules.iter().find(|r| {
            r.category.as_ref().is_none_or(|c| c == category)
                && r.class.is_none_or(|c| c == class)
                && r.level.is_none_or(|l| l == level)
        })?;
        self.versions
            .get(&rule.policy)
            .and_then(|v| v.values().next_back())
    }

    /// A specific version, for replays and audits.
    pub fn version(&self, name: &str, version: u32) -> Option<&Policy> {
        self.versions.get(name).and_then(|v| v.get(&version))
    }

    pub fn calendar(&self, name: &str) -> Option<&Calendar> {
        self.calendars.get(name)
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.versions.values().flat_map(|v| v.values())
    }

    /// The spec this book was built from (every version, rules, calendars but the
    /// built-in 24x7).
    pub fn to_spec(&self) -> SlaSpec {
        SlaSpec {
            policies: self.policies().cloned().collect(),
            rules: self.rules.clone(),
            calendars: self
                .calendars
                .iter()
                .filter(|(n, _)| n.as_str() != ALWAYS_OPEN)
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect(),
        }
    }
}

/// A change to the store's deadline table, keyed by `<clock key>/<warn|breach>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineOp {
    pub key: String,
    /// `Some(due)` to set, `None` to remove.
    pub due: Option<OffsetDateTime>,
}

/// The deadline-table key of one instant of one clock.
pub fn deadline_key(clock_key: &str, kind: DeadlineKind) -> String {
    format!("{clock_key}/{}", kind.as_str())
}

/// Parse a deadline-table key back into (clock key, kind).
pub fn parse_deadline_key(key: &str) -> Option<(&str, DeadlineKind)> {
    let (clock, kind) = key.rsplit_once('/')?;
    let kind = match kind {
        "warn" => DeadlineKind::Warn,
        "breach" => DeadlineKind::Breach,
        _ => return None,
    };
    Some((clock, kind))
}

/// The deadline rows implied by clock events.
pub fn deadline_ops(events: &[Event]) -> Vec<DeadlineOp> {
    let mut ops = Vec::new();
    let mut put = |key: &str, kind, due| {
        ops.push(DeadlineOp {
            key: deadline_key(key, kind),
            due,
        })
    };
    for e in events {
        match &e.body {
            EventBody::MilestoneStarted {
                key,
                warn_at,
                deadline,
                ..
            }
            | EventBody::DeadlineShifted {
                key,
                warn_at,
                deadline,
                ..
            } => {
                put(
                    key,
                    DeadlineKind::Warn,
                    (warn_at < deadline).then_some(*warn_at),
                );
                put(key, DeadlineKind::Breach, Some(*deadline));
            }
            EventBody::MilestoneWarned { key } => put(key, DeadlineKind::Warn, None),
            EventBody::MilestoneMet { key, .. }
            | EventBody::MilestoneBreached { key }
            | EventBody::MilestoneCancelled { key, .. } => {
                put(key, DeadlineKind::Warn, None);
                put(key, DeadlineKind::Breach, None);
            }
            _ => {}
        }
    }
    ops
}

/// The clock events that follow `events` (already decided, not yet folded into
/// `before`). Each returned event is stamped with the time of the event that caused it
/// and the system actor.
pub fn react(before: &CaseState, events: &[Event], book: &SlaBook) -> Vec<Event> {
    let mut state = before.clone();
    let mut out = Vec::new();
    for e in events {
        let prev_pause = state.as_ref().and_then(|c| c.paused.clone());
        state = evolve(state, e);
        let Some(case) = state.as_ref() else {
            continue;
        };
        let bodies = clock_reactions(case, e, prev_pause.map(|p| p.since), book);
        for body in bodies {
            let ev = Event {
                actor: Actor::system(),
                occurred_at: e.occurred_at,
                body,
            };
            state = evolve(state, &ev);
            out.push(ev);
        }
    }
    out
}

fn clock_reactions(
    case: &Case,
    e: &Event,
    paused_since: Option<OffsetDateTime>,
    book: &SlaBook,
) -> Vec<EventBody> {
    let now = e.occurred_at;
    let event_type = e.body.event_type();
    let mut out = Vec::new();
    // 1. Stops: the event meets running milestones that wait for it.
    for c in case.running_clocks() {
        if let Some(p) = book.version(&c.policy, c.policy_version)
            && p.milestones
                .iter()
                .any(|m| m.name == c.milestone && m.stops_on.iter().any(|s| s == event_type))
        {
            out.push(EventBody::MilestoneMet {
                key: c.key.clone(),
                on_time: now <= c.deadline,
            });
        }
    }
    // 2. Cancellations: leaving a rung ends its clocks; closing ends them all.
    let closing = matches!(
        e.body,
        EventBody::CaseWithdrawn { .. }
            | EventBody::CaseRejected { .. }
            | EventBody::CaseMerged { .. }
            | EventBody::ResolutionConfirmed { .. }
    );
    let left_rung = matches!(e.body, EventBody::CaseEscalated { .. });
    // A resolution ends what the rung still owed (e.g. "on site" for a fix done remotely);
    // the case clock stops on its own stop event.
    let resolved = matches!(e.body, EventBody::CaseResolved { .. });
    for c in case.running_clocks() {
        let met = out
            .iter()
            .any(|b| matches!(b, EventBody::MilestoneMet { key, .. } if key == &c.key));
        if met {
            continue;
        }
        if closing || ((left_rung || resolved) && c.scope == ClockScope::Rung) {
            let reason = if closing {
                "case closed"
            } else if resolved {
                "resolved"
            } else {
                "rung left"
            };
            out.push(EventBody::MilestoneCancelled {
                key: c.key.clone(),
                reason: reason.to_string(),
            });
        }
    }
    // 3. Pause: resuming moves every running deadline by the counted paused time.
    if let (EventBody::ClockResumed { .. }, Some(since)) = (&e.body, paused_since) {
        for c in case.running_clocks() {
            let Some(cal) = book.calendar(&c.calendar) else {
                continue;
            };
            let counted = cal.counted(since, now);
            if counted == 0 {
                continue;
            }
            let paused = c.paused_seconds + counted;
            let warn_pct = warn_percent(book, c);
            out.push(EventBody::DeadlineShifted {
                key: c.key.clone(),
                paused_seconds: counted,
                warn_at: cal.add(
                    c.started_at,
                    c.target_seconds * i64::from(warn_pct) / 100 + paused,
                ),
                deadline: cal.add(c.started_at, c.target_seconds + paused),
            });
        }
    }
    // 4. Starts.
    if closing || case.is_closed() {
        return out;
    }
    let Some(policy) = book.select(&case.category, case.policy_class, case.level) else {
        return out;
    };
    let entered_rung = matches!(
        e.body,
        EventBody::CaseReported { .. }
            | EventBody::CaseEscalated { .. }
            | EventBody::CaseReopened { .. }
    );
    let mut n = case.clocks.len();
    for m in &policy.milestones {
        let fires = match &m.starts_on {
            Trigger::RungEntered => entered_rung,
            Trigger::Reported => matches!(e.body, EventBody::CaseReported { .. }),
            Trigger::Event(t) => t == event_type,
        };
        if !fires {
            continue;
        }
        // One running clock per milestone per rung (per case for case scope); a case
        // clock never restarts.
        let exists = case.clocks.iter().any(|c| {
            c.milestone == m.name
                && match m.scope {
                    ClockScope::Case => c.scope == ClockScope::Case,
                    ClockScope::Rung => c.level == case.level && c.is_running(),
                }
        });
        if exists {
            continue;
        }
        let Some(cal) = book.calendar(&m.calendar) else {
            continue;
        };
        n += 1;
        out.push(EventBody::MilestoneStarted {
            key: format!(
                "{}@{}#{n}",
                m.name,
                case.level.as_str().to_ascii_lowercase()
            ),
            milestone: m.name.clone(),
            scope: m.scope,
            level: case.level,
            policy: policy.name.clone(),
            policy_version: policy.version,
            target_seconds: m.target_seconds,
            calendar: m.calendar.clone(),
            warn_at: cal.add(now, m.target_seconds * i64::from(m.warn_at_percent) / 100),
            deadline: cal.add(now, m.target_seconds),
            on_breach: m.on_breach,
        });
    }
    out
}

fn warn_percent(book: &SlaBook, c: &crate::case::MilestoneClock) -> u8 {
    book.version(&c.policy, c.policy_version)
        .and_then(|p| p.milestones.iter().find(|m| m.name == c.milestone))
        .map_or(75, |m| m.warn_at_percent)
}
