//! SLA clocks, routing and the scheduler's fires, through `process` (decide → routing →
//! clocks), in virtual time. Pins the shipped 83012 preset's arithmetic, the ladder
//! climbing by itself, pauses, business-hours calendars with holidays and 调休, pinned
//! policy versions, declines charging time and the district taking over.

use crate::fixtures::*;
use std::collections::BTreeMap;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use whistle_domain::sla::{PRESET_83012, deadline_ops, parse_deadline_key};
use whistle_domain::{
    Actor, BusinessHours, Calendar, CaseState, ClockOutcome, Command, Ctx, DeadlineKind, District,
    EscalationCause, Event, EventBody, Handler, Level, OrgId, PrincipalId, RosterEntry, SlaBook,
    SlaSpec, Window, evolve, process,
};

const NINE: OffsetDateTime = datetime!(2025-03-03 09:00:00 +08:00);

fn book(text: &str) -> SlaBook {
    SlaBook::build(toml::from_str::<SlaSpec>(text).expect("preset parses")).expect("preset valid")
}

/// A case driven through `process`, with the deadline table the store would keep and a
/// scheduler that fires what is due.
struct Run {
    district: District,
    book: SlaBook,
    state: CaseState,
    log: Vec<Event>,
    deadlines: BTreeMap<String, OffsetDateTime>,
}

impl Run {
    fn new(district: District, book: SlaBook) -> Run {
        Run {
            district,
            book,
            state: None,
            log: Vec::new(),
            deadlines: BTreeMap::new(),
        }
    }

    fn standard() -> Run {
        Run::new(district(), book(PRESET_83012))
    }

    fn act(&mut self, at: OffsetDateTime, actor: &Actor, cmd: Command) -> Vec<Event> {
        self.try_act(at, actor, cmd).expect("command accepted")
    }

    fn try_act(
        &mut self,
        at: OffsetDateTime,
        actor: &Actor,
        cmd: Command,
    ) -> Result<Vec<Event>, whistle_domain::DomainError> {
        let ctx = Ctx {
            district: &self.district,
            actor,
            now: at,
        };
        let events = process(&self.state, &cmd, &ctx, &self.book)?;
        for op in deadline_ops(&events) {
            match op.due {
                Some(due) => self.deadlines.insert(op.key, due),
                None => self.deadlines.remove(&op.key),
            };
        }
        for e in &events {
            self.state = evolve(self.state.take(), e);
        }
        self.log.extend(events.clone());
        Ok(events)
    }

    /// Fire every deadline due at or before `until`, in due order, each at its due time,
    /// as the scheduler does; returns the events produced.
    fn run_until(&mut self, until: OffsetDateTime) -> Vec<Event> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            let Some((key, due)) = self
                .deadlines
                .iter()
                .filter(|(_, d)| **d <= until)
                .min_by_key(|(_, d)| **d)
                .map(|(k, d)| (k.clone(), *d))
            else {
                return out;
            };
            // A stale fire decides to nothing; the scheduler then drops the row.
            self.deadlines.remove(&key);
            let (clock, kind) = parse_deadline_key(&key).expect("deadline key");
            let cmd = Command::FireDeadline {
                clock: clock.to_string(),
                kind,
            };
            out.extend(self.act(due, &system(), cmd));
        }
        panic!("scheduler did not settle");
    }

    fn case(&self) -> &whistle_domain::Case {
        self.state.as_ref().expect("reported")
    }

    fn clock(&self, milestone: &str) -> &whistle_domain::MilestoneClock {
        self.case()
            .clocks
            .iter()
            .rev()
            .find(|c| c.milestone == milestone)
            .unwrap_or_else(|| panic!("no {milestone} clock"))
    }
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.event_type()).collect()
}

fn report(run: &mut Run, at: OffsetDateTime, category: &str, location: &str) -> Vec<Event> {
    run.act(at, &reporter(), report_cmd(category, location, None))
}

#[test]
fn rapid_83012_respond_warns_at_75_percent_breaches_at_8_minutes_and_escalates() {
    let mut run = Run::standard();
    let events = report(&mut run, NINE, NOISE, "cp1-b1-u1");
    assert_eq!(
        types(&events),
        ["CaseReported", "MilestoneStarted", "MilestoneStarted"],
        "respond (rung) and resolve (case) start at the report"
    );
    let respond = run.clock("respond");
    assert_eq!(
        (respond.policy.as_str(), respond.policy_version),
        ("83012-routine", 1)
    );
    assert_eq!(respond.warn_at, NINE + Duration::minutes(6));
    assert_eq!(respond.deadline, NINE + Duration::minutes(8));
    assert_eq!(run.clock("resolve").deadline, NINE + Duration::days(1));

    assert!(
        run.run_until(NINE + Duration::seconds(359)).is_empty(),
        "nothing due before 09:06"
    );
    assert_eq!(
        types(&run.run_until(NINE + Duration::minutes(6))),
        ["MilestoneWarned"]
    );
    assert!(run.run_until(NINE + Duration::seconds(479)).is_empty());
    let fired = run.run_until(NINE + Duration::minutes(8));
    assert_eq!(
        types(&fired),
        ["MilestoneBreached", "CaseEscalated", "MilestoneStarted"],
        "breach, one rung up, a fresh respond clock at UNIT"
    );
    assert_eq!(
        fired[1].body,
        EventBody::CaseEscalated {
            from: Level::Neighbour,
            to: Level::Unit,
            cause: EscalationCause::MilestoneBreached {
                milestone: "respond".into()
            }
        }
    );
    assert_eq!(run.clock("respond").level, Level::Unit);
    assert_eq!(run.clock("respond").deadline, NINE + Duration::minutes(16));
    // The resident's clock does not restart.
    assert_eq!(run.clock("resolve").deadline, NINE + Duration::days(1));
}

#[test]
fn nobody_acknowledges_and_the_case_climbs_every_rung_by_itself() {
    let mut spec = spec();
    spec.takeover_principal = Some(PrincipalId::new("district-duty"));
    let mut run = Run::new(District::build(spec).expect("district"), book(PRESET_83012));
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    run.run_until(NINE + Duration::hours(1));
    let escalations: Vec<_> = run
        .log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::CaseEscalated { from, to, cause } => {
                Some((e.occurred_at, *from, *to, cause.clone()))
            }
            _ => None,
        })
        .collect();
    let cause = EscalationCause::MilestoneBreached {
        milestone: "respond".into(),
    };
    assert_eq!(
        escalations,
        [
            (
                NINE + Duration::minutes(8),
                Level::Neighbour,
                Level::Unit,
                cause.clone()
            ),
            (
                NINE + Duration::minutes(16),
                Level::Unit,
                Level::Branch,
                cause.clone()
            ),
            (
                NINE + Duration::minutes(24),
                Level::Branch,
                Level::Escalated,
                cause
            ),
        ]
    );
    // At ESCALATED no department owns neighbour noise, so nobody was dispatched and
    // nobody signed in 8 minutes: the district took it over.
    let takeover: Vec<_> = run
        .log
        .iter()
        .filter(|e| matches!(e.body, EventBody::CaseTakenOver { .. }))
        .map(|e| e.occurred_at)
        .collect();
    assert_eq!(takeover, [NINE + Duration::minutes(32)]);
    assert_eq!(
        run.case().handler(),
        Some(&Handler::Principal(PrincipalId::new("district-duty")))
    );
    // Every escalation cancelled nothing else and skipped nothing: four respond clocks.
    let responds: Vec<_> = run
        .case()
        .clocks
        .iter()
        .filter(|c| c.milestone == "respond")
        .collect();
    assert_eq!(responds.len(), 4);
    assert!(
        responds
            .iter()
            .all(|c| matches!(c.outcome, Some(ClockOutcome::Breached { .. })))
    );
}

#[test]
fn signing_meets_respond_and_starts_the_30_minute_on_site_clock() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    let events = run.act(NINE + Duration::minutes(3), &h1(), Command::Acknowledge);
    assert_eq!(
        types(&events),
        ["CaseAcknowledged", "MilestoneMet", "MilestoneStarted"]
    );
    assert!(matches!(
        run.clock("respond").outcome,
        Some(ClockOutcome::Met { on_time: true, .. })
    ));
    assert_eq!(run.clock("on_site").deadline, NINE + Duration::minutes(33));
    // Acknowledged cases do not climb: the respond deadline was removed.
    assert!(run.run_until(NINE + Duration::minutes(20)).is_empty());
    let late = run.run_until(NINE + Duration::minutes(33));
    assert_eq!(
        types(&late),
        ["MilestoneWarned", "MilestoneBreached"],
        "on-site notifies only"
    );
    assert_eq!(run.case().level, Level::Neighbour);
    let events = run.act(NINE + Duration::minutes(40), &h1(), Command::ArriveOnSite);
    assert_eq!(
        types(&events),
        ["ArrivedOnSite"],
        "a breached clock is not met later"
    );
}

#[test]
fn routine_matters_are_resolved_in_1_day_complex_ones_in_2() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    assert_eq!(run.clock("resolve").deadline, NINE + Duration::days(1));
    assert_eq!(run.clock("resolve").policy, "83012-routine");
    let mut run = Run::standard();
    report(&mut run, NINE, FEE, "cp1");
    assert_eq!(run.clock("resolve").deadline, NINE + Duration::days(2));
    assert_eq!(run.clock("resolve").policy, "83012-complex");
    run.act(NINE + Duration::minutes(5), &h1(), Command::Acknowledge);
    run.act(NINE + Duration::minutes(20), &h1(), Command::ArriveOnSite);
    let events = run.act(NINE + Duration::hours(30), &h1(), resolve());
    assert!(events.iter().any(|e| e.body
        == EventBody::MilestoneMet {
            key: run.clock("resolve").key.clone(),
            on_time: true
        }));
}

#[test]
fn a_20_minute_pause_moves_every_open_deadline_by_20_minutes() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    run.act(NINE + Duration::minutes(3), &h1(), Command::Acknowledge);
    let (on_site, resolve_at) = (run.clock("on_site").deadline, run.clock("resolve").deadline);
    run.act(NINE + Duration::minutes(10), &h1(), pause());
    // Paused clocks do not fire even when wall time passes their deadline.
    assert!(
        run.run_until(NINE + Duration::minutes(29))
            .iter()
            .all(|e| !matches!(e.body, EventBody::MilestoneBreached { .. }))
    );
    let events = run.act(NINE + Duration::minutes(30), &h1(), Command::Resume);
    assert_eq!(
        types(&events),
        ["ClockResumed", "DeadlineShifted", "DeadlineShifted"]
    );
    assert_eq!(
        run.clock("on_site").deadline,
        on_site + Duration::minutes(20)
    );
    assert_eq!(
        run.clock("resolve").deadline,
        resolve_at + Duration::minutes(20)
    );
    assert_eq!(run.clock("on_site").paused_seconds, 1200);
    assert!(
        run.run_until(on_site + Duration::minutes(19))
            .iter()
            .all(|e| !matches!(e.body, EventBody::MilestoneBreached { .. }))
    );
    let late = run.run_until(on_site + Duration::minutes(20));
    assert!(types(&late).contains(&"MilestoneBreached"));
}

#[test]
fn urgent_category_starts_at_escalated_under_the_urgent_policy_and_is_dispatched() {
    let mut run = Run::standard();
    let events = report(&mut run, NINE, FIRE, "cp2");
    assert_eq!(
        types(&events),
        [
            "CaseReported",
            "CaseAssigned",
            "MilestoneStarted",
            "MilestoneStarted"
        ]
    );
    assert_eq!(run.case().level, Level::Escalated);
    assert_eq!(run.clock("respond").policy, "83012-urgent");
    // Fire hazard at cp2: the fire brigade is paired with cp2 and owns the category.
    assert_eq!(run.case().handler(), Some(&hd(DEPT_FIRE)));
}

#[test]
fn a_decline_charges_the_department_and_nobody_accepting_means_district_takeover() {
    let mut spec = spec();
    spec.takeover_principal = Some(PrincipalId::new("district-duty"));
    let mut run = Run::new(District::build(spec).expect("district"), book(PRESET_83012));
    report(&mut run, NINE, FIRE, "cp2");
    run.act(NINE + Duration::minutes(5), &fire(), decline());
    let hold = &run.case().holds[0];
    assert_eq!(hold.handler, hd(DEPT_FIRE));
    assert_eq!(
        (hold.from, hold.to),
        (NINE, Some(NINE + Duration::minutes(5))),
        "time charged to fire"
    );
    assert_eq!(run.case().handler(), None, "back to the dispatcher");
    let fired = run.run_until(NINE + Duration::minutes(8));
    assert!(
        types(&fired).contains(&"CaseTakenOver"),
        "{:?}",
        types(&fired)
    );
    assert_eq!(run.case().handler(), Some(&hp("district-duty")));
    // The district officer signs for it.
    let officer = Actor::new("district-duty", whistle_domain::Role::Handler);
    run.act(NINE + Duration::minutes(9), &officer, Command::Acknowledge);
}

#[test]
fn roster_routes_each_rung_to_its_handler() {
    let mut spec = spec();
    spec.roster = vec![
        RosterEntry {
            level: Level::Neighbour,
            org: OrgId::new("cp1-b1"),
            principal: PrincipalId::new("h-1"),
            party: None,
        },
        RosterEntry {
            level: Level::Neighbour,
            org: OrgId::new(CP1),
            principal: PrincipalId::new("h-2"),
            party: None,
        },
        RosterEntry {
            level: Level::Unit,
            org: OrgId::new(CP1),
            principal: PrincipalId::new("h-2"),
            party: None,
        },
    ];
    let mut run = Run::new(District::build(spec).expect("district"), book(PRESET_83012));
    report(&mut run, NINE, NOISE, "cp1-b1-u2");
    assert_eq!(
        run.case().handler(),
        Some(&hp("h-1")),
        "the most specific roster entry wins"
    );
    run.act(NINE + Duration::minutes(1), &h1(), escalate());
    assert_eq!(run.case().handler(), Some(&hp("h-2")));
    run.act(NINE + Duration::minutes(2), &supervisor(), escalate());
    assert_eq!(
        run.case().handler(),
        None,
        "no roster at BRANCH: the rung's queue"
    );
}

#[test]
fn a_policy_change_never_rewrites_started_clocks() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    let v2 = PRESET_83012
        .replacen("version = 1", "version = 2", 1)
        .replacen("target_seconds = 480", "target_seconds = 300", 1);
    run.book = book(&v2);
    assert_eq!(
        run.clock("respond").deadline,
        NINE + Duration::minutes(8),
        "pinned to v1"
    );
    run.run_until(NINE + Duration::minutes(8));
    let respond = run.clock("respond");
    assert_eq!((respond.level, respond.policy_version), (Level::Unit, 2));
    assert_eq!(
        respond.deadline,
        NINE + Duration::minutes(13),
        "the new rung uses v2"
    );
}

#[test]
fn stale_fires_decide_to_nothing() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    let key = run.clock("respond").key.clone();
    run.act(NINE + Duration::minutes(2), &h1(), Command::Acknowledge);
    let late = run.act(
        NINE + Duration::minutes(8),
        &system(),
        Command::FireDeadline {
            clock: key.clone(),
            kind: DeadlineKind::Breach,
        },
    );
    assert!(late.is_empty(), "met clocks do not breach");
    let early = run.act(
        NINE + Duration::minutes(4),
        &system(),
        Command::FireDeadline {
            clock: run.clock("on_site").key.clone(),
            kind: DeadlineKind::Breach,
        },
    );
    assert!(early.is_empty(), "not yet due");
}

fn business() -> Calendar {
    let t = |h, m| time::Time::from_hms(h, m, 0).expect("time");
    let d = |m, day| {
        time::Date::from_calendar_date(2025, time::Month::try_from(m).expect("month"), day)
            .expect("date")
    };
    Calendar::Business(BusinessHours {
        utc_offset_hours: 8,
        windows: vec![
            Window {
                open: t(9, 0),
                close: t(12, 0),
            },
            Window {
                open: t(13, 30),
                close: t(18, 0),
            },
        ],
        workdays: vec![
            time::Weekday::Monday,
            time::Weekday::Tuesday,
            time::Weekday::Wednesday,
            time::Weekday::Thursday,
            time::Weekday::Friday,
        ],
        // 2025 National Day and Mid-Autumn: 1–8 October off, Sunday 28 September and
        // Saturday 11 October worked (调休).
        holidays: (1..=8).map(|day| d(10, day)).collect(),
        makeup_workdays: [d(9, 28), d(10, 11)].into_iter().collect(),
    })
}

#[test]
fn business_hours_skip_nights_lunch_weekends_and_holidays_and_count_makeup_days() {
    let cal = business();
    let h = 3600;
    let cases = [
        // (start, counted seconds, expected)
        (
            datetime!(2025-09-22 10:00 +08:00),
            h,
            datetime!(2025-09-22 11:00 +08:00),
        ),
        (
            datetime!(2025-09-22 11:30 +08:00),
            h,
            datetime!(2025-09-22 14:00 +08:00),
        ),
        (
            datetime!(2025-09-22 18:30 +08:00),
            1,
            datetime!(2025-09-23 09:00:01 +08:00),
        ),
        (
            datetime!(2025-09-22 07:00 +08:00),
            h,
            datetime!(2025-09-22 10:00 +08:00),
        ),
        // Friday evening → the make-up Sunday 28 September.
        (
            datetime!(2025-09-26 17:00 +08:00),
            2 * h,
            datetime!(2025-09-28 10:00 +08:00),
        ),
        // Tuesday 30 September → over the eight-day holiday to Thursday 9 October.
        (
            datetime!(2025-09-30 17:00 +08:00),
            2 * h,
            datetime!(2025-10-09 10:00 +08:00),
        ),
        // Friday 10 October → the make-up Saturday 11 October.
        (
            datetime!(2025-10-10 17:30 +08:00),
            h,
            datetime!(2025-10-11 09:30 +08:00),
        ),
        // Given in UTC, counted in UTC+8: 01:00Z is 09:00 local.
        (
            datetime!(2025-09-22 01:00 UTC),
            h,
            datetime!(2025-09-22 10:00 +08:00),
        ),
    ];
    for (start, secs, want) in cases {
        assert_eq!(cal.add(start, secs), want, "{start} + {secs}s");
        assert_eq!(cal.counted(start, want), secs, "counted back from {start}");
    }
    // Every second of a business week: 7.5 h a day.
    assert_eq!(
        cal.counted(
            datetime!(2025-09-22 00:00 +08:00),
            datetime!(2025-09-27 00:00 +08:00)
        ),
        5 * 27_000
    );
    for start_min in (0..(7 * 24 * 60)).step_by(97) {
        let start = datetime!(2025-09-20 00:00 +08:00) + Duration::minutes(start_min);
        for secs in [1, 59, 3600, 27_000, 100_000] {
            assert_eq!(
                cal.counted(start, cal.add(start, secs)),
                secs,
                "{start} + {secs}"
            );
        }
    }
}

#[test]
fn a_business_hours_policy_pauses_over_the_night() {
    let spec = format!(
        "{}\n[calendars.office]\nkind = \"business\"\nutc_offset_hours = 8\nworkdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nholidays = [\"2025-10-01\"]\nmakeup_workdays = [\"2025-09-28\"]\nwindows = [{{ open = \"09:00\", close = \"18:00\" }}]\n",
        PRESET_83012.replace("calendar = \"24x7\"", "calendar = \"office\"")
    );
    let mut run = Run::new(district(), book(&spec));
    report(
        &mut run,
        datetime!(2025-09-26 17:58 +08:00),
        NOISE,
        "cp1-b1-u1",
    );
    // Two minutes on Friday, six on the make-up Sunday.
    assert_eq!(
        run.clock("respond").deadline,
        datetime!(2025-09-28 09:06 +08:00)
    );
}

/// A generated history: cases of several categories, some signed for quickly, some late,
/// some never (climbing by themselves), some paused; returns every case's events.
fn history(book_text: &str) -> Vec<Vec<Event>> {
    let mut spec = spec();
    spec.takeover_principal = Some(PrincipalId::new("district-duty"));
    let district = District::build(spec).expect("district");
    let mut cases = Vec::new();
    for i in 0..60u32 {
        let mut run = Run::new(district.clone(), book(book_text));
        let start = NINE + Duration::minutes(i64::from(i) * 7);
        let (category, location) = [
            (NOISE, "cp1-b1-u1"),
            (FEE, "cp1"),
            (FIRE, "cp2"),
            (CLUTTER, "cp1-b2"),
        ][i as usize % 4];
        run.act(start, &reporter(), report_cmd(category, location, None));
        let signer = if run.case().level == Level::Escalated {
            fire()
        } else {
            h1()
        };
        match i % 5 {
            // Signed in 3 minutes, on site in 20, resolved in 5 hours.
            0 | 1 => {
                run.run_until(start + Duration::minutes(3));
                run.act(start + Duration::minutes(3), &signer, Command::Acknowledge);
                run.run_until(start + Duration::minutes(20));
                run.act(
                    start + Duration::minutes(20),
                    &signer,
                    Command::ArriveOnSite,
                );
                run.run_until(start + Duration::hours(5));
                run.act(start + Duration::hours(5), &signer, resolve());
            }
            // Signed after 6 minutes (on time under 8, late under 5), never on site.
            2 => {
                run.run_until(start + Duration::minutes(6));
                if run
                    .try_act(start + Duration::minutes(6), &signer, Command::Acknowledge)
                    .is_err()
                {
                    run.act(
                        start + Duration::minutes(6),
                        &supervisor(),
                        Command::Reject {
                            reason: "stale".into(),
                        },
                    );
                }
            }
            // Nobody signs: it climbs.
            3 => {}
            // Signed at 2 minutes, paused for an hour, resolved in 30 hours.
            _ => {
                run.act(start + Duration::minutes(2), &signer, Command::Acknowledge);
                run.act(start + Duration::minutes(4), &signer, pause());
                run.act(start + Duration::minutes(64), &signer, Command::Resume);
                run.run_until(start + Duration::hours(30));
                let _ = run.try_act(start + Duration::hours(30), &signer, resolve());
            }
        }
        cases.push(run.log);
    }
    cases
}

fn tally(
    scored: &[whistle_domain::replay::Scored],
) -> BTreeMap<(String, Level, whistle_domain::replay::Score), usize> {
    let mut t = BTreeMap::new();
    for s in scored {
        *t.entry((s.milestone.clone(), s.level, s.score))
            .or_default() += 1;
    }
    t
}

#[test]
fn replay_under_the_policy_in_force_reproduces_the_recorded_figures() {
    use whistle_domain::replay::{actual, candidate};
    let book = book(PRESET_83012);
    let horizon = NINE + Duration::days(5);
    let cases = history(PRESET_83012);
    let mut all_actual = Vec::new();
    let mut all_candidate = Vec::new();
    for events in &cases {
        let a = actual(events, horizon);
        let c = candidate(events, &book, horizon);
        assert_eq!(a, c, "case by case, clock by clock");
        all_actual.extend(a);
        all_candidate.extend(c);
    }
    assert!(
        all_actual.len() > 150,
        "a real history: {} clocks",
        all_actual.len()
    );
    let t = tally(&all_actual);
    assert!(
        t.keys()
            .any(|(_, _, s)| *s == whistle_domain::replay::Score::Late),
        "some breaches: {t:?}"
    );
    assert!(
        t.keys()
            .any(|(_, _, s)| *s == whistle_domain::replay::Score::OnTime)
    );
}

#[test]
fn replay_under_a_stricter_policy_scores_the_same_actions_worse_and_says_where() {
    use whistle_domain::replay::{Score, actual, candidate};
    let horizon = NINE + Duration::days(5);
    let cases = history(PRESET_83012);
    // Respond in 5 minutes instead of 8, as a new version.
    let stricter_text = PRESET_83012
        .replace("version = 1", "version = 2")
        .replace("target_seconds = 480", "target_seconds = 300");
    let stricter = book(&stricter_text);
    let late = |v: &[whistle_domain::replay::Scored], m: &str| {
        v.iter()
            .filter(|s| s.milestone == m && s.score == Score::Late)
            .count()
    };
    let (mut a_respond, mut c_respond, mut a_resolve, mut c_resolve) = (0, 0, 0, 0);
    for events in &cases {
        let a = actual(events, horizon);
        let c = candidate(events, &stricter, horizon);
        a_respond += late(&a, "respond");
        c_respond += late(&c, "respond");
        a_resolve += late(&a, "resolve");
        c_resolve += late(&c, "resolve");
        assert!(
            c.iter().all(|s| s.policy_version == 2),
            "scored under the candidate"
        );
    }
    // Cases signed at 6 minutes were on time and are now late; nothing else moved.
    assert_eq!(c_respond - a_respond, 12, "the twelve signed at minute 6");
    assert_eq!(c_resolve, a_resolve, "resolution targets did not change");
}

#[test]
fn routing_prefers_the_party_the_five_party_list_names_for_the_rung() {
    use whistle_domain::{Owner, Party};
    let mut spec = spec();
    // The lift belongs to the property company at BRANCH; fee disputes to the owners'
    // committee. The branch secretary is listed on the building, the property company
    // and the committee on the compound.
    for c in spec.categories.iter_mut() {
        if c.code.as_str() == LIFT {
            c.owners = vec![Owner {
                level: Level::Branch,
                party: Party::PropertyCompany,
            }];
        }
        if c.code.as_str() == FEE {
            c.owners = vec![Owner {
                level: Level::Branch,
                party: Party::OwnersCommittee,
            }];
        }
    }
    spec.roster = vec![
        RosterEntry {
            level: Level::Branch,
            org: OrgId::new("cp1-b1"),
            principal: PrincipalId::new("branch-sec"),
            party: Some(Party::PartyBranch),
        },
        RosterEntry {
            level: Level::Branch,
            org: OrgId::new(CP1),
            principal: PrincipalId::new("property-co"),
            party: Some(Party::PropertyCompany),
        },
        RosterEntry {
            level: Level::Branch,
            org: OrgId::new(CP1),
            principal: PrincipalId::new("committee"),
            party: Some(Party::OwnersCommittee),
        },
    ];
    let district = District::build(spec).expect("district");
    let routed = |category: &str, location: &str| {
        let mut run = Run::new(district.clone(), book(PRESET_83012));
        report(&mut run, NINE, category, location);
        run.case().handler().cloned()
    };
    assert_eq!(
        routed(LIFT, "cp1-b1-u1"),
        Some(hp("property-co")),
        "the owning party, though listed higher up"
    );
    assert_eq!(routed(FEE, "cp1-b1"), Some(hp("committee")));
    // No owner named for the rung: the most specific line wins.
    assert_eq!(
        routed(CLUTTER, "cp1-b1-u1"),
        None,
        "no UNIT roster at all: the queue"
    );
}

#[test]
fn the_shipped_2025_calendar_counts_spring_festival_and_its_makeup_days() {
    use whistle_domain::sla::CALENDAR_CN_2025;
    let text = format!(
        "{}\n{}",
        PRESET_83012.replace("calendar = \"24x7\"", "calendar = \"cn-2025\""),
        CALENDAR_CN_2025
    );
    let book = book(&text);
    let cal = book.calendar("cn-2025").expect("calendar");
    // Friday 24 January 17:00 + 3 working hours: 1 h on Friday, then Sunday 26 January
    // is a make-up working day.
    assert_eq!(
        cal.add(datetime!(2025-01-24 17:00 +08:00), 3 * 3600),
        datetime!(2025-01-26 11:00 +08:00)
    );
    // Monday 27 January 17:00 + 2 h: over the Spring Festival (28 Jan – 4 Feb) to
    // Wednesday 5 February.
    assert_eq!(
        cal.add(datetime!(2025-01-27 17:00 +08:00), 2 * 3600),
        datetime!(2025-02-05 10:00 +08:00)
    );
    // Saturday 8 February is worked.
    assert!(matches!(cal, Calendar::Business(b) if b.is_workday(time::macros::date!(2025-02-08))));
    // A routine respond clock under this calendar, reported on New Year's Eve evening.
    let mut run = Run::new(district(), book);
    report(
        &mut run,
        datetime!(2024-12-31 17:58 +08:00),
        NOISE,
        "cp1-b1-u1",
    );
    assert_eq!(
        run.clock("respond").deadline,
        datetime!(2025-01-02 09:06 +08:00)
    );
}

#[test]
fn a_department_that_cannot_take_its_messages_loses_the_case_to_the_district() {
    let mut spec = spec();
    spec.takeover_principal = Some(PrincipalId::new("district-duty"));
    let mut run = Run::new(District::build(spec).expect("district"), book(PRESET_83012));
    report(&mut run, NINE, FIRE, "cp2");
    assert_eq!(run.case().handler(), Some(&hd(DEPT_FIRE)));
    let events = run.act(
        NINE + Duration::minutes(2),
        &system(),
        delivery_failed(DEPT_FIRE),
    );
    assert_eq!(types(&events), ["DeliveryFailed", "CaseTakenOver"]);
    assert_eq!(run.case().handler(), Some(&hp("district-duty")));
    // Another department's failure, or one after signing, changes no hands.
    let events = run.act(
        NINE + Duration::minutes(3),
        &system(),
        delivery_failed(DEPT_GAS),
    );
    assert_eq!(types(&events), ["DeliveryFailed"]);
}

#[test]
fn resolving_without_an_on_site_report_ends_the_on_site_clock() {
    let mut run = Run::standard();
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    run.act(NINE + Duration::minutes(2), &h1(), Command::Acknowledge);
    let events = run.act(NINE + Duration::minutes(10), &h1(), resolve());
    assert_eq!(
        types(&events),
        ["CaseResolved", "MilestoneMet", "MilestoneCancelled"],
        "resolve met, on_site ended"
    );
    assert!(matches!(
        run.clock("on_site").outcome,
        Some(ClockOutcome::Cancelled { .. })
    ));
    assert!(
        run.run_until(NINE + Duration::days(2)).is_empty(),
        "a resolved case breaches nothing later"
    );
}

/// Regression, found while fuzzing `request_decoding` (fuzz/): the minimised TOML of a
/// `PublishSla` request whose milestone target (99999999999 s, ~3000 years) was accepted,
/// after which every report under it panicked computing its deadline. Now the book is
/// refused, and the longest target allowed still computes.
#[test]
fn a_milestone_target_beyond_3660_days_is_refused_and_the_longest_allowed_computes() {
    const MINIMISED: &str = "[[policies]]\nname=\"83012-routine\"\nversion=2\n\
        [[policies.milestones]]\nname=\"e\"\nscope=\"rung\"\nstarts_on=\"rung_entered\"\n\
        stops_on=[\"\"]\ntarget_seconds=99999999999\non_breach=\"escalate\"\n";
    let update: SlaSpec = toml::from_str(MINIMISED).expect("the fuzz input parses");
    let err = whistle_domain::admin::publish_sla(&book(PRESET_83012), update)
        .expect_err("a ~3000-year target is refused");
    assert!(
        err.to_string().contains("at most 316224000 seconds"),
        "{err}"
    );

    let longest = PRESET_83012.replacen(
        "target_seconds = 480",
        &format!(
            "target_seconds = {}",
            whistle_domain::sla::MAX_TARGET_SECONDS
        ),
        1,
    );
    let mut run = Run::new(district(), book(&longest));
    report(&mut run, NINE, NOISE, "cp1-b1-u1");
    assert_eq!(run.clock("respond").deadline, NINE + Duration::days(3660));
}
