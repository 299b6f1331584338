//! Property tests for the invariants of DESIGN §2, over random command sequences from
//! random actors applied to a reported case.

use crate::fixtures::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};
use whistle_domain::{
    Actor, CaseState, CategoryCode, Channel, Closure, Command, Ctx, DomainError, EscalationCause,
    Event, EventBody, Evidence, Handler, Level, MergeCase, OrgId, Role, Stage, Status, Urgency,
    decide, decide_merge, evolve, fold, triage,
};

// ---------------------------------------------------------------------------------------
// Generators

fn actors() -> Vec<Actor> {
    vec![
        reporter(),
        other_resident(),
        grid_worker(),
        h1(),
        h2(),
        officer(),
        fire(),
        fire2(),
        gas(),
        chengguan(),
        stray_dept(),
        supervisor(),
        admin(),
        system(),
    ]
}

/// Free text: mostly valid, sometimes blank, oversized, control-laden or arbitrary.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("a reason".to_string()),
        1 => Just(String::new()),
        1 => Just(" \t\r\n ".to_string()),
        1 => Just("bell\u{7}nul\u{0}".to_string()),
        1 => Just("漏".repeat(4001)),
        1 => Just("\u{202e}reversed\u{200b}".to_string()),
        2 => any::<String>(),
        2 => "\\PC{0,40}",
    ]
}

fn handler() -> impl Strategy<Value = Handler> {
    prop_oneof![
        Just(hp("h-1")),
        Just(hp("h-2")),
        Just(hp("officer-1")),
        Just(hp("bad id!")),
        Just(hd(DEPT_FIRE)),
        Just(hd(DEPT_GAS)),
        Just(hd(DEPT_CHENGGUAN)),
        Just(hd("police")),
    ]
}

fn evidence() -> impl Strategy<Value = Vec<Evidence>> {
    let item = prop_oneof![
        6 => (0usize..100).prop_map(ev),
        1 => Just(Evidence { url: "ftp://x.example/a".into(), sha256: "0".repeat(64) }),
        1 => Just(Evidence { url: "https://x.example/a".into(), sha256: "xyz".into() }),
        1 => (any::<String>(), any::<String>()).prop_map(|(url, sha256)| Evidence { url, sha256 }),
    ];
    prop_oneof![
        4 => Just(vec![]),
        4 => prop::collection::vec(item.clone(), 1..4),
        1 => prop::collection::vec(item, 9..13),
    ]
}

fn satisfaction() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 1u8..=5, 1 => any::<u8>()]
}

fn urgency() -> impl Strategy<Value = Option<Urgency>> {
    prop_oneof![
        Just(None),
        Just(Some(Urgency::Normal)),
        Just(Some(Urgency::Urgent)),
        Just(Some(Urgency::Emergency)),
    ]
}

fn category_code() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(CATEGORIES.iter().map(|c| c.0.to_string()).collect::<Vec<_>>()),
        1 => Just("no_such".to_string()),
        1 => any::<String>(),
    ]
}

fn location() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "cp1".to_string(), "cp1-b1".into(), "cp1-b1-u2".into(), "cp1-b2-u1".into(),
            "cp2".into(), "cp2-b1-u1".into(),
        ]),
        1 => prop::sample::select(vec![DISTRICT.to_string(), STREET.into(), COMMUNITY.into(), "nowhere".into()]),
        1 => any::<String>(),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn report() -> impl Strategy<Value = Command> {
    (
        0u128..4,
        category_code(),
        location(),
        text(),
        channel(),
        urgency(),
    )
        .prop_map(
            |(id, category, location, description, channel, urgency)| Command::Report {
                case_id: case_id(id),
                category: CategoryCode::new(category),
                location: OrgId::new(location),
                description,
                channel,
                urgency,
                contact: None,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => report(),
        3 => handler().prop_map(|handler| Command::Assign { handler }),
        6 => Just(Command::Acknowledge),
        4 => Just(Command::ArriveOnSite),
        2 => (text(), evidence()).prop_map(|(text, evidence)| Command::AddNote { text, evidence }),
        5 => (text(), evidence()).prop_map(|(summary, evidence)| Command::Resolve { summary, evidence }),
        4 => (satisfaction(), text()).prop_map(|(satisfaction, comment)| Command::Confirm { satisfaction, comment }),
        3 => text().prop_map(|reason| Command::Reopen { reason }),
        3 => text().prop_map(|reason| Command::Escalate { reason }),
        2 => prop_oneof![Just("respond@neighbour#1".to_string()), text()].prop_map(|clock| Command::FireDeadline { clock, kind: whistle_domain::DeadlineKind::Breach }),
        2 => (handler(), text()).prop_map(|(to, reason)| Command::Transfer { to, reason }),
        3 => text().prop_map(|reason| Command::Decline { reason }),
        2 => text().prop_map(|reason| Command::Pause { reason }),
        2 => Just(Command::Resume),
        1 => text().prop_map(|reason| Command::Withdraw { reason }),
        1 => text().prop_map(|reason| Command::Reject { reason }),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Cmd(Command),
    /// Merge this case into the fixed open target case.
    Merge(String),
}

impl Op {
    fn is_reopen(&self) -> bool {
        matches!(self, Op::Cmd(Command::Reopen { .. }))
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => command().prop_map(Op::Cmd),
        1 => text().prop_map(Op::Merge),
    ]
}

/// One step: who acts, what they ask, and how many seconds pass before it.
type StepSpec = (usize, Op, i64);

/// Mostly an actor whose role may issue the command (so sequences get somewhere),
/// sometimes anyone at all.
fn step() -> impl Strategy<Value = StepSpec> {
    let actors = actors();
    (
        op(),
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.8),
        prop_oneof![0i64..600, 0i64..100_000],
    )
        .prop_map(move |(op, pick, fitting, secs)| {
            let roles: &[Role] = match &op {
                Op::Cmd(c) => c.allowed_roles(),
                Op::Merge(_) => MergeCase::ALLOWED_ROLES,
            };
            let candidates: Vec<usize> = (0..actors.len())
                .filter(|i| !fitting || roles.contains(&actors[*i].role))
                .collect();
            (*pick.get(&candidates), op, secs)
        })
}

fn steps(max: usize) -> impl Strategy<Value = Vec<StepSpec>> {
    prop::collection::vec(step(), 0..=max)
}

/// The opening report: a valid category and location, any urgency claim.
fn opening() -> impl Strategy<Value = Command> {
    (
        prop::sample::select(CATEGORIES.iter().map(|c| c.0).collect::<Vec<_>>()),
        prop::sample::select(vec!["cp1", "cp1-b1-u1", "cp1-b2", "cp2-b1-u1"]),
        urgency(),
    )
        .prop_map(|(c, l, u)| report_cmd(c, l, u))
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Running a sequence

struct Step {
    actor: Actor,
    op: Op,
    now: OffsetDateTime,
    before: CaseState,
    result: Result<Vec<Event>, DomainError>,
    after: CaseState,
    /// Events recorded on the stream so far, including this step's.
    recorded: usize,
}

struct Trace {
    steps: Vec<Step>,
    events: Vec<Event>,
    state: CaseState,
    /// Events on the merge target's stream.
    target_events: Vec<Event>,
}

fn run(opening: &Command, spec: &[StepSpec]) -> Trace {
    let district = district();
    let actors = actors();
    let mut target = Sim::new();
    target.ok(
        &reporter(),
        report_with(OTHER_CASE, NOISE, "cp2", None, "the same problem"),
    );
    let target_state = target.state.clone();

    let mut now = T0;
    let mut state: CaseState = None;
    let mut events = Vec::new();
    let mut target_events = Vec::new();
    let mut out = Vec::new();
    let all = std::iter::once((0usize, Op::Cmd(opening.clone()), 0i64)).chain(spec.iter().cloned());
    for (i, op, secs) in all {
        now += Duration::seconds(secs);
        let actor = actors[i].clone();
        let ctx = Ctx {
            district: &district,
            actor: &actor,
            now,
        };
        let result = match &op {
            Op::Cmd(cmd) => decide(&state, cmd, &ctx),
            Op::Merge(reason) => decide_merge(
                &state,
                &target_state,
                &MergeCase {
                    into: case_id(OTHER_CASE),
                    reason: reason.clone(),
                },
                &ctx,
            )
            .map(|(dup, tgt)| {
                target_events.extend(tgt);
                dup
            }),
        };
        let before = state.clone();
        if let Ok(evs) = &result {
            for e in evs {
                state = evolve(state, e);
                events.push(e.clone());
            }
        }
        out.push(Step {
            actor,
            op,
            now,
            before,
            result,
            after: state.clone(),
            recorded: events.len(),
        });
    }
    Trace {
        steps: out,
        events,
        state,
        target_events,
    }
}

fn redecide(step: &Step, district: &whistle_domain::District) -> Result<Vec<Event>, DomainError> {
    let ctx = Ctx {
        district,
        actor: &step.actor,
        now: step.now,
    };
    match &step.op {
        Op::Cmd(cmd) => decide(&step.before, cmd, &ctx),
        Op::Merge(reason) => {
            let mut t = Sim::new();
            t.ok(
                &reporter(),
                report_with(OTHER_CASE, NOISE, "cp2", None, "the same problem"),
            );
            decide_merge(
                &step.before,
                &t.state,
                &MergeCase {
                    into: case_id(OTHER_CASE),
                    reason: reason.clone(),
                },
                &ctx,
            )
            .map(|(dup, _)| dup)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Invariants

proptest! {
    #![proptest_config(config())]

    /// No level is skipped: every escalation moves exactly one rung up from where the
    /// case is, and nothing else moves the level (except triage, on report).
    #[test]
    fn no_level_is_skipped(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        let district = district();
        let mut state: CaseState = None;
        for e in &t.events {
            let before = state.clone();
            state = evolve(state, e);
            let after = state.as_ref().unwrap();
            match (&before, &e.body) {
                (None, EventBody::CaseReported { category, requested_urgency, level, fast_channel, .. }) => {
                    let cat = district.catalogue.get(category).unwrap();
                    let (want, _, fast) = triage(cat, *requested_urgency);
                    prop_assert_eq!(*level, want);
                    prop_assert_eq!(*fast_channel, fast);
                    prop_assert_eq!(after.level, *level);
                    prop_assert!(!*fast_channel || *level == Level::Escalated);
                }
                (Some(b), EventBody::CaseEscalated { from, to, .. }) => {
                    prop_assert_eq!(*from, b.level);
                    prop_assert_eq!(Some(*to), from.next());
                    prop_assert_eq!(after.level, *to);
                    prop_assert_eq!(after.escalations, b.escalations + 1);
                    prop_assert_eq!(&after.status, &Status::Open(Stage::Unassigned), "a new rung starts unassigned");
                }
                (Some(b), body) => {
                    prop_assert_eq!(after.level, b.level, "{} moved the level", body.event_type());
                }
                (None, body) => prop_assert!(false, "stream starts with {}", body.event_type()),
            }
        }
    }

    /// A closed case accepts no command but reopen.
    #[test]
    fn a_closed_case_accepts_only_reopen(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        for s in &t.steps {
            let closed = s.before.as_ref().is_some_and(|c| c.is_closed());
            if closed && !s.op.is_reopen() {
                prop_assert!(s.result.is_err(), "{:?} accepted on a closed case", s.op);
                prop_assert_eq!(&s.after, &s.before);
            }
            if closed
                && s.op.is_reopen()
                && let Ok(evs) = &s.result
            {
                prop_assert_eq!(evs.len(), 1);
                prop_assert_eq!(evs[0].body.event_type(), "CaseReopened");
                prop_assert!(!s.after.as_ref().unwrap().is_closed());
            }
        }
    }

    /// Replaying the stream from nothing yields the incrementally evolved state, at every
    /// step, every time, and also after a trip through the stored JSON form.
    #[test]
    fn replay_is_deterministic(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        prop_assert_eq!(&fold(&t.events), &t.state);
        prop_assert_eq!(&fold(&t.events), &fold(&t.events));
        for s in &t.steps {
            prop_assert_eq!(&fold(&t.events[..s.recorded]), &s.after);
        }
        let json = serde_json::to_string(&t.events).unwrap();
        let back: Vec<Event> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &t.events);
        prop_assert_eq!(&fold(&back), &t.state);
        // The merge target's stream replays too.
        if !t.target_events.is_empty() {
            let mut target = Sim::new();
            target.ok(&reporter(), report_with(OTHER_CASE, NOISE, "cp2", None, "the same problem"));
            let mut all = target.events.clone();
            all.extend(t.target_events.iter().cloned());
            let folded = fold(&all).unwrap();
            prop_assert_eq!(folded.duplicates, vec![case_id(CASE)]);
            prop_assert_eq!(folded.version as usize, all.len());
        }
    }

    /// The version is the number of events folded, after every step.
    #[test]
    fn version_counts_events(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        for s in &t.steps {
            match &s.after {
                Some(c) => prop_assert_eq!(c.version as usize, s.recorded),
                None => prop_assert_eq!(s.recorded, 0),
            }
            if let Ok(evs) = &s.result {
                let before = s.before.as_ref().map_or(0, |c| c.version);
                prop_assert_eq!(s.after.as_ref().unwrap().version, before + evs.len() as u64);
            }
        }
    }

    /// decide is pure: the same inputs give the same answer; events record who acted and
    /// when; a refusal changes nothing.
    #[test]
    fn decide_is_pure(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        let district = district();
        for s in &t.steps {
            prop_assert_eq!(&redecide(s, &district), &s.result);
            match &s.result {
                Ok(evs) => {
                    // Only a stale deadline fire decides to nothing.
                    prop_assert!(
                        !evs.is_empty() || matches!(s.op, Op::Cmd(Command::FireDeadline { .. })),
                        "an accepted command yields an event"
                    );
                    for e in evs {
                        prop_assert_eq!(&e.actor, &s.actor);
                        prop_assert_eq!(e.occurred_at, s.now);
                    }
                }
                Err(_) => prop_assert_eq!(&s.after, &s.before),
            }
        }
    }

    /// A handler is present exactly when the stage says someone holds the case, and the
    /// other fields agree with the status.
    #[test]
    fn handler_matches_status(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        for s in &t.steps {
            let Some(c) = &s.after else { continue };
            match &c.status {
                Status::Open(Stage::Unassigned) => prop_assert_eq!(c.handler(), None),
                Status::Open(Stage::Assigned(h) | Stage::Acknowledged(h) | Stage::OnSite(h)) => {
                    prop_assert_eq!(c.handler(), Some(h));
                }
                Status::Resolved { by } => prop_assert_eq!(c.handler(), Some(by)),
                Status::Closed(_) => prop_assert_eq!(c.handler(), None),
            }
            if let Status::Open(stage) = &c.status {
                prop_assert_eq!(c.handler(), stage.handler());
            }
            if let Some(Handler::Department(d)) = c.handler() {
                prop_assert_eq!(c.level, Level::Escalated, "department {} holds a {} case", d, c.level);
            }
            prop_assert!(c.declined_by.is_empty() || c.level == Level::Escalated);
            match &c.status {
                Status::Open(_) => prop_assert_eq!(c.resolved_at, None),
                Status::Resolved { .. } | Status::Closed(Closure::Confirmed { .. }) => {
                    prop_assert!(c.resolved_at.is_some());
                }
                Status::Closed(_) => {}
            }
            prop_assert_eq!(c.closed_at.is_some(), c.is_closed());
            prop_assert!(c.paused.is_none() || matches!(c.status, Status::Open(_)), "a pause outlived the open case");
        }
    }

    /// Only the holder who signed resolves, arrives on site or declines; the signer is the
    /// actor (or their department); only those with standing steer the case (pause,
    /// resume, reject, transfer, escalate); a resume reports exactly how long the pause
    /// lasted.
    #[test]
    fn only_the_holder_works_the_case(opening in opening(), spec in steps(40)) {
        let t = run(&opening, &spec);
        for s in &t.steps {
            let (Ok(evs), Some(before)) = (&s.result, &s.before) else { continue };
            let after = s.after.as_ref().unwrap();
            let acts_for = |h: &Handler| match h {
                Handler::Principal(p) => &s.actor.principal == p,
                Handler::Department(d) => s.actor.department.as_ref() == Some(d),
            };
            let oversees = matches!(s.actor.role, Role::Supervisor | Role::Admin | Role::System);
            // Pause, resume and reject: an overseer, the holder, or a handler of a rung
            // below ESCALATED while nobody holds the case.
            let steers = |c: &whistle_domain::Case| {
                oversees
                    || match c.handler() {
                        Some(h) => acts_for(h),
                        None => s.actor.role == Role::Handler && c.level < Level::Escalated,
                    }
            };
            for e in evs {
                match &e.body {
                    EventBody::CaseResolved { handler, level, .. } => {
                        prop_assert!(matches!(&before.status,
                            Status::Open(Stage::Acknowledged(h) | Stage::OnSite(h)) if h == handler));
                        prop_assert!(acts_for(handler));
                        prop_assert_eq!(*level, before.level);
                    }
                    EventBody::ArrivedOnSite { handler, .. } => {
                        prop_assert_eq!(&before.status, &Status::Open(Stage::Acknowledged(handler.clone())));
                        prop_assert!(acts_for(handler));
                    }
                    EventBody::CaseAcknowledged { handler, .. } => {
                        prop_assert!(acts_for(handler));
                        prop_assert!(before.paused.is_none());
                        if let Handler::Department(d) = handler {
                            prop_assert_eq!(before.level, Level::Escalated);
                            let assigned_to_me = before.status == Status::Open(Stage::Assigned(handler.clone()));
                            prop_assert!(assigned_to_me || !before.declined_by.contains(d),
                                "a department that declined reclaimed the case");
                        }
                    }
                    EventBody::CaseDeclined { department, .. } => {
                        prop_assert_eq!(&before.status, &Status::Open(Stage::Assigned(Handler::Department(department.clone()))));
                        prop_assert_eq!(s.actor.department.as_ref(), Some(department));
                    }
                    EventBody::ClockResumed { paused_seconds } => {
                        let since = before.paused.as_ref().unwrap().since;
                        prop_assert_eq!(*paused_seconds, (s.now - since).whole_seconds());
                        prop_assert_eq!(&after.paused, &None);
                        prop_assert!(steers(before), "{} resumed without standing", s.actor.principal);
                    }
                    EventBody::ClockPaused { reason } => {
                        prop_assert!(before.paused.is_none());
                        let p = after.paused.as_ref().unwrap();
                        prop_assert_eq!((&p.reason, p.since), (reason, s.now));
                        prop_assert!(steers(before), "{} paused without standing", s.actor.principal);
                    }
                    EventBody::CaseRejected { .. } => {
                        prop_assert!(steers(before), "{} rejected without standing", s.actor.principal);
                    }
                    EventBody::CaseTransferred { from, to, .. } => {
                        prop_assert_eq!(before.handler(), Some(from));
                        prop_assert!(from != to);
                        prop_assert!(oversees || acts_for(from));
                    }
                    EventBody::CaseEscalated { cause: EscalationCause::MilestoneBreached { .. }, .. } => {
                        prop_assert_eq!(s.actor.role, Role::System);
                    }
                    EventBody::CaseEscalated { cause: EscalationCause::Requested { .. }, .. } => {
                        prop_assert!(before.paused.is_none());
                        let standing = match before.handler() {
                            _ if oversees => true,
                            Some(h) => acts_for(h),
                            None => s.actor.role == Role::Handler && before.level < Level::Escalated,
                        };
                        prop_assert!(standing, "{} escalated without standing", s.actor.principal);
                    }
                    EventBody::ResolutionConfirmed { .. } => {
                        let was_resolved = matches!(before.status, Status::Resolved { .. });
                        prop_assert!(was_resolved, "confirmed a case that was not resolved");
                    }
                    _ => {}
                }
            }
        }
    }

    /// decide never panics, whatever the strings, numbers and states.
    #[test]
    fn decide_never_panics_on_wild_input(
        category in any::<String>(),
        location in any::<String>(),
        description in prop_oneof![any::<String>(), "\\PC{3990,4010}", Just("\u{0}".repeat(5000))],
        satisfaction in any::<u8>(),
        reason in any::<String>(),
        url in any::<String>(),
        sha in any::<String>(),
        principal in any::<String>(),
        opening in opening(),
        spec in steps(10),
    ) {
        let t = run(&opening, &spec);
        let district = district();
        let weird = Actor { principal: whistle_domain::PrincipalId::new(principal.clone()), role: whistle_domain::Role::Handler, department: Some(whistle_domain::DepartmentId::new(principal.clone())), scope: Default::default() };
        let cmds = vec![
            Command::Report { case_id: case_id(9), category: CategoryCode::new(category), location: OrgId::new(location), description: description.clone(), channel: Channel::Hotline, urgency: Some(Urgency::Emergency), contact: None },
            Command::Confirm { satisfaction, comment: description.clone() },
            Command::AddNote { text: description, evidence: vec![Evidence { url, sha256: sha }] },
            Command::Assign { handler: Handler::Principal(whistle_domain::PrincipalId::new(principal.clone())) },
            Command::Transfer { to: Handler::Department(whistle_domain::DepartmentId::new(principal)), reason: reason.clone() },
            Command::Escalate { reason: reason.clone() },
            Command::FireDeadline { clock: reason.clone(), kind: whistle_domain::DeadlineKind::Warn },
            Command::Decline { reason: reason.clone() },
            Command::Reopen { reason },
        ];
        for state in [None, t.state.clone()] {
            for cmd in &cmds {
                for actor in actors().iter().chain([&weird]) {
                    let _ = decide(&state, cmd, &Ctx { district: &district, actor, now: T0 });
                }
            }
        }
    }
}

/// The generator is good enough to matter: across a fixed set of sequences it reaches
/// every event type, every closure kind and every level.
#[test]
fn the_generator_reaches_every_state() {
    let mut runner = TestRunner::deterministic();
    let strategy = (opening(), steps(40));
    let mut types = BTreeSet::new();
    let mut closures = BTreeSet::new();
    let mut levels = BTreeSet::new();
    let mut reopened_closed = false;
    for _ in 0..256 {
        let (opening, spec) = strategy.new_tree(&mut runner).unwrap().current();
        let t = run(&opening, &spec);
        for e in t.events.iter().chain(&t.target_events) {
            types.insert(e.body.event_type());
        }
        for s in &t.steps {
            if let Some(c) = &s.after {
                levels.insert(c.level);
                if let Status::Closed(k) = &c.status {
                    closures.insert(k.as_str());
                }
            }
            if s.op.is_reopen() && s.result.is_ok() && s.before.as_ref().unwrap().is_closed() {
                reopened_closed = true;
            }
        }
    }
    let all = [
        "CaseReported",
        "CaseAssigned",
        "CaseAcknowledged",
        "ArrivedOnSite",
        "NoteAdded",
        "CaseResolved",
        "ResolutionConfirmed",
        "CaseReopened",
        "CaseEscalated",
        "CaseTransferred",
        "CaseDeclined",
        "ClockPaused",
        "ClockResumed",
        "CaseWithdrawn",
        "CaseRejected",
        "CaseMerged",
        "DuplicateMerged",
    ];
    let missing: Vec<&&str> = all.iter().filter(|t| !types.contains(*t)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    assert_eq!(
        closures.into_iter().collect::<Vec<_>>(),
        ["confirmed", "merged", "rejected", "withdrawn"]
    );
    assert_eq!(levels.len(), 4);
    assert!(reopened_closed);
}
