//! A small test district, the actors that act in it, and a simulator that reaches any
//! case state by applying commands through `decide` + `evolve` (never by building a
//! `Case` by hand).

use time::OffsetDateTime;
use time::macros::datetime;
use whistle_domain::district::OrgNodeSpec;
use whistle_domain::{
    Actor, Case, CaseId, CaseState, Category, CategoryCode, Channel, Command, Ctx, Department,
    DepartmentId, District, DistrictSpec, DomainError, Event, Evidence, Grid, GridId, Handler,
    Level, MergeCase, OrgId, OrgKind, PolicyClass, PrincipalId, Role, Urgency, decide,
    decide_merge, evolve, fold,
};

// ---------------------------------------------------------------------------------------
// Categories

pub const NOISE: &str = "neighbour_noise"; // NEIGHBOUR routine
pub const CLUTTER: &str = "corridor_clutter"; // UNIT routine
pub const LIFT: &str = "lift_fault"; // BRANCH routine
pub const FEE: &str = "property_dispute"; // BRANCH complex
pub const FIRE: &str = "fire_hazard"; // ESCALATED urgent
pub const GAS: &str = "gas_leak"; // ESCALATED emergency
pub const BUILD: &str = "illegal_construction"; // ESCALATED complex
pub const MARKET: &str = "market_problem"; // ESCALATED routine

/// (code, starts_at, policy) of every category of the test catalogue.
pub const CATEGORIES: [(&str, Level, PolicyClass); 8] = [
    (NOISE, Level::Neighbour, PolicyClass::Routine),
    (CLUTTER, Level::Unit, PolicyClass::Routine),
    (LIFT, Level::Branch, PolicyClass::Routine),
    (FEE, Level::Branch, PolicyClass::Complex),
    (FIRE, Level::Escalated, PolicyClass::Urgent),
    (GAS, Level::Escalated, PolicyClass::Emergency),
    (BUILD, Level::Escalated, PolicyClass::Complex),
    (MARKET, Level::Escalated, PolicyClass::Routine),
];

/// The category of the test catalogue that starts at `level` with a routine or complex
/// (not pressing) policy, so a report lands there without the fast channel.
pub fn category_at(level: Level) -> &'static str {
    match level {
        Level::Neighbour => NOISE,
        Level::Unit => CLUTTER,
        Level::Branch => LIFT,
        Level::Escalated => BUILD,
    }
}

// ---------------------------------------------------------------------------------------
// Organisation

pub const DISTRICT: &str = "d1";
pub const STREET: &str = "s1";
pub const COMMUNITY: &str = "c1";
/// 2 buildings × 2 units: `cp1-b1`, `cp1-b1-u1`, `cp1-b1-u2`, `cp1-b2`, …
pub const CP1: &str = "cp1";
/// 1 building × 1 unit: `cp2-b1`, `cp2-b1-u1`.
pub const CP2: &str = "cp2";

pub const GRID_COMMUNITY: &str = "g-c1";
pub const GRID_CP1: &str = "g-cp1";
pub const GRID_CP1_B1: &str = "g-cp1-b1";

pub const DEPT_FIRE: &str = "fire";
pub const DEPT_GAS: &str = "gas";
pub const DEPT_CHENGGUAN: &str = "chengguan";

pub fn node(id: &str, kind: OrgKind, parent: Option<&str>) -> OrgNodeSpec {
    OrgNodeSpec {
        id: OrgId::new(id),
        kind,
        name: format!("{} {id}", kind.as_str()),
        parent: parent.map(OrgId::new),
        buildings: None,
        units_per_building: None,
    }
}

pub fn compound(id: &str, parent: &str, buildings: u16, units: u8) -> OrgNodeSpec {
    OrgNodeSpec {
        buildings: Some(buildings),
        units_per_building: Some(units),
        ..node(id, OrgKind::Compound, Some(parent))
    }
}

pub fn grid(id: &str, covers: &[&str]) -> Grid {
    Grid {
        id: GridId::new(id),
        name: format!("grid {id}"),
        covers: covers.iter().map(|c| OrgId::new(*c)).collect(),
    }
}

pub fn category(code: &str, starts_at: Level, policy: PolicyClass) -> Category {
    Category {
        code: CategoryCode::new(code),
        name_zh: format!("类别 {code}"),
        name_en: code.replace('_', " "),
        starts_at,
        policy,
        usual_owner: String::new(),
        owners: Vec::new(),
    }
}

pub fn department(id: &str, categories: &[&str], paired: &[&str]) -> Department {
    Department {
        id: DepartmentId::new(id),
        name: format!("department {id}"),
        categories: categories.iter().map(|c| CategoryCode::new(*c)).collect(),
        paired_compounds: paired.iter().map(|c| OrgId::new(*c)).collect(),
    }
}

/// The test district as a spec, for tests that break it on purpose.
pub fn spec() -> DistrictSpec {
    DistrictSpec {
        id: DISTRICT.into(),
        name: "测试区".into(),
        org: vec![
            node(DISTRICT, OrgKind::District, None),
            node(STREET, OrgKind::Street, Some(DISTRICT)),
            node(COMMUNITY, OrgKind::Community, Some(STREET)),
            compound(CP1, COMMUNITY, 2, 2),
            compound(CP2, COMMUNITY, 1, 1),
        ],
        grids: vec![
            // Listed most specific first: the first grid listed for a node wins.
            grid(GRID_CP1_B1, &["cp1-b1"]),
            grid(GRID_CP1, &[CP1]),
            grid(GRID_COMMUNITY, &[COMMUNITY]),
        ],
        categories: CATEGORIES
            .iter()
            .map(|(c, l, p)| category(c, *l, *p))
            .collect(),
        departments: vec![
            // Fire hazards are owned by the fire brigade (paired with cp2) and by urban
            // management (paired with cp1): the pairing decides who comes first.
            department(DEPT_FIRE, &[FIRE], &[CP2]),
            department(DEPT_GAS, &[GAS], &[CP1]),
            department(DEPT_CHENGGUAN, &[BUILD, FIRE, MARKET], &[CP1]),
        ],
        roster: vec![],
        takeover_principal: None,
    }
}

pub fn district() -> District {
    District::build(spec()).expect("the test district is valid")
}

// ---------------------------------------------------------------------------------------
// Actors

pub fn reporter() -> Actor {
    Actor::new("res-1", Role::Resident)
}
pub fn other_resident() -> Actor {
    Actor::new("res-2", Role::Resident)
}
pub fn grid_worker() -> Actor {
    Actor::new("gw-1", Role::GridWorker)
}
pub fn h1() -> Actor {
    Actor::new("h-1", Role::Handler)
}
pub fn h2() -> Actor {
    Actor::new("h-2", Role::Handler)
}
/// A district officer who takes over what no department accepts (兜底).
pub fn officer() -> Actor {
    Actor::new("officer-1", Role::Handler)
}
pub fn fire() -> Actor {
    Actor::department("fire-1", DEPT_FIRE)
}
/// Another account of the same department as [`fire`].
pub fn fire2() -> Actor {
    Actor::department("fire-2", DEPT_FIRE)
}
pub fn gas() -> Actor {
    Actor::department("gas-1", DEPT_GAS)
}
pub fn chengguan() -> Actor {
    Actor::department("cg-1", DEPT_CHENGGUAN)
}
/// A department account that names no department.
pub fn stray_dept() -> Actor {
    Actor::new("dept-x", Role::Department)
}
pub fn supervisor() -> Actor {
    Actor::new("sup-1", Role::Supervisor)
}
pub fn admin() -> Actor {
    Actor::new("adm-1", Role::Admin)
}
pub fn system() -> Actor {
    Actor::system()
}

/// An actor of the given role with no special standing on any case.
pub fn actor_of(role: Role) -> Actor {
    match role {
        Role::Department => fire(),
        Role::System => system(),
        r => Actor::new(format!("any-{}", r.as_str().replace('_', "-")), r),
    }
}

pub fn hp(p: &str) -> Handler {
    Handler::Principal(PrincipalId::new(p))
}
pub fn hd(d: &str) -> Handler {
    Handler::Department(DepartmentId::new(d))
}

// ---------------------------------------------------------------------------------------
// Commands

pub fn case_id(n: u128) -> CaseId {
    CaseId(uuid::Uuid::from_u128(
        0x0195_0000_0000_7000_8000_0000_0000_0000 + n,
    ))
}

pub const CASE: u128 = 1;
pub const OTHER_CASE: u128 = 2;

pub fn report_cmd(category: &str, location: &str, urgency: Option<Urgency>) -> Command {
    report_with(
        CASE,
        category,
        location,
        urgency,
        "楼上每天夜里十二点后还在装修",
    )
}

pub fn report_with(
    id: u128,
    category: &str,
    location: &str,
    urgency: Option<Urgency>,
    description: &str,
) -> Command {
    Command::Report {
        case_id: case_id(id),
        category: CategoryCode::new(category),
        location: OrgId::new(location),
        description: description.into(),
        channel: Channel::ResidentApp,
        urgency,
        contact: None,
    }
}

pub fn ev(n: usize) -> Evidence {
    Evidence {
        url: format!("https://evidence.example/photo-{n}.jpg"),
        sha256: format!("{n:0>64x}"),
    }
}

pub fn assign(h: Handler) -> Command {
    Command::Assign { handler: h }
}
pub fn note(text: &str) -> Command {
    Command::AddNote {
        text: text.into(),
        evidence: vec![],
    }
}
pub fn resolve() -> Command {
    Command::Resolve {
        summary: "fixed".into(),
        evidence: vec![ev(1)],
    }
}
pub fn confirm(satisfaction: u8) -> Command {
    Command::Confirm {
        satisfaction,
        comment: "thanks".into(),
    }
}
pub fn reopen() -> Command {
    Command::Reopen {
        reason: "it leaks again".into(),
    }
}
pub fn escalate() -> Command {
    Command::Escalate {
        reason: "beyond us".into(),
    }
}
pub fn delivery_failed(department: &str) -> Command {
    Command::RecordDeliveryFailure {
        department: whistle_domain::DepartmentId::new(department),
        event_id: "01950000-0000-7000-8000-0000000000aa".into(),
        deliveries: 5,
    }
}

pub fn breach() -> Command {
    Command::FireDeadline {
        clock: "respond@neighbour#1".into(),
        kind: whistle_domain::DeadlineKind::Breach,
    }
}
pub fn transfer(to: Handler) -> Command {
    Command::Transfer {
        to,
        reason: "better placed".into(),
    }
}
pub fn decline() -> Command {
    Command::Decline {
        reason: "not ours".into(),
    }
}
pub fn pause() -> Command {
    Command::Pause {
        reason: "awaiting resident access".into(),
    }
}
pub fn withdraw() -> Command {
    Command::Withdraw {
        reason: "sorted it out ourselves".into(),
    }
}
pub fn reject() -> Command {
    Command::Reject {
        reason: "not a real problem".into(),
    }
}
pub fn merge_cmd(into: u128) -> MergeCase {
    MergeCase {
        into: case_id(into),
        reason: "same leak".into(),
    }
}

/// One instance of every command, with arguments valid in the test district, and an actor
/// whose role may issue it.
pub fn every_command() -> Vec<(Command, Actor)> {
    vec![
        (report_cmd(NOISE, "cp1-b1-u1", None), reporter()),
        (assign(hp("h-1")), supervisor()),
        (Command::Acknowledge, h1()),
        (Command::ArriveOnSite, h1()),
        (note("a note"), reporter()),
        (resolve(), h1()),
        (confirm(5), reporter()),
        (reopen(), reporter()),
        (escalate(), supervisor()),
        (breach(), system()),
        (delivery_failed(DEPT_FIRE), system()),
        (transfer(hp("h-2")), supervisor()),
        (decline(), fire()),
        (pause(), supervisor()),
        (Command::Resume, supervisor()),
        (withdraw(), reporter()),
        (reject(), supervisor()),
        (erase(), admin()),
    ]
}

pub fn erase() -> Command {
    Command::EraseContact {
        reason: "the resident asked".into(),
    }
}

/// A case reported with the resident's contact details (held apart, by reference).
pub fn with_contact() -> Sim {
    let mut s = Sim::new();
    let cmd = match report_cmd(category_at(Level::Neighbour), "cp1-b1-u1", None) {
        Command::Report {
            case_id,
            category,
            location,
            description,
            channel,
            urgency,
            ..
        } => Command::Report {
            case_id,
            category,
            location,
            description,
            channel,
            urgency,
            contact: Some(whistle_domain::ContactId(uuid::Uuid::from_u128(0xc0))),
        },
        other => other,
    };
    s.ok(&reporter(), cmd);
    s
}

// ---------------------------------------------------------------------------------------
// Time

pub const T0: OffsetDateTime = datetime!(2025-03-01 09:00:00 +08:00);

// ---------------------------------------------------------------------------------------
// The simulator

/// One case stream under test. Every command goes through `decide`; only the events it
/// returns are folded in with `evolve`. The clock moves one minute per applied command.
pub struct Sim {
    pub district: District,
    pub state: CaseState,
    pub events: Vec<Event>,
    pub now: OffsetDateTime,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Sim {
        Sim {
            district: district(),
            state: None,
            events: Vec::new(),
            now: T0,
        }
    }

    /// A case of `category` reported by [`reporter`] in `cp1-b1-u1`.
    pub fn reported(category: &str) -> Sim {
        let mut s = Sim::new();
        s.ok(&reporter(), report_cmd(category, "cp1-b1-u1", None));
        s
    }

    /// A case reported at `level` without the fast channel.
    pub fn at(level: Level) -> Sim {
        Sim::reported(category_at(level))
    }

    pub fn case(&self) -> &Case {
        self.state.as_ref().expect("a case was reported")
    }

    pub fn decide(&self, actor: &Actor, cmd: &Command) -> Result<Vec<Event>, DomainError> {
        decide(
            &self.state,
            cmd,
            &Ctx {
                district: &self.district,
                actor,
                now: self.now,
            },
        )
    }

    /// Decide and, when accepted, fold the events in. The clock advances either way.
    pub fn apply(&mut self, actor: &Actor, cmd: &Command) -> Result<Vec<Event>, DomainError> {
        let r = self.decide(actor, cmd);
        if let Ok(events) = &r {
            self.absorb(events);
        }
        self.tick(60);
        r
    }

    pub fn absorb(&mut self, events: &[Event]) {
        for e in events {
            self.state = evolve(self.state.take(), e);
            self.events.push(e.clone());
        }
    }

    pub fn tick(&mut self, seconds: i64) {
        self.now += time::Duration::seconds(seconds);
    }

    /// Apply a command that must be accepted (setup steps).
    #[track_caller]
    pub fn ok(&mut self, actor: &Actor, cmd: Command) -> &mut Sim {
        if let Err(e) = self.apply(actor, &cmd) {
            panic!(
                "setup step {} by {} refused: {e}",
                cmd.name(),
                actor.principal
            );
        }
        self
    }

    /// Merge this case into a freshly reported other case, closing it as merged.
    pub fn merge_away(&mut self) -> &mut Sim {
        let mut target = Sim::new();
        target.ok(
            &reporter(),
            report_with(OTHER_CASE, NOISE, "cp1-b1-u2", None, "duplicate report"),
        );
        let (dup, _) = decide_merge(
            &self.state,
            &target.state,
            &merge_cmd(OTHER_CASE),
            &Ctx {
                district: &self.district,
                actor: &supervisor(),
                now: self.now,
            },
        )
        .expect("merge accepted");
        self.absorb(&dup);
        self.tick(60);
        self
    }

    /// The state refolded from the recorded events.
    pub fn replayed(&self) -> CaseState {
        fold(&self.events)
    }
}

// ---------------------------------------------------------------------------------------
// Named setups used by the transition tables. Each starts from nothing.

pub fn nothing() -> Sim {
    Sim::new()
}
pub fn unassigned() -> Sim {
    Sim::at(Level::Neighbour)
}
pub fn assigned_h1() -> Sim {
    let mut s = unassigned();
    s.ok(&supervisor(), assign(hp("h-1")));
    s
}
pub fn acked_h1() -> Sim {
    let mut s = assigned_h1();
    s.ok(&h1(), Command::Acknowledge);
    s
}
pub fn on_site_h1() -> Sim {
    let mut s = acked_h1();
    s.ok(&h1(), Command::ArriveOnSite);
    s
}
pub fn resolved_h1() -> Sim {
    let mut s = on_site_h1();
    s.ok(&h1(), resolve());
    s
}
pub fn paused_acked_h1() -> Sim {
    let mut s = acked_h1();
    s.ok(&h1(), pause());
    s
}
pub fn paused_unassigned() -> Sim {
    let mut s = unassigned();
    s.ok(&supervisor(), pause());
    s
}
pub fn closed_confirmed() -> Sim {
    let mut s = resolved_h1();
    s.ok(&reporter(), confirm(4));
    s
}
pub fn closed_withdrawn() -> Sim {
    let mut s = acked_h1();
    s.ok(&reporter(), withdraw());
    s
}
pub fn closed_rejected() -> Sim {
    let mut s = unassigned();
    s.ok(&supervisor(), reject());
    s
}
pub fn closed_merged() -> Sim {
    let mut s = unassigned();
    s.merge_away();
    s
}

pub fn esc_unassigned() -> Sim {
    Sim::at(Level::Escalated)
}
pub fn esc_assigned_fire() -> Sim {
    let mut s = esc_unassigned();
    s.ok(&supervisor(), assign(hd(DEPT_FIRE)));
    s
}
pub fn esc_acked_fire() -> Sim {
    let mut s = esc_assigned_fire();
    s.ok(&fire(), Command::Acknowledge);
    s
}
pub fn esc_on_site_fire() -> Sim {
    let mut s = esc_acked_fire();
    s.ok(&fire2(), Command::ArriveOnSite);
    s
}
pub fn esc_resolved_fire() -> Sim {
    let mut s = esc_on_site_fire();
    s.ok(&fire(), resolve());
    s
}
pub fn esc_declined_fire() -> Sim {
    let mut s = esc_assigned_fire();
    s.ok(&fire(), decline());
    s
}
/// Every department declined; the district assigns its own officer (兜底).
pub fn esc_assigned_officer() -> Sim {
    let mut s = esc_declined_fire();
    s.ok(&supervisor(), assign(hp("officer-1")));
    s
}
pub fn esc_acked_officer() -> Sim {
    let mut s = esc_assigned_officer();
    s.ok(&officer(), Command::Acknowledge);
    s
}
