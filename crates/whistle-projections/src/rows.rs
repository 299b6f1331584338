//! Pure mapping from a folded case to its read-model rows: the case view row (written by
//! the command pipeline in the same transaction as the case's events) and the SLA rows
//! (clocks and holds, written by the asynchronous projector). No IO, no clock: the same
//! case always gives the same rows, which is what makes a rebuild equal the live tables.

use time::OffsetDateTime;
use whistle_domain::{
    Case, ClockOutcome, ClockScope, Closure, Handler, Level, MilestoneClock, Status,
};
use whistle_store::{CaseSlaRows, CaseViewRow, ClockRow, HoldRow};

/// A case whose folded state cannot be serialised (cannot happen for a well-formed
/// `Case`; kept as an error rather than a panic).
#[derive(Debug, thiserror::Error)]
#[error("case {case_id}: cannot encode the case view: {source}")]
pub struct EncodeError {
    pub case_id: String,
    pub source: serde_json::Error,
}

fn department_of(h: &Handler) -> Option<String> {
    match h {
        Handler::Department(d) => Some(d.0.clone()),
        Handler::Principal(_) => None,
    }
}

/// The department holding the case, or else the last one that held it.
fn last_department(case: &Case) -> Option<String> {
    case.handler().and_then(department_of).or_else(|| {
        case.holds
            .iter()
            .rev()
            .find_map(|h| department_of(&h.handler))
    })
}

/// The rung the case started at (above `NEIGHBOUR` when its category starts higher or
/// triage sent it up the fast channel).
fn start_level(case: &Case) -> Level {
    case.clocks
        .iter()
        .find(|c| c.scope == ClockScope::Rung)
        .map(|c| c.level)
        .or_else(|| case.holds.first().map(|h| h.level))
        .unwrap_or(case.level)
}

/// The case view row. `position` is left 0: the store fills in the position of the
/// last event it appends with the row.
pub fn case_view_row(case: &Case) -> Result<CaseViewRow, EncodeError> {
    let doc = serde_json::to_string(case).map_err(|source| EncodeError {
        case_id: case.id.to_string(),
        source,
    })?;
    let (stage, closure, satisfaction) = match &case.status {
        Status::Open(stage) => (Some(stage.as_str().to_string()), None, None),
        Status::Resolved { .. } => (None, None, None),
        Status::Closed(c) => (
            None,
            Some(c.as_str().to_string()),
            match c {
                Closure::Confirmed { satisfaction } => Some(satisfaction.get()),
                _ => None,
            },
        ),
    };
    let next = case
        .running_clocks()
        .min_by_key(|c| (c.deadline, c.key.clone()));
    Ok(CaseViewRow {
        case_id: case.id.to_string(),
        version: case.version,
        position: 0,
        category: case.category.0.clone(),
        compound: case.compound.0.clone(),
        location: case.location.0.clone(),
        grid: case.grid.as_ref().map(|g| g.0.clone()),
        reporter: case.reporter.0.clone(),
        level: case.level.as_str().to_string(),
        start_level: start_level(case).as_str().to_string(),
        status: case.status.as_str().to_string(),
        stage,
        closure,
        handler: case.handler().map(ToString::to_string),
        department: last_department(case),
        reported_at: case.reported_at,
        resolved_at: case.resolved_at,
        closed_at: case.closed_at,
        escalations: case.escalations,
        reopen_count: case.reopen_count,
        satisfaction,
        breaches: case
            .clocks
            .iter()
            .filter(|c| matches!(c.outcome, Some(ClockOutcome::Breached { .. })))
            .count() as u32,
        next_milestone: next.map(|c| c.milestone.clone()),
        next_warn_at: case.running_clocks().map(|c| c.warn_at).min(),
        next_deadline: next.map(|c| c.deadline),
        doc,
    })
}

/// Who held the case for this clock: at the clock's rung (rung clocks) or at all (case
/// clocks), the last hold begun before the clock ended (or the last one, while it runs).
fn holder_for<'a>(
    case: &'a Case,
    clock: &MilestoneClock,
    ended: Option<OffsetDateTime>,
) -> Option<&'a Handler> {
    case.holds
        .iter()
        .rev()
        .filter(|h| clock.scope == ClockScope::Case || h.level == clock.level)
        .find(|h| ended.is_none_or(|t| h.from <= t))
        .map(|h| &h.handler)
}

fn outcome_of(c: &MilestoneClock) -> (&'static str, Option<OffsetDateTime>) {
    match &c.outcome {
        None => ("running", None),
        Some(ClockOutcome::Met { at, on_time: true }) => ("met", Some(*at)),
        Some(ClockOutcome::Met { at, on_time: false }) => ("late", Some(*at)),
        Some(ClockOutcome::Breached { at }) => ("breached", Some(*at)),
        Some(ClockOutcome::Cancelled { at }) => ("cancelled", Some(*at)),
    }
}

/// The SLA rows of a case: one per clock ever started, one per hold.
pub fn sla_rows(case: &Case) -> CaseSlaRows {
    let case_id = case.id.to_string();
    let grid = case.grid.as_ref().map(|g| g.0.clone());
    let clocks = case
        .clocks
        .iter()
        .map(|c| {
            let (outcome, ended_at) = outcome_of(c);
            let holder = holder_for(case, c, ended_at);
            ClockRow {
                case_id: case_id.clone(),
                key: c.key.clone(),
                milestone: c.milestone.clone(),
                scope: match c.scope {
                    ClockScope::Rung => "rung",
                    ClockScope::Case => "case",
                }
                .to_string(),
                level: c.level.as_str().to_string(),
                category: case.category.0.clone(),
                compound: case.compound.0.clone(),
                grid: grid.clone(),
                department: holder.and_then(department_of),
                handler: holder.map(ToString::to_string),
                reported_at: case.reported_at,
                started_at: c.started_at,
                warn_at: c.warn_at,
                deadline: c.deadline,
                ended_at,
                outcome: outcome.to_string(),
                elapsed_seconds: ended_at.map(|t| (t - c.started_at).whole_seconds()),
            }
        })
        .collect();
    let holds = case
        .holds
        .iter()
        .zip(0u32..)
        .map(|(h, seq)| HoldRow {
            case_id: case_id.clone(),
            seq,
            handler: h.handler.to_string(),
            department: department_of(&h.handler),
            level: h.level.as_str().to_string(),
            compound: case.compound.0.clone(),
            reported_at: case.reported_at,
            from_at: h.from,
            to_at: h.to,
        })
        .collect();
    CaseSlaRows {
        case_id,
        clocks,
        holds,
    }
}
