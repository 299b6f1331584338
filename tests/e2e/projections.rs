//! Read models against the log: a history of 100,000 events generated through the real
//! command pipeline (reports, sign-fors, on-site, resolutions, confirmations, reopenings,
//! withdrawals, escalations and deadline fires in virtual time) while the SLA projector
//! runs live; then every read model rebuilt from zero must equal the live tables row for
//! row.

use crate::both_backends;
use crate::support::{AppOptions, Backend, assert_read_models_equal, read_models, spawn_app_with};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::Duration;
use time::macros::datetime;
use whistle_api::scheduler::{self, SchedulerConfig};
use whistle_api::{AppState, ManualClock, pipeline};
use whistle_domain::{Actor, CaseId, Channel, Command, Handler, Level, Role, Stage, Status};
use whistle_projections::{Projection, SLA_PROJECTION};
use whistle_store::EventStore;

both_backends!(a_rebuild_from_zero_equals_the_live_read_models);

const EVENTS: u64 = 100_000;
const CATEGORIES: &[&str] = &[
    "neighbour_noise",
    "leak_from_above",
    "corridor_clutter",
    "door_or_light_broken",
    "lift_fault",
    "sanitation",
    "ebike_charging",
    "utility_outage",
];

/// xorshift64*: a seeded generator, so a failing history can be generated again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn actor_for(h: &Handler) -> Actor {
    match h {
        Handler::Principal(p) => Actor::new(p.as_str(), Role::Handler),
        Handler::Department(d) => Actor {
            department: Some(d.clone()),
            ..Actor::new(format!("dept-{}", d.0), Role::Department)
        },
    }
}

fn rung_handler(level: Level) -> Actor {
    match level {
        Level::Neighbour => Actor::new("h-wang", Role::Handler),
        Level::Unit => Actor::new("h-li", Role::Handler),
        Level::Branch => Actor::new("h-chen", Role::Handler),
        Level::Escalated => Actor {
            department: Some(whistle_domain::DepartmentId::new("housing")),
            ..Actor::new("dept-housing", Role::Department)
        },
    }
}

/// One step of a case's life, chosen by `roll` (0..100) from where the case is.
/// `None`: the case is done (closed) and leaves the working set.
fn next_step(case: &whistle_domain::Case, roll: u64) -> Option<Option<(Actor, Command)>> {
    let reporter = || Actor::new("gw-lin", Role::GridWorker);
    let step = match &case.status {
        Status::Closed(_) => return None,
        Status::Open(_) if roll < 2 => Some((
            reporter(),
            Command::Withdraw {
                reason: "solved by the neighbours".into(),
            },
        )),
        Status::Open(Stage::Unassigned) => Some((rung_handler(case.level), Command::Acknowledge)),
        // Left alone: the respond clock breaches and the case climbs by itself.
        Status::Open(Stage::Assigned(_)) if roll < 25 => None,
        Status::Open(Stage::Assigned(Handler::Principal(p)))
            if roll < 32 && case.level != Level::Escalated =>
        {
            Some((
                Actor::new(p.as_str(), Role::Handler),
                Command::Escalate {
                    reason: "beyond this rung".into(),
                },
            ))
        }
        Status::Open(Stage::Assigned(h)) => Some((actor_for(h), Command::Acknowledge)),
        Status::Open(Stage::Acknowledged(h)) if roll < 80 => {
            Some((actor_for(h), Command::ArriveOnSite))
        }
        Status::Open(Stage::Acknowledged(_)) => None,
        Status::Open(Stage::OnSite(h)) => Some((
            actor_for(h),
            Command::Resolve {
                summary: "fixed".into(),
                evidence: Vec::new(),
            },
        )),
        Status::Resolved { .. } if roll < 8 => Some((
            reporter(),
            Command::Reopen {
                reason: "it is back".into(),
            },
        )),
        Status::Resolved { .. } => Some((
            reporter(),
            Command::Confirm {
                satisfaction: 1 + (roll % 5) as u8,
                comment: String::new(),
            },
        )),
    };
    Some(step)
}

async fn generate(state: &AppState, clock: &ManualClock, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut open: Vec<CaseId> = Vec::new();
    let mut reported = 0usize;
    let cfg = SchedulerConfig::default();
    while state.store.count_events().await.expect("count") < EVENTS {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let id = CaseId(uuid::Uuid::now_v7());
            open.push(id);
            reported += 1;
            let n = rng.next();
            let cmd = Command::Report {
                case_id: id,
                category: whistle_domain::CategoryCode::new(
                    CATEGORIES[(n % CATEGORIES.len() as u64) as usize],
                ),
                location: whistle_domain::OrgId::new(format!(
                    "hongqi-jiayuan-b{}-u{}",
                    1 + (n >> 8) % 4,
                    1 + (n >> 16) % 2
                )),
                description: format!("generated case {reported}"),
                channel: Channel::GridWorker,
                urgency: None,
                contact: None,
            };
            let state = state.clone();
            tasks.spawn(async move {
                let actor = Actor::new("gw-lin", Role::GridWorker);
                let _ = pipeline::execute(&state, &actor, id, None, None, cmd).await;
            });
        }
        tasks.join_all().await;
        let mut tasks = tokio::task::JoinSet::new();
        for id in open.clone() {
            let roll = rng.below(100);
            let state = state.clone();
            tasks.spawn(async move {
                let Ok(case) = pipeline::read_case(&state, id).await else {
                    return Some(id);
                };
                match next_step(&case, roll) {
                    None => None,
                    Some(None) => Some(id),
                    Some(Some((actor, cmd))) => {
                        // Refusals (a stale choice after a concurrent deadline fire) are
                        // part of real traffic; they write nothing.
                        let _ = pipeline::execute(&state, &actor, id, None, None, cmd).await;
                        Some(id)
                    }
                }
            });
        }
        open = tasks.join_all().await.into_iter().flatten().collect();
        clock.advance(Duration::minutes(3));
        while scheduler::run_once(state, &cfg)
            .await
            .expect("scheduler")
            .claimed
            > 0
        {}
    }
    reported
}

async fn a_rebuild_from_zero_equals_the_live_read_models(b: Backend) {
    let clock = ManualClock::new(datetime!(2026-11-20 08:00:00 +08:00));
    let app = spawn_app_with(
        &b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: false,
            tls: None,
        },
    )
    .await;
    let reported = generate(&app.state, &clock, 0x5eed_1234_abcd_0001).await;
    let head = app.store.head_position().await.expect("head");
    // The live projector catches up by itself.
    for _ in 0..1200 {
        let cp = app.store.load_checkpoint(SLA_PROJECTION).await.expect("cp");
        if cp.is_some_and(|c| c.position >= head) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cp = app.store.load_checkpoint(SLA_PROJECTION).await.expect("cp");
    assert_eq!(
        cp.map(|c| c.position),
        Some(head),
        "the live SLA projector caught up"
    );
    let live = read_models(&app.store).await;
    app.stop().await;

    assert!(head >= EVENTS as i64, "generated {head} events");
    assert_eq!(live.0.len(), reported, "one case view per reported case");
    let statuses: BTreeMap<&str, usize> = live.0.iter().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v.status.as_str()).or_default() += 1;
        m
    });
    assert!(
        statuses.len() == 3,
        "the history has open, resolved and closed cases: {statuses:?}"
    );
    assert!(
        live.0.iter().any(|v| v.level == "ESCALATED"),
        "some cases climbed to departments"
    );
    assert!(
        live.1.clocks.iter().any(|c| c.outcome == "breached"),
        "some clocks breached"
    );

    let store = Arc::new(b.store().await);
    for p in Projection::ALL {
        whistle_projections::rebuild(&store, p, &mut |_, _| {})
            .await
            .expect("rebuild");
    }
    assert_read_models_equal(&live, &read_models(&store).await);
    println!(
        "{head} events, {reported} cases, {} clocks, {} holds: rebuild equals live",
        live.1.clocks.len(),
        live.1.holds.len()
    );
}
