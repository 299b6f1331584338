//! Fuzz target `command_validation`: arbitrary bytes become a sequence of domain commands
//! on two case streams, issued by the demo district's principals (and a few odd actors)
//! at advancing times, and run through `whistle_domain::process` / `process_merge` — the
//! exact pure function the API's pipeline calls — against the bundled demo district and
//! the 83012 SLA preset, loaded the way `whistle-server`'s config does.
//!
//! Besides "no panic" (which includes arithmetic overflow: cargo fuzz builds with debug
//! assertions), every step checks what the pipeline relies on:
//! * a refusal is an error and nothing else: the role table (`Command::allowed_roles`)
//!   refuses before any state is looked at, a closed case refuses all but reopen (and
//!   erasure of the reporter's details), an
//!   unreported case is `NotFound`;
//! * `process` is deterministic (the same inputs give the same answer);
//! * an accepted command yields events stamped with the actor (or the system, for the
//!   routing and clock reactions) at the command's time; only a stale deadline fire
//!   decides to nothing;
//! * folding the events raises the version by exactly their number, no rung is skipped,
//!   departments hold cases only at `ESCALATED`, a clock never warns after its deadline;
//! * `sla::deadline_ops` (what the store's deadline rows are made of) accepts them;
//!
//! And at the end of the sequence: each stream replays (`fold`) to the incrementally
//! evolved state, also after a round trip through the stored JSON form.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use time::{Duration, OffsetDateTime};
use whistle_domain::{
    Actor, CaseId, CaseState, CategoryCode, Channel, Command, ContactId, Ctx, DeadlineKind,
    DepartmentId, District, DistrictSpec, DomainError, Event, EventBody, Evidence, GridId, Handler,
    Level, MergeCase, OrgId, PrincipalId, Role, Scope, SlaBook, SlaSpec, Status, Urgency, evolve,
    fold, process, process_merge,
};

/// The district and principals `whistle serve` starts with when given no files.
const DISTRICT_TOML: &str = include_str!("../../crates/whistle-server/demo/district.toml");
const PRINCIPALS_TOML: &str = include_str!("../../crates/whistle-server/demo/principals.toml");

/// Upper bound on steps per input: long enough to climb every rung, reopen and merge,
/// short enough to keep executions per second high.
const MAX_STEPS: usize = 96;

#[derive(serde::Deserialize)]
struct DemoPrincipals {
    principals: Vec<DemoPrincipal>,
}

#[derive(serde::Deserialize)]
struct DemoPrincipal {
    id: String,
    role: String,
    department: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    grids: Vec<String>,
}

/// Everything fixed across inputs, built once (parsing TOML per input would dominate).
struct World {
    district: District,
    book: SlaBook,
    actors: Vec<Actor>,
    categories: Vec<CategoryCode>,
    locations: Vec<OrgId>,
    handlers: Vec<Handler>,
    departments: Vec<DepartmentId>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    // As crates/whistle-server/src/config.rs: parse_district and sla_preset("83012").
    let spec: DistrictSpec = toml::from_str(DISTRICT_TOML).expect("demo district parses");
    let district = District::build(spec).expect("demo district is valid");
    let sla: SlaSpec = toml::from_str(whistle_domain::sla::PRESET_83012).expect("preset parses");
    let book = SlaBook::build(sla).expect("preset is valid");

    let demo: DemoPrincipals = toml::from_str(PRINCIPALS_TOML).expect("demo principals parse");
    let mut actors: Vec<Actor> = demo
        .principals
        .into_iter()
        .map(|p| Actor {
            principal: PrincipalId::new(p.id),
            role: Role::parse(&p.role).expect("demo role"),
            department: p.department.map(DepartmentId::new),
            // The demo's scopes, as config.rs resolves them (street supervisors, grid
            // workers of one street): out-of-scope commands must be refused, never panic.
            scope: match (p.scope, p.grids.is_empty()) {
                (Some(org), _) => Scope::Org(OrgId::new(org)),
                (None, false) => Scope::Grids(p.grids.into_iter().map(GridId::new).collect()),
                (None, true) => Scope::District,
            },
        })
        .collect();
    // Actors the demo file lacks but the API can produce: the system (scheduler, bus), a
    // department account of a department the district does not have, one without a
    // department, and a handler no roster line names.
    actors.push(Actor::system());
    actors.push(Actor::department("dept-ghost", "ghost"));
    actors.push(Actor::new("dept-nobody", Role::Department));
    actors.push(Actor::new("handler-elsewhere", Role::Handler));

    let categories = district.catalogue.categories.keys().cloned().collect();
    let locations = district.org.nodes().map(|n| n.id.clone()).collect();
    let departments: Vec<DepartmentId> = district.departments.keys().cloned().collect();
    let mut handlers: Vec<Handler> = actors
        .iter()
        .filter(|a| a.role == Role::Handler)
        .map(|a| Handler::Principal(a.principal.clone()))
        .collect();
    handlers.extend(departments.iter().cloned().map(Handler::Department));
    handlers.push(Handler::Department(DepartmentId::new("ghost")));
    handlers.push(Handler::Principal(PrincipalId::new("bad id!")));
    World {
        district,
        book,
        actors,
        categories,
        locations,
        handlers,
        departments,
    }
});

/// Free text: mostly acceptable, sometimes blank, control-laden, at or over the bounds,
/// or whatever the input holds.
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=3 => "a reason".to_string(),
        4 => String::new(),
        5 => " \t\r\n ".to_string(),
        6 => "bell\u{7}nul\u{0}".to_string(),
        7 => {
            // Around the limits (1000 for reasons, 4000 for texts), in multi-byte chars.
            let n = *u.choose(&[999usize, 1000, 1001, 3999, 4000, 4001])?;
            "漏".repeat(n)
        }
        _ => u.arbitrary::<String>()?,
    })
}

fn evidence(u: &mut Unstructured<'_>) -> Result<Vec<Evidence>> {
    let n = *u.choose(&[0usize, 0, 1, 2, 10, 11])?;
    (0..n)
        .map(|i| {
            Ok(match u.int_in_range(0u8..=3)? {
                0 | 1 => Evidence {
                    url: format!("https://files.example/{i}.jpg"),
                    sha256: format!("{i:064x}"),
                },
                2 => Evidence {
                    url: "ftp://x.example/a".into(),
                    sha256: "Z".repeat(64),
                },
                _ => Evidence {
                    url: u.arbitrary()?,
                    sha256: u.arbitrary()?,
                },
            })
        })
        .collect()
}

fn code_or_junk<T: Clone>(
    u: &mut Unstructured<'_>,
    known: &[T],
    make: fn(String) -> T,
) -> Result<T> {
    if u.ratio(7u8, 8)? {
        Ok(u.choose(known)?.clone())
    } else {
        Ok(make(u.arbitrary()?))
    }
}

fn report(u: &mut Unstructured<'_>, w: &World, id: CaseId) -> Result<Command> {
    Ok(Command::Report {
        case_id: id,
        category: code_or_junk(u, &w.categories, CategoryCode)?,
        location: code_or_junk(u, &w.locations, OrgId)?,
        description: if u.ratio(3u8, 4)? {
            "water through the ceiling".into()
        } else {
            text(u)?
        },
        channel: *u.choose(&Channel::ALL)?,
        contact: if u.arbitrary()? {
            Some(ContactId(uuid::Uuid::from_u128(u.arbitrary()?)))
        } else {
            None
        },
        urgency: *u.choose(&[
            None,
            Some(Urgency::Normal),
            Some(Urgency::Urgent),
            Some(Urgency::Emergency),
        ])?,
    })
}

/// A running clock of the case to fire (what the scheduler does), or a made-up key.
fn clock_key(u: &mut Unstructured<'_>, state: &CaseState) -> Result<String> {
    let running: Vec<&str> = state
        .iter()
        .flat_map(|c| c.running_clocks())
        .map(|c| c.key.as_str())
        .collect();
    if !running.is_empty() && u.ratio(7u8, 8)? {
        Ok(u.choose(&running)?.to_string())
    } else {
        text(u)
    }
}

enum Op {
    Cmd(Command),
    /// Merge this case into the other one.
    Merge(String),
}

fn command(u: &mut Unstructured<'_>, w: &World, id: CaseId, state: &CaseState) -> Result<Op> {
    let cmd = match u.int_in_range(0u8..=20)? {
        0 => report(u, w, id)?,
        1 => Command::Assign {
            handler: u.choose(&w.handlers)?.clone(),
        },
        2 | 3 => Command::Acknowledge,
        4 => Command::ArriveOnSite,
        5 => Command::AddNote {
            text: text(u)?,
            evidence: evidence(u)?,
        },
        6 => Command::Resolve {
            summary: text(u)?,
            evidence: evidence(u)?,
        },
        7 => Command::Confirm {
            satisfaction: if u.ratio(4u8, 5)? {
                u.int_in_range(1..=5)?
            } else {
                u.arbitrary()?
            },
            comment: text(u)?,
        },
        8 => Command::Reopen { reason: text(u)? },
        9 => Command::Escalate { reason: text(u)? },
        10 => Command::Transfer {
            to: u.choose(&w.handlers)?.clone(),
            reason: text(u)?,
        },
        11 => Command::Decline { reason: text(u)? },
        12 => Command::Pause { reason: text(u)? },
        13 => Command::Resume,
        14 => Command::Withdraw { reason: text(u)? },
        15 => Command::Reject { reason: text(u)? },
        16 => Command::RecordDeliveryFailure {
            department: code_or_junk(u, &w.departments, DepartmentId)?,
            event_id: text(u)?,
            deliveries: u.arbitrary()?,
        },
        17 | 18 => Command::FireDeadline {
            clock: clock_key(u, state)?,
            kind: if u.arbitrary()? {
                DeadlineKind::Warn
            } else {
                DeadlineKind::Breach
            },
        },
        19 => Command::EraseContact { reason: text(u)? },
        _ => return Ok(Op::Merge(text(u)?)),
    };
    Ok(Op::Cmd(cmd))
}

/// Mostly an actor whose role may issue the command, so sequences get somewhere.
fn actor<'w>(u: &mut Unstructured<'_>, w: &'w World, op: &Op) -> Result<&'w Actor> {
    let roles = match op {
        Op::Cmd(c) => c.allowed_roles(),
        Op::Merge(_) => MergeCase::ALLOWED_ROLES,
    };
    let fitting: Vec<&Actor> = w
        .actors
        .iter()
        .filter(|a| roles.contains(&a.role))
        .collect();
    if !fitting.is_empty() && u.ratio(4u8, 5)? {
        Ok(u.choose(&fitting)?)
    } else {
        u.choose(&w.actors)
    }
}

/// How far the clock moves before a step. A deadline fire may jump to the clock's due
/// time, as the scheduler would; otherwise seconds to a month.
fn advance(
    u: &mut Unstructured<'_>,
    now: OffsetDateTime,
    op: &Op,
    state: &CaseState,
) -> Result<OffsetDateTime> {
    if let (Op::Cmd(Command::FireDeadline { clock, kind }), Some(case)) = (op, state)
        && let Some(c) = case.clock(clock)
        && u.ratio(3u8, 4)?
    {
        let due = match kind {
            DeadlineKind::Warn => c.warn_at,
            DeadlineKind::Breach => c.deadline,
        };
        return Ok(now.max(due));
    }
    let secs = match u.int_in_range(0u8..=3)? {
        0 => 0,
        1 => u.int_in_range(0i64..=600)?,
        2 => u.int_in_range(0i64..=100_000)?,
        _ => u.int_in_range(0i64..=31 * 86_400)?,
    };
    Ok(now + Duration::seconds(secs))
}

struct Stream {
    id: CaseId,
    state: CaseState,
    events: Vec<Event>,
}

/// Folds `events` into `stream`, checking the per-event invariants.
fn apply(stream: &mut Stream, events: &[Event]) {
    let before = stream.state.as_ref().map_or(0, |c| c.version);
    for e in events {
        let prev = stream.state.clone();
        stream.state = evolve(stream.state.take(), e);
        let after = stream.state.as_ref().expect("an event leaves a case");
        match (&prev, &e.body) {
            (None, EventBody::CaseReported { level, .. }) => assert_eq!(after.level, *level),
            (None, body) => panic!("stream starts with {}", body.event_type()),
            (Some(b), EventBody::CaseEscalated { from, to, .. }) => {
                assert_eq!(*from, b.level, "escalated from another rung");
                assert_eq!(Some(*to), from.next(), "a rung was skipped");
                assert_eq!(after.level, *to);
            }
            (Some(b), body) => {
                assert_eq!(
                    after.level,
                    b.level,
                    "{} moved the level",
                    body.event_type()
                )
            }
        }
        if let Some(Handler::Department(d)) = after.handler() {
            assert_eq!(
                after.level,
                Level::Escalated,
                "department {d} holds a lower rung"
            );
        }
        if let Status::Open(stage) = &after.status {
            assert_eq!(after.handler(), stage.handler());
        }
        for c in &after.clocks {
            assert!(
                c.warn_at <= c.deadline,
                "clock {} warns after its deadline",
                c.key
            );
        }
    }
    stream.events.extend_from_slice(events);
    let after = stream.state.as_ref().map_or(0, |c| c.version);
    assert_eq!(
        after,
        before + events.len() as u64,
        "version != events folded"
    );
    assert_eq!(after as usize, stream.events.len());
}

/// Checks an accepted command's events and the refusals the pipeline relies on.
fn check(op: &Op, actor: &Actor, now: OffsetDateTime, before: &CaseState, events: &[Event]) {
    for e in events {
        assert!(
            e.actor == *actor || e.actor == Actor::system(),
            "event by {} for a command of {}",
            e.actor.principal,
            actor.principal
        );
        assert_eq!(e.occurred_at, now);
    }
    match op {
        Op::Cmd(Command::FireDeadline { .. }) => {}
        _ => {
            assert!(!events.is_empty(), "an accepted command yields an event");
            assert_eq!(&events[0].actor, actor, "the decided event is the actor's");
        }
    }
    if let Op::Cmd(cmd) = op {
        assert!(
            cmd.allowed_roles().contains(&actor.role),
            "role table bypassed"
        );
        if before.as_ref().is_some_and(|c| c.is_closed()) {
            // Erasing a resident's details is the one other command a closed case takes.
            assert!(
                matches!(cmd, Command::Reopen { .. } | Command::EraseContact { .. }),
                "a closed case accepted {}",
                cmd.name()
            );
        }
    }
    // The deadline rows the store writes with these events.
    let _ = whistle_domain::sla::deadline_ops(events);
}

fn refused(op: &Op, actor: &Actor, before: &CaseState, err: &DomainError) {
    if let DomainError::Invalid { field, .. } = err {
        assert!(!field.is_empty(), "a refusal names its field");
    }
    if let Op::Cmd(cmd) = op {
        if !cmd.allowed_roles().contains(&actor.role) {
            assert!(matches!(err, DomainError::Forbidden(_)), "{err:?}");
        } else if before.is_none() && !matches!(cmd, Command::Report { .. }) {
            assert_eq!(err, &DomainError::NotFound);
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let w = &*WORLD;
    let mut streams = [
        0x0198_0000_0000_7000_8000_0000_0000_0001u128,
        0x0198_0000_0000_7000_8000_0000_0000_0002,
    ]
    .map(|n| Stream {
        id: CaseId(uuid::Uuid::from_u128(n)),
        state: None,
        events: Vec::new(),
    });
    // 2026-01-01T00:00Z plus up to ~5 years: the calendars' business hours and the
    // preset's targets are exercised at arbitrary times of day and year.
    let mut now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid")
        + Duration::seconds(u.int_in_range(0i64..=5 * 365 * 86_400)?);
    // Most inputs start with a valid report, so the rest of the sequence has a case.
    for s in &mut streams {
        if u.ratio(3u8, 4)? {
            let reporter = &w.actors[0];
            let cmd = Command::Report {
                case_id: s.id,
                category: u.choose(&w.categories)?.clone(),
                location: OrgId::new(format!("hongqi-jiayuan-b{}-u1", u.int_in_range(1..=4)?)),
                description: "water through the ceiling".into(),
                channel: Channel::GridWorker,
                urgency: None,
                contact: None,
            };
            let ctx = Ctx {
                district: &w.district,
                actor: reporter,
                now,
            };
            if let Ok(evs) = process(&s.state, &cmd, &ctx, &w.book) {
                apply(s, &evs);
            }
        }
    }

    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let i = usize::from(!u.ratio(3u8, 4)?);
        let op = command(u, w, streams[i].id, &streams[i].state)?;
        let actor = actor(u, w, &op)?;
        now = advance(u, now, &op, &streams[i].state)?;
        let ctx = Ctx {
            district: &w.district,
            actor,
            now,
        };
        match &op {
            Op::Cmd(cmd) => {
                let s = &mut streams[i];
                let result = process(&s.state, cmd, &ctx, &w.book);
                assert_eq!(
                    result,
                    process(&s.state, cmd, &ctx, &w.book),
                    "process is not deterministic"
                );
                match result {
                    Ok(evs) => {
                        check(&op, actor, now, &s.state, &evs);
                        apply(s, &evs);
                    }
                    Err(e) => refused(&op, actor, &s.state, &e),
                }
            }
            Op::Merge(reason) => {
                let cmd = MergeCase {
                    into: streams[1 - i].id,
                    reason: reason.clone(),
                };
                let result = process_merge(
                    &streams[i].state,
                    &streams[1 - i].state,
                    &cmd,
                    &ctx,
                    &w.book,
                );
                match result {
                    Ok((dup, target)) => {
                        assert!(MergeCase::ALLOWED_ROLES.contains(&actor.role));
                        assert!(!streams[i].state.as_ref().is_some_and(|c| c.is_closed()));
                        check(&op, actor, now, &streams[i].state, &dup);
                        check(&op, actor, now, &streams[1 - i].state, &target);
                        apply(&mut streams[i], &dup);
                        apply(&mut streams[1 - i], &target);
                        assert!(
                            streams[i].state.as_ref().is_some_and(|c| c.is_closed()),
                            "a merged case stays open"
                        );
                    }
                    Err(e) => {
                        if !MergeCase::ALLOWED_ROLES.contains(&actor.role) {
                            assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
                        }
                    }
                }
            }
        }
    }

    // Replay: the log alone rebuilds every state, also from its stored JSON form.
    for s in &streams {
        assert_eq!(
            fold(&s.events),
            s.state,
            "replay differs from the live fold"
        );
        let json = serde_json::to_string(&s.events).expect("events serialise");
        let back: Vec<Event> = serde_json::from_str(&json).expect("stored events decode");
        assert_eq!(back, s.events, "events change through their stored form");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Running out of input mid-sequence is normal: the prefix was still checked.
    let _ = run(&mut Unstructured::new(data));
});
