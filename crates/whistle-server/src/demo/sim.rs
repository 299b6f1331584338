//! The demo simulator: grid workers, residents, handlers, departments and the district
//! duty office acting on a running whistle over real gRPC, as in [`super::world`].
//!
//! It is a discrete-event simulation in the server's time: an agenda of what someone will
//! do at a simulated instant (report a case, sign for one, arrive, resolve, escalate,
//! confirm, or look again at a case nobody acts on). Before acting, the actor re-reads the
//! case (as the supervisor): if the world moved on — typically the scheduler escalated it
//! because the respond clock breached — the plan is dropped and made anew from what the
//! case now is. Nothing here decides what the server would do; the simulator only reacts
//! to what it reads back.
//!
//! [`Pace`] is how the simulator waits for an instant: [`LivePace`] sleeps on the
//! accelerated clock the server runs on (`whistle demo`); tests step a manual clock and
//! wait for the scheduler to catch up, so a run is a bounded number of actions, not a
//! length of wall time.

use super::world::{self, Cast, Catalogue, LOCAL, Member, Rates, Rng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::net::SocketAddr;
use time::{Duration, OffsetDateTime};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use whistle_api::Clock;
use whistle_api::clock::AcceleratedClock;
use whistle_proto::v1 as pb;
use whistle_proto::v1::case_handling_service_client::CaseHandlingServiceClient;
use whistle_proto::v1::case_query_service_client::CaseQueryServiceClient;
use whistle_proto::v1::department_service_client::DepartmentServiceClient;
use whistle_proto::v1::intake_service_client::IntakeServiceClient;

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Simulated seconds per real second (for [`LivePace`]; `whistle demo --speed`).
    pub speed: f64,
    /// The same seed gives the same reports and the same behaviour (`--seed`).
    pub seed: u64,
    /// Reports in a simulated day, spread along [`world::HOURLY_CURVE`].
    pub cases_per_day: f64,
    pub rates: Rates,
    /// Stop after this many commands (reports, handling, confirmations); `None`: run
    /// until stopped.
    pub max_actions: Option<u64>,
    /// Make no new reports after this much simulated time (cases already reported play
    /// out); `None`: report for ever.
    pub report_for: Option<Duration>,
    /// Part of every idempotency key, so two runs against one database never collide.
    pub run_id: String,
    /// Print a line per simulated hour to stdout (the `whistle demo` terminal).
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            speed: 60.0,
            seed: 83012,
            cases_per_day: 300.0,
            rates: Rates::default(),
            max_actions: None,
            report_for: None,
            run_id: "demo".into(),
            progress: false,
        }
    }
}

/// Waiting for a simulated instant.
pub trait Pace: Send {
    /// The simulated now (the server's clock).
    fn now(&self) -> OffsetDateTime;
    /// Return once the simulated time has reached `at` and the server had the chance to
    /// fire what fell due by then.
    fn until(&mut self, at: OffsetDateTime) -> impl Future<Output = ()> + Send;
}

/// Real sleeping on the accelerated clock the server runs on.
#[derive(Debug, Clone, Copy)]
pub struct LivePace(pub AcceleratedClock);

impl Pace for LivePace {
    fn now(&self) -> OffsetDateTime {
        self.0.now()
    }

    async fn until(&mut self, at: OffsetDateTime) {
        let wait = self.0.real_duration(at - self.0.now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a run did, as the simulator saw it (tests read the cases back themselves).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Commands issued: reports, handling and confirmations.
    pub actions: u64,
    pub reported: u64,
    pub by_category: BTreeMap<String, u64>,
    pub acknowledged: u64,
    pub on_site: u64,
    /// Handlers who escalated a case as beyond their rung.
    pub escalated_by_handlers: u64,
    /// Rungs cases climbed that no actor asked for: respond clocks that breached.
    pub climbed: u64,
    /// Cases the district duty office took over (兜底).
    pub taken_over: u64,
    pub resolved: u64,
    pub confirmed: u64,
    /// Actors who came to sign only after the case had climbed away from them.
    pub too_late: u64,
    /// Commands the server refused because the case changed in between (a race with
    /// the scheduler on the live clock).
    pub refused: u64,
    /// Any other failure (logged).
    pub failed: u64,
    /// Every case reported, in order.
    pub case_ids: Vec<String>,
}

/// A case's situation as far as planning goes: when it changes, plans made for the old
/// one no longer apply. (Not the version: clock warnings bump it without changing who
/// should act.)
#[derive(Debug, Clone, PartialEq)]
struct Situation {
    status: String,
    stage: String,
    level: i32,
    handler: Option<pb::Handler>,
}

impl Situation {
    fn of(v: &pb::CaseView) -> Situation {
        Situation {
            status: v.status.clone(),
            stage: v.stage.clone(),
            level: v.level,
            handler: v.handler.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    Acknowledge,
    ArriveOnSite,
    Resolve,
    Escalate,
    Confirm { satisfaction: u32 },
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::ArriveOnSite => "arrive_on_site",
            Action::Resolve => "resolve",
            Action::Escalate => "escalate",
            Action::Confirm { .. } => "confirm",
        }
    }
}

#[derive(Debug)]
enum What {
    Report,
    Act {
        case: usize,
        generation: u64,
        expect: Situation,
        actor: String,
        action: Action,
        late: bool,
    },
    /// Look at a case nobody acts on again (its respond clock is due to breach).
    Watch {
        case: usize,
        generation: u64,
        expect: Situation,
        give_up_at: OffsetDateTime,
    },
}

#[derive(Debug)]
struct Item {
    at: OffsetDateTime,
    seq: u64,
    what: What,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One reported case, as the simulator tracks it.
#[derive(Debug)]
struct Tracked {
    id: String,
    reporter: String,
    /// Its own random stream: what happens to it does not depend on other cases.
    rng: Rng,
    /// Plans carry the generation they were made in; a newer plan voids older items.
    generation: u64,
    /// Commands issued on it (for idempotency keys).
    steps: u32,
    /// The level last seen, to tell escalations by breach from our own.
    level: i32,
    taken_over: bool,
}

/// Re-read a case that nobody acts on this often (simulated), until it changes.
const WATCH_EVERY: Duration = Duration::seconds(20);
/// Stop watching a case this long after its respond deadline if nothing happens.
const WATCH_FOR: Duration = Duration::minutes(15);

pub struct Simulator {
    cfg: Config,
    cast: Cast,
    catalogue: Catalogue,
    channel: Channel,
    auth: BTreeMap<String, MetadataValue<Ascii>>,
    arrivals: Rng,
    cases: Vec<Tracked>,
    agenda: BinaryHeap<Reverse<Item>>,
    seq: u64,
    stats: Summary,
}

impl Simulator {
    /// Connect to the server at `addr` with the cast's tokens.
    pub async fn connect(
        cfg: Config,
        district: &whistle_domain::District,
        members: Vec<Member>,
        addr: SocketAddr,
    ) -> anyhow::Result<Simulator> {
        use anyhow::Context;
        let cast = Cast::new(district, members)?;
        let catalogue = Catalogue::new(district)?;
        let mut auth = BTreeMap::new();
        for m in cast.members.values() {
            let v: MetadataValue<Ascii> = format!("Bearer {}", m.token)
                .parse()
                .with_context(|| format!("token of {} is not a valid header value", m.id))?;
            auth.insert(m.id.clone(), v);
        }
        let channel = Channel::from_shared(format!("http://{addr}"))
            .context("gRPC address")?
            .connect()
            .await
            .with_context(|| format!("connecting to whistle at {addr}"))?;
        Ok(Simulator {
            arrivals: Rng::derive(cfg.seed, 0),
            cfg,
            cast,
            catalogue,
            channel,
            auth,
            cases: Vec::new(),
            agenda: BinaryHeap::new(),
            seq: 0,
            stats: Summary::default(),
        })
    }

    /// Run until `stop` completes, the agenda is empty or `max_actions` commands were
    /// issued; returns what happened.
    pub async fn run<P: Pace>(mut self, pace: &mut P, stop: impl Future<Output = ()>) -> Summary {
        tokio::pin!(stop);
        let start = pace.now();
        let first = start
            + self
                .arrivals
                .exponential(world::mean_gap(self.cfg.cases_per_day, start));
        self.schedule(first, What::Report);
        let mut next_hour = next_full_hour(start);
        while let Some(Reverse(item)) = self.agenda.pop() {
            if self
                .cfg
                .max_actions
                .is_some_and(|max| self.stats.actions >= max)
            {
                break;
            }
            if matches!(item.what, What::Report)
                && self.cfg.report_for.is_some_and(|d| item.at > start + d)
            {
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = pace.until(item.at) => {}
            }
            while item.at >= next_hour {
                self.progress(next_hour);
                next_hour += Duration::hours(1);
            }
            let now = pace.now().max(item.at);
            self.handle(item.what, now).await;
        }
        self.stats
    }

    fn schedule(&mut self, at: OffsetDateTime, what: What) {
        self.seq += 1;
        self.agenda.push(Reverse(Item {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn progress(&self, at: OffsetDateTime) {
        let s = &self.stats;
        let local = at.to_offset(LOCAL);
        tracing::debug!(
            at = %local,
            reported = s.reported,
            acknowledged = s.acknowledged,
            climbed = s.climbed,
            taken_over = s.taken_over,
            resolved = s.resolved,
            confirmed = s.confirmed,
            "demo: simulated hour"
        );
        if self.cfg.progress {
            println!(
                "[{:04}-{:02}-{:02} {:02}:00] reported {:>4} · signed for {:>4} · climbed by breach {:>3} · taken over {:>3} · resolved {:>4} · confirmed {:>4}",
                local.year(),
                u8::from(local.month()),
                local.day(),
                local.hour(),
                s.reported,
                s.acknowledged,
                s.climbed,
                s.taken_over,
                s.resolved,
                s.confirmed,
            );
        }
    }

    async fn handle(&mut self, what: What, now: OffsetDateTime) {
        match what {
            What::Report => self.report(now).await,
            What::Act {
                case,
                generation,
                expect,
                actor,
                action,
                late,
            } => {
                if self.cases[case].generation != generation {
                    if late {
                        self.stats.too_late += 1;
                        tracing::debug!(case = %self.cases[case].id, %actor, "came to sign after the case had climbed");
                    }
                    return;
                }
                let Some(view) = self.view(case).await else {
                    self.retry_later(case, expect, now);
                    return;
                };
                if Situation::of(&view) != expect {
                    self.plan(case, &view, now);
                    return;
                }
                self.act(case, &actor, &action).await;
                match self.view(case).await {
                    Some(view) => self.plan(case, &view, now),
                    None => self.retry_later(case, expect, now),
                }
            }
            What::Watch {
                case,
                generation,
                expect,
                give_up_at,
            } => {
                if self.cases[case].generation != generation {
                    return;
                }
                let Some(view) = self.view(case).await else {
                    self.retry_later(case, expect, now);
                    return;
                };
                if Situation::of(&view) != expect {
                    self.plan(case, &view, now);
                } else if now < give_up_at {
                    // The scheduler has not fired yet (it polls): look again shortly.
                    self.schedule(
                        now + WATCH_EVERY,
                        What::Watch {
                            case,
                            generation,
                            expect,
                            give_up_at,
                        },
                    );
                } else {
                    tracing::info!(case = %self.cases[case].id, "demo: nobody acts on this case any more");
                }
            }
        }
    }

    /// Reading a case failed (logged): look again in a simulated minute.
    fn retry_later(&mut self, case: usize, expect: Situation, now: OffsetDateTime) {
        let generation = self.cases[case].generation;
        self.schedule(
            now + Duration::minutes(1),
            What::Watch {
                case,
                generation,
                expect,
                give_up_at: now + WATCH_FOR,
            },
        );
    }

    fn req<T>(&self, as_: &str, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(a) = self.auth.get(as_) {
            r.metadata_mut().insert("authorization", a.clone());
        }
        r
    }

    async fn report(&mut self, now: OffsetDateTime) {
        fn demo_contact(n: usize) -> pb::ResidentContact {
            const SURNAMES: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];
            pb::ResidentContact {
                name: format!("{}先生", SURNAMES[n % SURNAMES.len()]),
                // 139 0000 xxxx: a reserved-looking demo range, not a real subscriber.
                phone: format!("1390000{:04}", n % 10_000),
                address: format!("{}号楼{}单元{}室", 1 + n % 6, 1 + n % 2, 101 + n % 12),
            }
        }
        let gap = self
            .arrivals
            .exponential(world::mean_gap(self.cfg.cases_per_day, now));
        self.schedule(now + gap, What::Report);
        let Some(r) = self
            .catalogue
            .report(&mut self.arrivals, &self.cast, &self.cfg.rates, now)
        else {
            return;
        };
        let n = self.cases.len();
        let msg = pb::ReportCaseRequest {
            category: r.category.clone(),
            location: r.location.clone(),
            description: r.description.clone(),
            channel: 0, // derived from the reporter's role: grid worker or resident app
            urgency: 0,
            idempotency_key: format!("{}-{n}-report", self.cfg.run_id),
            // Grid workers take down the resident's contact (stored apart from the log,
            // masked on supervisors' screens); residents reporting themselves are known.
            contact: r.reporter.starts_with("gw-").then(|| demo_contact(n)),
        };
        self.stats.actions += 1;
        let req = self.req(&r.reporter, msg);
        let res = IntakeServiceClient::new(self.channel.clone())
            .report_case(req)
            .await;
        let (id, level) = match res.map(|r| r.into_inner()) {
            Ok(pb::ReportCaseResponse {
                ack: Some(ack),
                level,
                ..
            }) => (ack.case_id, level),
            Ok(_) => {
                self.stats.failed += 1;
                tracing::warn!("demo: a report was answered without an acknowledgement");
                return;
            }
            Err(status) => {
                self.stats.failed += 1;
                tracing::warn!(category = %r.category, location = %r.location, code = ?status.code(), message = status.message(), "demo: report failed");
                return;
            }
        };
        tracing::debug!(case = %id, category = %r.category, location = %r.location, reporter = %r.reporter, "demo: reported");
        self.stats.reported += 1;
        *self.stats.by_category.entry(r.category).or_default() += 1;
        self.stats.case_ids.push(id.clone());
        self.cases.push(Tracked {
            id,
            reporter: r.reporter,
            rng: Rng::derive(self.cfg.seed, n as u64 + 1),
            generation: 0,
            steps: 0,
            level,
            taken_over: false,
        });
        match self.view(n).await {
            Some(view) => self.plan(n, &view, now),
            None => {
                let expect = Situation {
                    status: String::new(),
                    stage: String::new(),
                    level,
                    handler: None,
                };
                self.retry_later(n, expect, now)
            }
        }
    }

    /// The case as the observer (a supervisor) sees it.
    async fn view(&self, case: usize) -> Option<pb::CaseView> {
        let id = self.cases[case].id.clone();
        let req = self.req(
            &self.cast.observer,
            pb::GetCaseRequest {
                case_id: id.clone(),
            },
        );
        match CaseQueryServiceClient::new(self.channel.clone())
            .get_case(req)
            .await
        {
            Ok(v) => Some(v.into_inner()),
            Err(status) => {
                tracing::warn!(case = %id, code = ?status.code(), message = status.message(), "demo: cannot read the case");
                None
            }
        }
    }

    /// Decide who does what next on this case, from what it now is.
    fn plan(&mut self, case: usize, view: &pb::CaseView, now: OffsetDateTime) {
        let takeover = self.cast.takeover.clone();
        let rates = self.cfg.rates.clone();
        let t = &mut self.cases[case];
        t.generation += 1;
        if view.level > t.level {
            // Nobody here asked for it (our own escalations update `level` on success):
            // the respond clock breached and the scheduler escalated it.
            self.stats.climbed += u64::try_from(view.level - t.level).unwrap_or(0);
            t.level = view.level;
        }
        let held_by_takeover = match (
            &takeover,
            view.handler.as_ref().and_then(|h| h.kind.as_ref()),
        ) {
            (Some(p), Some(pb::handler::Kind::PrincipalId(h))) => p == h,
            _ => false,
        };
        if held_by_takeover && !t.taken_over && view.level == i32::from(pb::Level::Escalated) {
            t.taken_over = true;
            self.stats.taken_over += 1;
        }
        let generation = t.generation;
        let expect = Situation::of(view);
        let level = pb::Level::try_from(view.level).unwrap_or(pb::Level::Unspecified);
        let class =
            pb::PolicyClass::try_from(view.policy_class).unwrap_or(pb::PolicyClass::Routine);
        let act = |at: OffsetDateTime, actor: &str, action: Action, late: bool| {
            (
                at,
                What::Act {
                    case,
                    generation,
                    expect: expect.clone(),
                    actor: actor.to_string(),
                    action,
                    late,
                },
            )
        };
        let next: Vec<(OffsetDateTime, What)> = match (view.status.as_str(), view.stage.as_str()) {
            ("closed", _) => vec![],
            ("resolved", _) => {
                let reporter = t.reporter.clone();
                if self.cast.member(&reporter).is_some() && t.rng.chance(rates.confirm) {
                    let satisfaction = world::satisfaction(&mut t.rng);
                    let at = now + t.rng.minutes(10.0, 240.0);
                    vec![act(at, &reporter, Action::Confirm { satisfaction }, false)]
                } else {
                    vec![]
                }
            }
            ("open", "unassigned" | "assigned") if !view.paused => {
                let responder = match &view.handler {
                    Some(h) => self.cast.acts_for(h),
                    None => self.cast.claimer(level, &view.location),
                };
                let deadline = respond_deadline(view).unwrap_or(now + Duration::minutes(8));
                let watch = (
                    deadline + Duration::seconds(1),
                    What::Watch {
                        case,
                        generation,
                        expect: expect.clone(),
                        give_up_at: deadline + WATCH_FOR,
                    },
                );
                match responder {
                    None => vec![watch],
                    Some(m) => {
                        let never_absent = takeover.as_deref() == Some(m.id.as_str());
                        let absent = match (m.role.as_str(), level) {
                            _ if never_absent => 0.0,
                            ("department", _) => rates.absent[3],
                            (_, pb::Level::Neighbour) => rates.absent[0],
                            (_, pb::Level::Unit) => rates.absent[1],
                            _ => rates.absent[2],
                        };
                        let late = if never_absent { 0.0 } else { rates.late };
                        if t.rng.chance(absent) {
                            vec![watch]
                        } else if t.rng.chance(late) {
                            let at = deadline + t.rng.minutes(1.0, 12.0);
                            vec![watch, act(at, &m.id, Action::Acknowledge, true)]
                        } else {
                            // Sign within the 8 minutes, usually in the first few.
                            let until_deadline = (deadline - now).as_seconds_f64() / 60.0;
                            let at = now + t.rng.minutes(0.5, (until_deadline - 0.5).max(0.6));
                            vec![act(at, &m.id, Action::Acknowledge, false)]
                        }
                    }
                }
            }
            ("open", "acknowledged") if !view.paused => {
                match view.handler.as_ref().and_then(|h| self.cast.acts_for(h)) {
                    None => vec![],
                    Some(m) => {
                        let beyond = match level {
                            pb::Level::Neighbour => rates.beyond[0],
                            pb::Level::Unit => rates.beyond[1],
                            pb::Level::Branch => rates.beyond[2],
                            _ => 0.0,
                        };
                        let handler = m.role == "handler";
                        if handler && t.rng.chance(beyond) {
                            let at = now + t.rng.minutes(3.0, 30.0);
                            vec![act(at, &m.id, Action::Escalate, false)]
                        } else if t.rng.chance(rates.remote_fix) {
                            let slow = t.rng.chance(rates.slow_resolve);
                            let at = now + world::resolve_time(&mut t.rng, class, slow);
                            vec![act(at, &m.id, Action::Resolve, false)]
                        } else {
                            let at = if t.rng.chance(rates.late_on_site) {
                                now + t.rng.minutes(31.0, 90.0)
                            } else {
                                now + t.rng.minutes(3.0, 28.0)
                            };
                            vec![act(at, &m.id, Action::ArriveOnSite, false)]
                        }
                    }
                }
            }
            ("open", "on_site") if !view.paused => {
                match view.handler.as_ref().and_then(|h| self.cast.acts_for(h)) {
                    None => vec![],
                    Some(m) => {
                        let slow = t.rng.chance(rates.slow_resolve);
                        let at = now + world::resolve_time(&mut t.rng, class, slow);
                        vec![act(at, &m.id, Action::Resolve, false)]
                    }
                }
            }
            _ => vec![],
        };
        for (at, what) in next {
            self.schedule(at, what);
        }
    }

    /// Issue one command as `actor`; the outcome only feeds the summary and the logs
    /// (the caller re-reads the case either way).
    async fn act(&mut self, case: usize, actor: &str, action: &Action) {
        let Some(member) = self.cast.member(actor).cloned() else {
            return;
        };
        let (id, key, evidence_seed) = {
            let t = &mut self.cases[case];
            t.steps += 1;
            (
                t.id.clone(),
                format!("{}-{case}-{}", self.cfg.run_id, t.steps),
                t.rng.next_u64(),
            )
        };
        let plain = pb::CaseCommandRequest {
            case_id: id.clone(),
            expected_version: None,
            idempotency_key: key.clone(),
        };
        let department = member.role == "department";
        let mut handling = CaseHandlingServiceClient::new(self.channel.clone());
        let mut departments = DepartmentServiceClient::new(self.channel.clone());
        self.stats.actions += 1;
        let res: Result<(), Status> = match action {
            Action::Acknowledge if department => departments
                .acknowledge_case(self.req(actor, plain))
                .await
                .map(drop),
            Action::Acknowledge => handling
                .acknowledge_case(self.req(actor, plain))
                .await
                .map(drop),
            Action::ArriveOnSite if department => departments
                .arrive_on_site(self.req(actor, plain))
                .await
                .map(drop),
            Action::ArriveOnSite => handling
                .arrive_on_site(self.req(actor, plain))
                .await
                .map(drop),
            Action::Resolve => {
                let msg = pb::ResolveCaseRequest {
                    case_id: id.clone(),
                    expected_version: None,
                    idempotency_key: key.clone(),
                    summary: "已处理，现场恢复正常 — dealt with, back to normal".into(),
                    evidence: vec![pb::Evidence {
                        url: format!("https://evidence.example/{id}/after.jpg"),
                        sha256: format!(
                            "{:016x}{:016x}{:016x}{:016x}",
                            evidence_seed,
                            evidence_seed.rotate_left(16),
                            evidence_seed.rotate_left(32),
                            evidence_seed.rotate_left(48)
                        ),
                    }],
                };
                if department {
                    departments
                        .resolve_case(self.req(actor, msg))
                        .await
                        .map(drop)
                } else {
                    handling.resolve_case(self.req(actor, msg)).await.map(drop)
                }
            }
            Action::Escalate => handling
                .escalate_case(self.req(
                    actor,
                    pb::ReasonRequest {
                        case_id: id.clone(),
                        expected_version: None,
                        idempotency_key: key.clone(),
                        reason: "超出本级能力，需要上级协调 — beyond this rung".into(),
                    },
                ))
                .await
                .map(drop),
            Action::Confirm { satisfaction } => IntakeServiceClient::new(self.channel.clone())
                .confirm_resolution(self.req(
                    actor,
                    pb::ConfirmResolutionRequest {
                        case_id: id.clone(),
                        expected_version: None,
                        idempotency_key: key.clone(),
                        satisfaction: *satisfaction,
                        comment: match satisfaction {
                            1 | 2 => "还是没解决好 — not really fixed".into(),
                            3 => String::new(),
                            _ => "满意，谢谢 — satisfied, thank you".into(),
                        },
                    },
                ))
                .await
                .map(drop),
        };
        match res {
            Ok(()) => {
                tracing::debug!(case = %id, %actor, action = action.name(), "demo: done");
                let s = &mut self.stats;
                match action {
                    Action::Acknowledge => s.acknowledged += 1,
                    Action::ArriveOnSite => s.on_site += 1,
                    Action::Resolve => s.resolved += 1,
                    Action::Confirm { .. } => s.confirmed += 1,
                    Action::Escalate => {
                        s.escalated_by_handlers += 1;
                        self.cases[case].level += 1;
                    }
                }
            }
            // The case changed between our read and the command (the scheduler escalated
            // it, a clock fired): the next read replans.
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition
                        | Code::PermissionDenied
                        | Code::Aborted
                        | Code::NotFound
                ) =>
            {
                self.stats.refused += 1;
                tracing::info!(case = %id, %actor, action = action.name(), code = ?status.code(), message = status.message(), "demo: refused");
            }
            Err(status) => {
                self.stats.failed += 1;
                tracing::warn!(case = %id, %actor, action = action.name(), code = ?status.code(), message = status.message(), "demo: command failed");
            }
        }
    }
}

/// The deadline of the respond clock running at the case's current rung.
fn respond_deadline(view: &pb::CaseView) -> Option<OffsetDateTime> {
    view.milestones
        .iter()
        .filter(|m| m.milestone == "respond" && m.level == view.level && m.ended_at.is_none())
        .filter_map(|m| m.deadline.as_ref().and_then(from_timestamp))
        .max()
}

fn from_timestamp(t: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let base = OffsetDateTime::from_unix_timestamp(t.seconds).ok()?;
    Some(base + Duration::nanoseconds(i64::from(t.nanos)))
}

/// The first full local hour after `t`.
fn next_full_hour(t: OffsetDateTime) -> OffsetDateTime {
    let local = t.to_offset(LOCAL);
    let floor = local
        .replace_minute(0)
        .and_then(|l| l.replace_second(0))
        .and_then(|l| l.replace_nanosecond(0))
        .unwrap_or(local);
    floor + Duration::hours(1)
}
