//! Ten cases with known times (reported hourly from 20:00 local on 2026-11-20, looked at
//! 20 h after the first): every figure below was computed by hand from the table in
//! `scenario()`, for every grouping.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use whistle_projections::summary::{
    Dimension, Group, breached_cases, funnel, percentile, summarize, totals, trend,
};
use whistle_store::{CaseViewRow, ClockRow, HoldRow, SlaFacts};

const T0: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);

fn now() -> OffsetDateTime {
    T0 + Duration::hours(20)
}

fn reported(i: u32) -> OffsetDateTime {
    T0 + Duration::hours(i64::from(i) - 1)
}

struct C {
    i: u32,
    compound: &'static str,
    grid: Option<&'static str>,
    category: &'static str,
    start: &'static str,
    level: &'static str,
    status: &'static str,
    closure: Option<&'static str>,
    department: Option<&'static str>,
    satisfaction: Option<u8>,
    reopens: u32,
    escalations: u32,
    breaches: u32,
    /// Seconds after the report of the earliest running warn point.
    warn_after: Option<i64>,
}

fn case(c: &C) -> CaseViewRow {
    let r = reported(c.i);
    CaseViewRow {
        case_id: format!("c{:02}", c.i),
        version: 5,
        position: i64::from(c.i),
        category: c.category.into(),
        compound: c.compound.into(),
        location: c.compound.into(),
        grid: c.grid.map(Into::into),
        reporter: "gw-lin".into(),
        level: c.level.into(),
        start_level: c.start.into(),
        status: c.status.into(),
        stage: (c.status == "open").then(|| "acknowledged".to_string()),
        closure: c.closure.map(Into::into),
        handler: None,
        department: c.department.map(Into::into),
        reported_at: r,
        resolved_at: matches!(c.closure, Some("confirmed"))
            .then(|| r + Duration::minutes(30))
            .or((c.status == "resolved").then(|| r + Duration::minutes(30))),
        closed_at: None,
        escalations: c.escalations,
        reopen_count: c.reopens,
        satisfaction: c.satisfaction,
        breaches: c.breaches,
        next_milestone: c.warn_after.map(|_| "respond".into()),
        next_warn_at: c.warn_after.map(|s| r + Duration::seconds(s)),
        next_deadline: c.warn_after.map(|s| r + Duration::seconds(s + 120)),
        doc: String::new(),
    }
}

/// A clock of case `i`: started `start` s after the report, ended `elapsed` s later.
#[allow(clippy::too_many_arguments)]
fn clock(
    i: u32,
    key: &str,
    level: &str,
    department: Option<&str>,
    start: i64,
    outcome: &str,
    elapsed: Option<i64>,
    c: &[C],
) -> ClockRow {
    let cc = c.iter().find(|x| x.i == i).expect("case");
    let r = reported(i);
    let started = r + Duration::seconds(start);
    let milestone = key.split('@').next().unwrap_or(key).to_string();
    ClockRow {
        case_id: format!("c{i:02}"),
        key: key.into(),
        milestone,
        scope: if key.contains('@') { "rung" } else { "case" }.into(),
        level: level.into(),
        category: cc.category.into(),
        compound: cc.compound.into(),
        grid: cc.grid.map(Into::into),
        department: department.map(Into::into),
        handler: None,
        reported_at: r,
        started_at: started,
        warn_at: started + Duration::seconds(360),
        deadline: started + Duration::seconds(480),
        ended_at: elapsed.map(|e| started + Duration::seconds(e)),
        outcome: outcome.into(),
        elapsed_seconds: if matches!(outcome, "running") {
            None
        } else {
            elapsed
        },
    }
}

fn hold(
    i: u32,
    seq: u32,
    handler: &str,
    level: &str,
    from: i64,
    to: Option<i64>,
    c: &[C],
) -> HoldRow {
    let cc = c.iter().find(|x| x.i == i).expect("case");
    let r = reported(i);
    HoldRow {
        case_id: format!("c{i:02}"),
        seq,
        handler: handler.into(),
        department: handler.strip_prefix("department:").map(Into::into),
        level: level.into(),
        compound: cc.compound.into(),
        reported_at: r,
        from_at: r + Duration::seconds(from),
        to_at: to.map(|t| r + Duration::seconds(t)),
    }
}

fn scenario() -> SlaFacts {
    use Some as S;
    let cases = vec![
        C {
            i: 1,
            compound: "A",
            grid: S("g1"),
            category: "leak",
            start: "NEIGHBOUR",
            level: "NEIGHBOUR",
            status: "closed",
            closure: S("confirmed"),
            department: None,
            satisfaction: S(5),
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
        C {
            i: 2,
            compound: "A",
            grid: S("g1"),
            category: "leak",
            start: "NEIGHBOUR",
            level: "UNIT",
            status: "closed",
            closure: S("confirmed"),
            department: None,
            satisfaction: S(3),
            reopens: 0,
            escalations: 1,
            breaches: 1,
            warn_after: None,
        },
        C {
            i: 3,
            compound: "A",
            grid: S("g2"),
            category: "noise",
            start: "NEIGHBOUR",
            level: "NEIGHBOUR",
            status: "resolved",
            closure: None,
            department: None,
            satisfaction: None,
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
        C {
            i: 4,
            compound: "B",
            grid: S("g2"),
            category: "noise",
            start: "NEIGHBOUR",
            level: "ESCALATED",
            status: "open",
            closure: None,
            department: S("fire"),
            satisfaction: None,
            reopens: 0,
            escalations: 3,
            breaches: 3,
            warn_after: S(3600),
        },
        C {
            i: 5,
            compound: "B",
            grid: None,
            category: "leak",
            start: "ESCALATED",
            level: "ESCALATED",
            status: "closed",
            closure: S("confirmed"),
            department: S("housing"),
            satisfaction: S(4),
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
        C {
            i: 6,
            compound: "B",
            grid: S("g2"),
            category: "leak",
            start: "NEIGHBOUR",
            level: "NEIGHBOUR",
            status: "closed",
            closure: S("withdrawn"),
            department: None,
            satisfaction: None,
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
        C {
            i: 7,
            compound: "A",
            grid: S("g1"),
            category: "noise",
            start: "UNIT",
            level: "UNIT",
            status: "open",
            closure: None,
            department: None,
            satisfaction: None,
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: S(100_000),
        },
        C {
            i: 8,
            compound: "A",
            grid: S("g1"),
            category: "leak",
            start: "NEIGHBOUR",
            level: "NEIGHBOUR",
            status: "closed",
            closure: S("confirmed"),
            department: None,
            satisfaction: S(2),
            reopens: 1,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
        C {
            i: 9,
            compound: "B",
            grid: S("g2"),
            category: "noise",
            start: "UNIT",
            level: "BRANCH",
            status: "open",
            closure: None,
            department: None,
            satisfaction: None,
            reopens: 0,
            escalations: 1,
            breaches: 1,
            warn_after: S(840),
        },
        C {
            i: 10,
            compound: "B",
            grid: None,
            category: "leak",
            start: "NEIGHBOUR",
            level: "NEIGHBOUR",
            status: "closed",
            closure: S("rejected"),
            department: None,
            satisfaction: None,
            reopens: 0,
            escalations: 0,
            breaches: 0,
            warn_after: None,
        },
    ];
    let c = &cases;
    let clocks = vec![
        clock(
            1,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "met",
            S(240),
            c,
        ),
        clock(
            1,
            "on_site@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            240,
            "met",
            S(600),
            c,
        ),
        clock(1, "resolve", "NEIGHBOUR", None, 0, "met", S(3600), c),
        clock(
            2,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "breached",
            S(480),
            c,
        ),
        clock(2, "respond@UNIT#1", "UNIT", None, 480, "met", S(300), c),
        clock(2, "resolve", "NEIGHBOUR", None, 0, "met", S(7200), c),
        clock(
            3,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "met",
            S(120),
            c,
        ),
        clock(3, "resolve", "NEIGHBOUR", None, 0, "met", S(1800), c),
        clock(
            4,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "breached",
            S(480),
            c,
        ),
        clock(
            4,
            "respond@UNIT#1",
            "UNIT",
            None,
            480,
            "breached",
            S(480),
            c,
        ),
        clock(
            4,
            "respond@BRANCH#1",
            "BRANCH",
            None,
            960,
            "breached",
            S(480),
            c,
        ),
        clock(
            4,
            "respond@ESCALATED#1",
            "ESCALATED",
            S("fire"),
            1440,
            "met",
            S(400),
            c,
        ),
        clock(4, "resolve", "NEIGHBOUR", S("fire"), 0, "running", None, c),
        clock(
            5,
            "respond@ESCALATED#1",
            "ESCALATED",
            S("housing"),
            0,
            "late",
            S(500),
            c,
        ),
        clock(
            5,
            "resolve",
            "ESCALATED",
            S("housing"),
            0,
            "met",
            S(5000),
            c,
        ),
        clock(
            6,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "cancelled",
            S(100),
            c,
        ),
        clock(7, "respond@UNIT#1", "UNIT", None, 0, "running", None, c),
        clock(
            8,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "met",
            S(60),
            c,
        ),
        clock(
            8,
            "respond@NEIGHBOUR#2",
            "NEIGHBOUR",
            None,
            7200,
            "met",
            S(180),
            c,
        ),
        clock(8, "resolve", "NEIGHBOUR", None, 0, "met", S(900), c),
        clock(9, "respond@UNIT#1", "UNIT", None, 0, "breached", S(480), c),
        clock(
            9,
            "respond@BRANCH#1",
            "BRANCH",
            None,
            480,
            "running",
            None,
            c,
        ),
        clock(
            10,
            "respond@NEIGHBOUR#1",
            "NEIGHBOUR",
            None,
            0,
            "cancelled",
            S(50),
            c,
        ),
    ];
    let holds = vec![
        hold(1, 0, "principal:h-wang", "NEIGHBOUR", 0, S(3600), c),
        hold(4, 0, "department:fire", "ESCALATED", 2000, None, c),
        hold(5, 0, "department:housing", "ESCALATED", 0, S(5000), c),
        hold(9, 0, "principal:h-li", "UNIT", 0, S(480), c),
        hold(9, 1, "principal:h-chen", "BRANCH", 480, None, c),
    ];
    SlaFacts {
        cases: cases.iter().map(case).collect(),
        clocks,
        holds,
    }
}

fn group<'a>(groups: &'a [Group], key: &str) -> &'a Group {
    groups.iter().find(|g| g.key == key).unwrap_or_else(|| {
        panic!(
            "no group {key:?} in {:?}",
            groups.iter().map(|g| &g.key).collect::<Vec<_>>()
        )
    })
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

macro_rules! assert_rate {
    ($got:expr, $want:expr) => {
        assert!(
            close($got, $want),
            "{} = {:?}, want {}",
            stringify!($got),
            $got,
            $want
        )
    };
}

#[test]
fn totals_match_the_hand_computed_figures() {
    let t = totals(&scenario(), now());
    let r = &t.rates;
    assert_eq!((r.cases, r.open, r.resolved, r.closed), (10, 3, 1, 6));
    assert_rate!(r.response_rate, 6.0 / 12.0);
    assert_rate!(r.resolution_rate, 5.0 / 8.0);
    assert_rate!(r.satisfaction_rate, 2.0 / 4.0);
    assert_eq!(r.breaches, 5);
    assert_eq!(r.at_risk, 2);
    assert_rate!(r.reopen_rate, 0.1);
    assert_eq!(r.escalations, 5);
    assert_eq!(
        t.escalations_by_rung,
        vec![
            ("NEIGHBOUR".into(), 2),
            ("UNIT".into(), 2),
            ("BRANCH".into(), 1)
        ]
    );

    let respond = t
        .milestones
        .iter()
        .find(|m| m.milestone == "respond")
        .expect("respond");
    assert_eq!(
        (respond.decided, respond.on_time, respond.breaches),
        (12, 6, 5)
    );
    assert_eq!(respond.p50_seconds, Some(240.0));
    assert_eq!(respond.p90_seconds, Some(500.0));
    let on_site = t
        .milestones
        .iter()
        .find(|m| m.milestone == "on_site")
        .expect("on_site");
    assert_eq!((on_site.decided, on_site.on_time), (1, 1));
    assert_eq!(
        (on_site.p50_seconds, on_site.p90_seconds),
        (Some(600.0), Some(600.0))
    );
    let resolve = t
        .milestones
        .iter()
        .find(|m| m.milestone == "resolve")
        .expect("resolve");
    assert_eq!(
        (resolve.decided, resolve.on_time, resolve.breaches),
        (5, 5, 0)
    );
    assert_eq!(
        (resolve.p50_seconds, resolve.p90_seconds),
        (Some(3600.0), Some(7200.0))
    );

    // Held: c1 3600 s; c4 by fire from +2000 s after its report (open: up to now, 17 h
    // after that report); c5 5000 s; c9 480 s at UNIT, then BRANCH up to now (12 h).
    assert_eq!(
        t.held_by_rung,
        vec![
            ("NEIGHBOUR".into(), 3600),
            ("UNIT".into(), 480),
            ("BRANCH".into(), 43_200 - 480),
            ("ESCALATED".into(), 61_200 - 2000 + 5000),
        ]
    );
    assert_eq!(
        t.held_by_handler,
        vec![
            ("department:fire".into(), 59_200),
            ("principal:h-chen".into(), 42_720),
            ("department:housing".into(), 5000),
            ("principal:h-wang".into(), 3600),
            ("principal:h-li".into(), 480),
        ]
    );
}

#[test]
fn by_department_judges_each_department_on_the_clocks_it_held() {
    let g = summarize(&scenario(), Dimension::Department, now());
    assert_eq!(
        g.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
        ["", "fire", "housing"]
    );
    let fire = group(&g, "fire");
    assert_eq!(
        (fire.rates.cases, fire.rates.open, fire.rates.at_risk),
        (1, 1, 1)
    );
    assert_rate!(fire.rates.response_rate, 1.0);
    assert_eq!(
        fire.rates.breaches, 0,
        "the lower rungs' breaches are not the department's"
    );
    assert_rate!(fire.rates.resolution_rate, 0.0);
    assert_eq!(fire.rates.satisfaction_rate, None);
    assert_eq!(fire.held_by_rung, vec![("ESCALATED".into(), 59_200)]);
    let housing = group(&g, "housing");
    assert_rate!(housing.rates.response_rate, 0.0);
    assert_rate!(housing.rates.resolution_rate, 1.0);
    assert_rate!(housing.rates.satisfaction_rate, 1.0);
    let resolve = housing
        .milestones
        .iter()
        .find(|m| m.milestone == "resolve")
        .expect("resolve");
    assert_eq!((resolve.decided, resolve.on_time), (1, 1));
    let none = group(&g, "");
    assert_eq!((none.rates.cases, none.rates.breaches), (8, 5));
    assert_rate!(none.rates.response_rate, 5.0 / 10.0);
}

#[test]
fn by_compound() {
    let g = summarize(&scenario(), Dimension::Compound, now());
    let a = group(&g, "A");
    assert_eq!(
        (
            a.rates.cases,
            a.rates.open,
            a.rates.resolved,
            a.rates.closed
        ),
        (5, 1, 1, 3)
    );
    assert_rate!(a.rates.response_rate, 5.0 / 6.0);
    assert_eq!(a.rates.breaches, 1);
    assert_rate!(a.rates.resolution_rate, 0.8);
    assert_rate!(a.rates.satisfaction_rate, 1.0 / 3.0);
    assert_eq!(a.rates.at_risk, 0);
    assert_rate!(a.rates.reopen_rate, 0.2);
    assert_eq!(a.rates.escalations, 1);
    let b = group(&g, "B");
    assert_eq!(
        (
            b.rates.cases,
            b.rates.open,
            b.rates.resolved,
            b.rates.closed
        ),
        (5, 2, 0, 3)
    );
    assert_rate!(b.rates.response_rate, 1.0 / 6.0);
    assert_eq!(b.rates.breaches, 4);
    assert_rate!(b.rates.resolution_rate, 1.0 / 3.0);
    assert_rate!(b.rates.satisfaction_rate, 1.0);
    assert_eq!(b.rates.at_risk, 2);
    assert_rate!(b.rates.reopen_rate, 0.0);
    assert_eq!(b.rates.escalations, 4);
}

#[test]
fn by_grid() {
    let g = summarize(&scenario(), Dimension::Grid, now());
    assert_eq!(
        g.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
        ["", "g1", "g2"]
    );
    let g1 = group(&g, "g1");
    assert_eq!(g1.rates.cases, 4);
    assert_rate!(g1.rates.response_rate, 0.8);
    let g2 = group(&g, "g2");
    assert_eq!(g2.rates.cases, 4);
    assert_rate!(g2.rates.response_rate, 2.0 / 6.0);
    let none = group(&g, "");
    assert_eq!(none.rates.cases, 2);
    assert_rate!(none.rates.response_rate, 0.0);
    // Holds go to the case's grid: c9 (g2) 480 + 42 720 s, c4 (g2) 59 200 s.
    assert_eq!(
        g2.held_by_rung,
        vec![
            ("UNIT".into(), 480),
            ("BRANCH".into(), 42_720),
            ("ESCALATED".into(), 59_200)
        ]
    );
}

#[test]
fn by_category() {
    let g = summarize(&scenario(), Dimension::Category, now());
    let leak = group(&g, "leak");
    assert_eq!(leak.rates.cases, 6);
    assert_rate!(leak.rates.response_rate, 4.0 / 6.0);
    assert_rate!(leak.rates.resolution_rate, 1.0);
    assert_rate!(leak.rates.satisfaction_rate, 0.5);
    let noise = group(&g, "noise");
    assert_eq!(noise.rates.cases, 4);
    assert_rate!(noise.rates.response_rate, 2.0 / 6.0);
    assert_rate!(noise.rates.resolution_rate, 0.25);
    assert_eq!(noise.rates.satisfaction_rate, None);
}

#[test]
fn by_level_counts_clocks_at_their_rung_and_cases_where_they_are() {
    let g = summarize(&scenario(), Dimension::Level, now());
    let cases: Vec<(&str, u64)> = g.iter().map(|g| (g.key.as_str(), g.rates.cases)).collect();
    assert_eq!(
        cases,
        [
            ("BRANCH", 1),
            ("ESCALATED", 2),
            ("NEIGHBOUR", 5),
            ("UNIT", 2)
        ]
    );
    assert_rate!(group(&g, "NEIGHBOUR").rates.response_rate, 4.0 / 6.0);
    assert_rate!(group(&g, "UNIT").rates.response_rate, 1.0 / 3.0);
    assert_rate!(group(&g, "BRANCH").rates.response_rate, 0.0);
    assert_rate!(group(&g, "ESCALATED").rates.response_rate, 0.5);
    assert_eq!(
        funnel(&scenario()),
        vec![
            ("NEIGHBOUR".into(), 5),
            ("UNIT".into(), 2),
            ("BRANCH".into(), 1),
            ("ESCALATED".into(), 2)
        ]
    );
}

#[test]
fn by_day_uses_the_local_date() {
    // Reported 20:00–23:00 local on the 20th (c1–c4) and 00:00–05:00 on the 21st.
    let g = summarize(&scenario(), Dimension::Day, now());
    let days: Vec<(&str, u64)> = g.iter().map(|g| (g.key.as_str(), g.rates.cases)).collect();
    assert_eq!(days, [("2026-11-20", 4), ("2026-11-21", 6)]);
    assert_rate!(group(&g, "2026-11-20").rates.response_rate, 4.0 / 8.0);
    assert_rate!(group(&g, "2026-11-21").rates.response_rate, 2.0 / 4.0);
}

#[test]
fn trend_buckets_reports_resolutions_and_breaches_by_the_hour() {
    let t = trend(
        &scenario(),
        T0,
        T0 + Duration::hours(24),
        Duration::hours(1),
    );
    assert_eq!(t.len(), 24);
    let reported: Vec<u64> = t.iter().map(|b| b.reported).collect();
    assert_eq!(&reported[..11], &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    // Resolutions 30 min after the report of c1, c2, c3, c5, c8.
    let resolved: Vec<usize> = t
        .iter()
        .enumerate()
        .filter(|(_, b)| b.resolved > 0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(resolved, [0, 1, 2, 4, 7]);
    // Breaches: c2 at +480 s (hour 1), c4 at +480/+960/+1440 s (hour 3), c9 at +480 s (hour 8).
    let breaches: Vec<(usize, u64)> = t
        .iter()
        .enumerate()
        .filter(|(_, b)| b.breaches > 0)
        .map(|(i, b)| (i, b.breaches))
        .collect();
    assert_eq!(breaches, [(1, 1), (3, 3), (8, 1)]);
}

#[test]
fn breached_list_names_the_latest_breach_most_recent_first() {
    let facts = scenario();
    let list = breached_cases(&facts);
    let got: Vec<(&str, &str)> = list
        .iter()
        .map(|f| (f.case.case_id.as_str(), f.clock.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("c09", "respond@UNIT#1"),
            ("c04", "respond@BRANCH#1"),
            ("c02", "respond@NEIGHBOUR#1")
        ]
    );
}

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(percentile(&[], 0.5), None);
    assert_eq!(percentile(&[7], 0.9), Some(7.0));
    assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2.0));
    assert_eq!(percentile(&[1, 2, 3, 4], 0.9), Some(4.0));
    let ten: Vec<i64> = (1..=10).collect();
    assert_eq!(percentile(&ten, 0.9), Some(9.0));
}
