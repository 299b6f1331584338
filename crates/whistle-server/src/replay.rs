//! `whistle replay --policy FILE`: what every milestone's on-time rate and breach count
//! would have been under a candidate SLA book, beside the actual figures, per level,
//! department and category. Reads the log; writes nothing.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use whistle_domain::replay::{Score, Scored, actual, candidate};
use whistle_domain::{EventBody, SlaBook};
use whistle_store::{EventStore, Store};

/// Figures of one group: scored clocks by outcome.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Figures {
    pub on_time: u64,
    pub late: u64,
    pub running: u64,
    pub cancelled: u64,
}

impl Figures {
    fn add(&mut self, s: Score) {
        match s {
            Score::OnTime => self.on_time += 1,
            Score::Late => self.late += 1,
            Score::Running => self.running += 1,
            Score::Cancelled => self.cancelled += 1,
        }
    }

    /// On time among the clocks that ended or fell due.
    pub fn on_time_rate(&self) -> Option<f64> {
        let decided = self.on_time + self.late;
        (decided > 0).then(|| self.on_time as f64 / decided as f64)
    }
}

#[derive(Debug, Serialize)]
pub struct Row {
    /// level, department or category
    pub dimension: &'static str,
    pub group: String,
    pub milestone: String,
    pub actual: Figures,
    pub candidate: Figures,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub cases: u64,
    pub events: u64,
    pub horizon: String,
    /// What differs between the book in force and the candidate.
    pub changes: Vec<String>,
    pub rows: Vec<Row>,
}

pub struct Window {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

pub async fn run(
    store: &Store,
    current: &SlaBook,
    proposed: &SlaBook,
    window: Window,
) -> Result<Report> {
    let head = store
        .head_position()
        .await
        .context("reading the log head")?;
    let bar = ProgressBar::new(u64::try_from(head).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "replaying {bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut by_case: HashMap<String, Vec<whistle_domain::Event>> = HashMap::new();
    let mut after = 0;
    let mut events = 0u64;
    loop {
        let page = store
            .read_all(after, 5000)
            .await
            .context("reading the log")?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for rec in &page {
            if !rec.stream.as_str().starts_with("case-") {
                continue;
            }
            let e = whistle_api::convert::decode(rec).map_err(|e| anyhow::anyhow!("{e}"))?;
            by_case.entry(rec.stream.to_string()).or_default().push(e);
        }
        events += page.len() as u64;
        bar.set_position(u64::try_from(after).unwrap_or(0));
    }
    bar.finish_and_clear();
    let horizon = window.to.unwrap_or_else(OffsetDateTime::now_utc);
    let mut groups: BTreeMap<(&'static str, String, String), (Figures, Figures)> = BTreeMap::new();
    let mut cases = 0;
    for events in by_case.values() {
        let reported = events.iter().find_map(|e| match e.body {
            EventBody::CaseReported { .. } => Some(e.occurred_at),
            _ => None,
        });
        let Some(reported) = reported else { continue };
        if window.from.is_some_and(|f| reported < f) || window.to.is_some_and(|t| reported >= t) {
            continue;
        }
        cases += 1;
        let mut tally = |scored: Vec<Scored>, pick: fn(&mut (Figures, Figures)) -> &mut Figures| {
            for s in scored {
                let dims = [
                    ("level", s.level.as_str().to_string()),
                    ("category", s.category.0.clone()),
                    (
                        "department",
                        s.department
                            .as_ref()
                            .map_or("-".to_string(), |d| d.0.clone()),
                    ),
                ];
                for (dim, group) in dims {
                    pick(groups.entry((dim, group, s.milestone.clone())).or_default()).add(s.score);
                }
            }
        };
        tally(actual(events, horizon), |g| &mut g.0);
        tally(candidate(events, proposed, horizon), |g| &mut g.1);
    }
    Ok(Report {
        cases,
        events,
        horizon: whistle_api::convert::local_time(horizon),
        changes: explain(current, proposed),
        rows: groups
            .into_iter()
            .map(|((dimension, group, milestone), (a, c))| Row {
                dimension,
                group,
                milestone,
                actual: a,
                candidate: c,
            })
            .collect(),
    })
}

/// Milestone by milestone, what the candidate changes in the latest version of each
/// policy both books define, and which policies only one of them has.
pub fn explain(current: &SlaBook, proposed: &SlaBook) -> Vec<String> {
    let latest = |b: &SlaBook| {
        let mut m: BTreeMap<String, whistle_domain::Policy> = BTreeMap::new();
        for p in b.policies() {
            m.insert(p.name.clone(), p.clone());
        }
        m
    };
    let (cur, prop) = (latest(current), latest(proposed));
    let mut out = Vec::new();
    for (name, p) in &prop {
        let Some(c) = cur.get(name) else {
            out.push(format!("{name}: new policy (v{})", p.version));
            continue;
        };
        for m in &p.milestones {
            match c.milestones.iter().find(|x| x.name == m.name) {
                None => out.push(format!("{name}: new milestone {}", m.name)),
                Some(x) => {
                    if x.target_seconds != m.target_seconds {
                        out.push(format!(
                            "{name} v{} → v{}: {} target {} s → {} s",
                            c.version, p.version, m.name, x.target_seconds, m.target_seconds
                        ));
                    }
                    if x.calendar != m.calendar {
                        out.push(format!(
                            "{name}: {} calendar {} → {}",
                            m.name, x.calendar, m.calendar
                        ));
                    }
                    if x.on_breach != m.on_breach {
                        out.push(format!(
                            "{name}: {} on breach {:?} → {:?}",
                            m.name, x.on_breach, m.on_breach
                        ));
                    }
                }
            }
        }
    }
    for name in cur.keys().filter(|n| !prop.contains_key(*n)) {
        out.push(format!("{name}: not in the candidate"));
    }
    out
}

fn pct(f: &Figures) -> String {
    f.on_time_rate()
        .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

pub fn print(report: &Report) {
    println!(
        "replayed {} cases ({} events) scored at {}",
        report.cases, report.events, report.horizon
    );
    if report.changes.is_empty() {
        println!("the candidate changes no milestone: the figures must match");
    } else {
        println!("the candidate changes:");
        for c in &report.changes {
            println!("  - {c}");
        }
    }
    println!(
        "\n{:<10} {:<24} {:<9} {:>9} {:>7}   {:>9} {:>7}",
        "by", "group", "milestone", "on time", "late", "→ on time", "late"
    );
    for r in &report.rows {
        let changed = if r.actual != r.candidate { "  *" } else { "" };
        println!(
            "{:<10} {:<24} {:<9} {:>9} {:>7}   {:>9} {:>7}{changed}",
            r.dimension,
            r.group,
            r.milestone,
            pct(&r.actual),
            r.actual.late,
            pct(&r.candidate),
            r.candidate.late
        );
    }
}
