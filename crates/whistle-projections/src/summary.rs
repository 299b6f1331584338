//! SLA summaries: pure functions over the fact rows of a window (`SlaFacts`) and the
//! time they are asked at. What each figure means is defined here and in the README
//! ("What the dashboard figures mean"); the tests check them against hand-computed
//! values for every grouping.
//!
//! * **cases** — cases reported in the window.
//! * **response rate** (响应率) — of the `respond` clocks that were decided (met, met
//!   late or breached), the share met by their deadline. Cancelled and running clocks
//!   are not counted.
//! * **resolution rate** (解决率) — of the cases reported in the window, minus those
//!   withdrawn, rejected or merged away, the share resolved (awaiting confirmation, or
//!   closed by the resident's confirmation).
//! * **satisfaction rate** (满意率) — of the confirmed cases, the share rated 4 or 5
//!   (of 5).
//! * **per milestone** — decided, on time, on-time share, p50/p90 of the wall seconds
//!   from start to meeting it (nearest-rank percentiles over met clocks), breaches.
//! * **breaches** — clocks breached. **at risk** — open cases whose earliest running
//!   clock passed its warn point. **reopen rate** — share of cases reopened at least
//!   once. **escalations** — rung climbs; **escalations by rung** counts climbs out of
//!   each rung. **held** — seconds each rung / handler held cases (open holds up to now).
//!
//! Grouping: case figures go to the case's group (its department is the one holding it
//! or that last held it; its level the current rung); clock figures go to the clock's own
//! department and rung (a department is judged only on the clocks it held); holds to the
//! hold's department and rung.

use std::collections::{BTreeMap, HashMap};

use time::{Duration, OffsetDateTime, UtcOffset};
use whistle_domain::Level;
use whistle_store::{CaseViewRow, ClockRow, HoldRow, SlaFacts};

/// What a summary groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// One group for everything (key `""`).
    All,
    Department,
    Compound,
    Grid,
    Category,
    Level,
    /// The local (UTC+8) date the case was reported, `YYYY-MM-DD`.
    Day,
}

/// The three rates and the counts around them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub cases: u64,
    pub open: u64,
    pub resolved: u64,
    pub closed: u64,
    pub response_rate: Option<f64>,
    pub resolution_rate: Option<f64>,
    pub satisfaction_rate: Option<f64>,
    pub breaches: u64,
    pub at_risk: u64,
    pub reopen_rate: Option<f64>,
    pub escalations: u64,
}

/// Figures of one milestone (by name, e.g. `respond`, `on_site`, `resolve`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MilestoneStats {
    pub milestone: String,
    pub decided: u64,
    pub on_time: u64,
    pub on_time_rate: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub breaches: u64,
}

/// One group of a summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// The group's key (department id, compound id, level name, day …); `""` for
    /// "none" (e.g. cases no department held) and for [`Dimension::All`].
    pub key: String,
    pub rates: Rates,
    /// Sorted by milestone name.
    pub milestones: Vec<MilestoneStats>,
    /// Climbs out of each rung, in ladder order (rungs with none omitted).
    pub escalations_by_rung: Vec<(String, u64)>,
    /// Seconds held per rung, in ladder order.
    pub held_by_rung: Vec<(String, i64)>,
    /// Seconds held per handler, most first.
    pub held_by_handler: Vec<(String, i64)>,
}

/// UTC+8: the day boundary of Chinese districts.
const CHINA: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

fn day_of(t: OffsetDateTime) -> String {
    let d = t.to_offset(CHINA).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn case_key(c: &CaseViewRow, dim: Dimension) -> String {
    match dim {
        Dimension::All => String::new(),
        Dimension::Department => c.department.clone().unwrap_or_default(),
        Dimension::Compound => c.compound.clone(),
        Dimension::Grid => c.grid.clone().unwrap_or_default(),
        Dimension::Category => c.category.clone(),
        Dimension::Level => c.level.clone(),
        Dimension::Day => day_of(c.reported_at),
    }
}

fn clock_key(c: &ClockRow, dim: Dimension) -> String {
    match dim {
        Dimension::All => String::new(),
        Dimension::Department => c.department.clone().unwrap_or_default(),
        Dimension::Compound => c.compound.clone(),
        Dimension::Grid => c.grid.clone().unwrap_or_default(),
        Dimension::Category => c.category.clone(),
        Dimension::Level => c.level.clone(),
        Dimension::Day => day_of(c.reported_at),
    }
}

fn hold_key(h: &HoldRow, case: Option<&CaseViewRow>, dim: Dimension) -> String {
    match dim {
        Dimension::All => String::new(),
        Dimension::Department => h.department.clone().unwrap_or_default(),
        Dimension::Compound => h.compound.clone(),
        Dimension::Level => h.level.clone(),
        Dimension::Day => day_of(h.reported_at),
        Dimension::Grid => case.and_then(|c| c.grid.clone()).unwrap_or_default(),
        Dimension::Category => case.map(|c| c.category.clone()).unwrap_or_default(),
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Nearest-rank percentile (`p` in (0, 1]) of ascending `sorted`.
pub fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted.get(idx).map(|v| *v as f64)
}

fn level_rank(name: &str) -> usize {
    Level::ALL
        .iter()
        .position(|l| l.as_str() == name)
        .unwrap_or(Level::ALL.len())
}

/// Whether an open case is at risk at `now`.
pub fn at_risk(c: &CaseViewRow, now: OffsetDateTime) -> bool {
    c.status == "open" && c.next_warn_at.is_some_and(|w| w <= now)
}

#[derive(Default)]
struct Acc {
    cases: u64,
    open: u64,
    resolved: u64,
    closed: u64,
    countable: u64,
    resolved_ok: u64,
    rated: u64,
    satisfied: u64,
    at_risk: u64,
    reopened: u64,
    escalations: u64,
    by_rung: BTreeMap<usize, u64>,
    breaches: u64,
    milestones: BTreeMap<String, (u64, u64, u64, Vec<i64>)>,
    held_rung: BTreeMap<usize, i64>,
    held_handler: HashMap<String, i64>,
}

impl Acc {
    fn add_case(&mut self, c: &CaseViewRow, now: OffsetDateTime) {
        self.cases += 1;
        match c.status.as_str() {
            "open" => self.open += 1,
            "resolved" => self.resolved += 1,
            _ => self.closed += 1,
        }
        let dropped = matches!(
            c.closure.as_deref(),
            Some("withdrawn" | "rejected" | "merged")
        );
        if !dropped {
            self.countable += 1;
            if c.status == "resolved" || c.closure.as_deref() == Some("confirmed") {
                self.resolved_ok += 1;
            }
        }
        if let Some(s) = c.satisfaction {
            self.rated += 1;
            if s >= 4 {
                self.satisfied += 1;
            }
        }
        if at_risk(c, now) {
            self.at_risk += 1;
        }
        if c.reopen_count > 0 {
            self.reopened += 1;
        }
        self.escalations += u64::from(c.escalations);
        let (from, to) = (level_rank(&c.start_level), level_rank(&c.level));
        for rung in from..to {
            *self.by_rung.entry(rung).or_default() += 1;
        }
    }

    fn add_clock(&mut self, c: &ClockRow) {
        let m = self.milestones.entry(c.milestone.clone()).or_default();
        match c.outcome.as_str() {
            "met" => {
                m.0 += 1;
                m.1 += 1;
            }
            "late" => m.0 += 1,
            "breached" => {
                m.0 += 1;
                m.2 += 1;
                self.breaches += 1;
            }
            _ => {}
        }
        if matches!(c.outcome.as_str(), "met" | "late")
            && let Some(s) = c.elapsed_seconds
        {
            m.3.push(s);
        }
    }

    fn add_hold(&mut self, h: &HoldRow, now: OffsetDateTime) {
        let secs = (h.to_at.unwrap_or(now) - h.from_at).whole_seconds().max(0);
        *self.held_rung.entry(level_rank(&h.level)).or_default() += secs;
        *self.held_handler.entry(h.handler.clone()).or_default() += secs;
    }

    fn finish(self, key: String) -> Group {
        let respond = self.milestones.get("respond");
        let rates = Rates {
            cases: self.cases,
            open: self.open,
            resolved: self.resolved,
            closed: self.closed,
            response_rate: respond.and_then(|m| ratio(m.1, m.0)),
            resolution_rate: ratio(self.resolved_ok, self.countable),
            satisfaction_rate: ratio(self.satisfied, self.rated),
            breaches: self.breaches,
            at_risk: self.at_risk,
            reopen_rate: ratio(self.reopened, self.cases),
            escalations: self.escalations,
        };
        let milestones = self
            .milestones
            .into_iter()
            .map(|(name, (decided, on_time, breaches, mut secs))| {
                secs.sort_unstable();
                MilestoneStats {
                    milestone: name,
                    decided,
                    on_time,
                    on_time_rate: ratio(on_time, decided),
                    p50_seconds: percentile(&secs, 0.5),
                    p90_seconds: percentile(&secs, 0.9),
                    breaches,
                }
            })
            .collect();
        let rung_name = |r: usize| {
            Level::ALL
                .get(r)
                .map_or_else(|| "?".to_string(), |l| l.as_str().to_string())
        };
        let mut held_by_handler: Vec<(String, i64)> = self.held_handler.into_iter().collect();
        held_by_handler.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Group {
            key,
            rates,
            milestones,
            escalations_by_rung: self
                .by_rung
                .into_iter()
                .map(|(r, n)| (rung_name(r), n))
                .collect(),
            held_by_rung: self
                .held_rung
                .into_iter()
                .map(|(r, s)| (rung_name(r), s))
                .collect(),
            held_by_handler,
        }
    }
}

/// Summaries of `facts` grouped by `dim`, sorted by key, as of `now`.
pub fn summarize(facts: &SlaFacts, dim: Dimension, now: OffsetDateTime) -> Vec<Group> {
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let by_id: HashMap<&str, &CaseViewRow> = facts
        .cases
        .iter()
        .map(|c| (c.case_id.as_str(), c))
        .collect();
    for c in &facts.cases {
        groups.entry(case_key(c, dim)).or_default().add_case(c, now);
    }
    for c in &facts.clocks {
        if by_id.contains_key(c.case_id.as_str()) {
            groups.entry(clock_key(c, dim)).or_default().add_clock(c);
        }
    }
    for h in &facts.holds {
        let case = by_id.get(h.case_id.as_str()).copied();
        if case.is_some() {
            groups
                .entry(hold_key(h, case, dim))
                .or_default()
                .add_hold(h, now);
        }
    }
    groups.into_iter().map(|(k, acc)| acc.finish(k)).collect()
}

/// Everything in one group.
pub fn totals(facts: &SlaFacts, now: OffsetDateTime) -> Group {
    summarize(facts, Dimension::All, now)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Cases per current rung, in ladder order (every rung listed).
pub fn funnel(facts: &SlaFacts) -> Vec<(String, u64)> {
    Level::ALL
        .iter()
        .map(|l| {
            let n = facts.cases.iter().filter(|c| c.level == l.as_str()).count() as u64;
            (l.as_str().to_string(), n)
        })
        .collect()
}

/// One bucket of a trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendBucket {
    pub start: OffsetDateTime,
    pub reported: u64,
    pub resolved: u64,
    pub breaches: u64,
}

/// Reports, resolutions and breaches per bucket of `step` over `[from, to)`; events
/// count in the bucket they happened in (cases are those of `facts`).
pub fn trend(
    facts: &SlaFacts,
    from: OffsetDateTime,
    to: OffsetDateTime,
    step: Duration,
) -> Vec<TrendBucket> {
    if step <= Duration::ZERO || to <= from {
        return Vec::new();
    }
    let n = ((to - from).whole_seconds() + step.whole_seconds() - 1) / step.whole_seconds();
    let n = usize::try_from(n).unwrap_or(0).min(10_000);
    let mut buckets: Vec<TrendBucket> = (0..n)
        .map(|i| TrendBucket {
            start: from + step * (i as i32),
            reported: 0,
            resolved: 0,
            breaches: 0,
        })
        .collect();
    let index = |t: OffsetDateTime| -> Option<usize> {
        if t < from || t >= to {
            return None;
        }
        usize::try_from((t - from).whole_seconds() / step.whole_seconds()).ok()
    };
    for c in &facts.cases {
        if let Some(b) = index(c.reported_at).and_then(|i| buckets.get_mut(i)) {
            b.reported += 1;
        }
        if let Some(b) = c
            .resolved_at
            .and_then(index)
            .and_then(|i| buckets.get_mut(i))
        {
            b.resolved += 1;
        }
    }
    for c in facts.clocks.iter().filter(|c| c.outcome == "breached") {
        if let Some(b) = c.ended_at.and_then(index).and_then(|i| buckets.get_mut(i)) {
            b.breaches += 1;
        }
    }
    buckets
}

fn clocks_by_case(facts: &SlaFacts) -> HashMap<&str, Vec<&ClockRow>> {
    let mut map: HashMap<&str, Vec<&ClockRow>> = HashMap::new();
    for c in &facts.clocks {
        map.entry(c.case_id.as_str()).or_default().push(c);
    }
    map
}

/// A case with the clock that puts it on a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged<'a> {
    pub case: &'a CaseViewRow,
    pub clock: &'a ClockRow,
}

/// Cases with a breached clock, the latest breach for each, most recent first.
pub fn breached_cases<'a>(facts: &'a SlaFacts) -> Vec<Flagged<'a>> {
    let clocks = clocks_by_case(facts);
    let mut out: Vec<Flagged<'a>> = facts
        .cases
        .iter()
        .filter(|c| c.breaches > 0)
        .filter_map(|case| {
            clocks
                .get(case.case_id.as_str())?
                .iter()
                .copied()
                .filter(|k| k.outcome == "breached")
                .max_by_key(|k| k.ended_at)
                .map(|clock| Flagged { case, clock })
        })
        .collect();
    out.sort_by(|a, b| {
        b.clock
            .ended_at
            .cmp(&a.clock.ended_at)
            .then_with(|| a.case.case_id.cmp(&b.case.case_id))
    });
    out
}
