//! Supervisors' dashboards: `DashboardService` (lists, SLA summaries, at-risk cases, a
//! live stream of SLA changes) and the [`Overview`] the web page polls as JSON. Both read
//! the read models of whistle-projections through the store: case views (written with
//! the events) and the SLA clocks model (projected asynchronously; every summary says the
//! position it includes).
//!
//! Who may look: supervisors and admins. A supervisor sees the cases of their scope (a
//! street or community: its compounds; grids: those grids), in every list, summary,
//! at-risk list and stream; admins see the district.

use std::pin::Pin;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use whistle_bus::{Follower, Router};
use whistle_domain::{
    Actor, CategoryCode, DepartmentId, District, GridId, Level, OrgId, OrgKind, Role, Scope,
};
use whistle_projections::summary::{self, Dimension, Group};
use whistle_projections::{SLA_PROJECTION, case_view_row};
use whistle_proto::v1 as pb;
use whistle_proto::v1::dashboard_service_server::DashboardService;
use whistle_store::{CaseFilter, CaseViewRow, EventStore, ListCursor, SlaFacts};

use crate::convert;
use crate::error::ApiError;
use crate::server::AppState;

/// Roles that may read dashboards.
pub const DASHBOARD_ROLES: &[Role] = &[Role::Supervisor, Role::Admin];

/// Longest summary window.
pub const MAX_WINDOW: Duration = Duration::days(400);

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const WATCH_BUFFER: usize = 256;
const WATCH_BATCH: u32 = 500;
/// Entries of the overview's at-risk and breached lists.
const OVERVIEW_LIST: usize = 50;

/// Refuses roles that may not read dashboards (logged and counted).
pub fn authorize(actor: &Actor, rpc: &'static str) -> Result<(), ApiError> {
    if DASHBOARD_ROLES.contains(&actor.role) {
        return Ok(());
    }
    tracing::warn!(principal = %actor.principal, role = %actor.role, rpc, "permission denied by role");
    crate::metrics::denied("role");
    Err(ApiError::PermissionDenied(format!(
        "role {} may not {rpc}",
        actor.role
    )))
}

fn time_of(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(t) = t else { return Ok(None) };
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(Some)
        .map_err(|_| ApiError::bad(field, "timestamp out of range"))
}

/// A window `[from, to)`: both ends set, `from < to`, at most [`MAX_WINDOW`].
pub fn window(
    w: Option<&pb::TimeWindow>,
    field: &'static str,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let w = w.ok_or_else(|| ApiError::bad(field, "required"))?;
    let from =
        time_of(field, w.from.as_ref())?.ok_or_else(|| ApiError::bad(field, "from is required"))?;
    let to =
        time_of(field, w.to.as_ref())?.ok_or_else(|| ApiError::bad(field, "to is required"))?;
    check_window(from, to, field)?;
    Ok((from, to))
}

/// See [`window`].
pub fn check_window(
    from: OffsetDateTime,
    to: OffsetDateTime,
    field: &'static str,
) -> Result<(), ApiError> {
    if to <= from {
        return Err(ApiError::bad(field, "to must be after from"));
    }
    if to - from > MAX_WINDOW {
        return Err(ApiError::bad(field, "at most 400 days"));
    }
    Ok(())
}

fn level_name(field: &'static str, v: i32) -> Result<&'static str, ApiError> {
    let l =
        pb::Level::try_from(v).map_err(|_| ApiError::bad(field, format!("unknown level {v}")))?;
    Ok(match l {
        pb::Level::Neighbour => Level::Neighbour.as_str(),
        pb::Level::Unit => Level::Unit.as_str(),
        pb::Level::Branch => Level::Branch.as_str(),
        pb::Level::Escalated => Level::Escalated.as_str(),
        pb::Level::Unspecified => return Err(ApiError::bad(field, "level must be set")),
    })
}

fn pb_level(name: &str) -> i32 {
    Level::parse(name).map_or(pb::Level::Unspecified, convert::level) as i32
}

/// Compounds of the district under an org node of `kind` (`field` names the request field).
fn compounds_under(
    district: &District,
    ids: &[String],
    kind: OrgKind,
    field: &'static str,
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for id in ids {
        let oid = OrgId(id.clone());
        match district.org.get(&oid) {
            Some(node) if node.kind == kind => {}
            _ => {
                return Err(ApiError::bad(
                    field,
                    format!("{id} is not a {} of the district", kind.as_str()),
                ));
            }
        }
        out.extend(
            district
                .org
                .nodes()
                .filter(|n| n.kind == OrgKind::Compound && district.org.is_within(&n.id, &oid))
                .map(|n| n.id.0.clone()),
        );
    }
    Ok(out)
}

fn intersect(a: Option<Vec<String>>, b: Vec<String>) -> Option<Vec<String>> {
    Some(match a {
        None => b,
        Some(a) => a.into_iter().filter(|x| b.contains(x)).collect(),
    })
}

/// Parses a list filter. `None`: the filter can match nothing (disjoint org filters).
pub fn filter(
    f: Option<&pb::CaseFilter>,
    district: &District,
    now: OffsetDateTime,
) -> Result<Option<CaseFilter>, ApiError> {
    let Some(f) = f else {
        return Ok(Some(CaseFilter::default()));
    };
    for s in &f.statuses {
        if !matches!(s.as_str(), "open" | "resolved" | "closed") {
            return Err(ApiError::bad(
                "filter.statuses",
                format!("unknown status {s:?}"),
            ));
        }
    }
    let levels = f
        .levels
        .iter()
        .map(|v| level_name("filter.levels", *v).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    for c in &f.categories {
        if district.catalogue.get(&CategoryCode(c.clone())).is_none() {
            return Err(ApiError::bad(
                "filter.categories",
                format!("unknown category {c}"),
            ));
        }
    }
    for d in &f.departments {
        if !district.departments.contains_key(&DepartmentId(d.clone())) {
            return Err(ApiError::bad(
                "filter.departments",
                format!("unknown department {d}"),
            ));
        }
    }
    for g in &f.grids {
        if district.org.grid(&GridId(g.clone())).is_none() {
            return Err(ApiError::bad("filter.grids", format!("unknown grid {g}")));
        }
    }
    let mut compounds: Option<Vec<String>> = None;
    if !f.compounds.is_empty() {
        compounds = intersect(
            compounds,
            compounds_under(
                district,
                &f.compounds,
                OrgKind::Compound,
                "filter.compounds",
            )?,
        );
    }
    if !f.communities.is_empty() {
        compounds = intersect(
            compounds,
            compounds_under(
                district,
                &f.communities,
                OrgKind::Community,
                "filter.communities",
            )?,
        );
    }
    if !f.streets.is_empty() {
        compounds = intersect(
            compounds,
            compounds_under(district, &f.streets, OrgKind::Street, "filter.streets")?,
        );
    }
    if compounds.as_ref().is_some_and(Vec::is_empty) {
        return Ok(None);
    }
    let (from, to) = match f.window.as_ref() {
        None => (None, None),
        Some(w) => {
            let from = time_of("filter.window", w.from.as_ref())?;
            let to = time_of("filter.window", w.to.as_ref())?;
            if let (Some(a), Some(b)) = (from, to)
                && b <= a
            {
                return Err(ApiError::bad("filter.window", "to must be after from"));
            }
            (from, to)
        }
    };
    Ok(Some(CaseFilter {
        statuses: f.statuses.clone(),
        levels,
        categories: f.categories.clone(),
        compounds: compounds.unwrap_or_default(),
        departments: f.departments.clone(),
        grids: f.grids.clone(),
        reporter: None,
        at_risk_at: f.at_risk.then_some(now),
        breached: f.breached.then_some(true),
        reported_from: from,
        reported_to: to,
    }))
}

/// What part of the district a dashboard caller sees: `None` fields mean no restriction.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    pub compounds: Option<Vec<String>>,
    pub grids: Option<Vec<String>>,
}

/// The rows `actor` may see on dashboards.
pub fn visible_rows(actor: &Actor, district: &District) -> Visible {
    if actor.role == Role::Admin {
        return Visible::default();
    }
    match &actor.scope {
        Scope::District => Visible::default(),
        Scope::Grids(gs) => Visible {
            compounds: None,
            grids: Some(gs.iter().map(|g| g.0.clone()).collect()),
        },
        Scope::Org(node) => {
            let mut compounds: Vec<String> = district
                .org
                .nodes()
                .filter(|n| n.kind == OrgKind::Compound && district.org.is_within(&n.id, node))
                .map(|n| n.id.0.clone())
                .collect();
            // A scope below a compound (a building) sees its compound's rows here: the
            // dashboards group by compound at the finest.
            if let Some(c) = district.org.ancestor_of_kind(node, OrgKind::Compound) {
                compounds.push(c.id.0.clone());
            }
            compounds.sort();
            compounds.dedup();
            Visible {
                compounds: Some(compounds),
                grids: None,
            }
        }
    }
}

impl Visible {
    /// Narrows a list filter to what is visible; `false`: nothing can match.
    pub fn restrict(&self, f: &mut CaseFilter) -> bool {
        fn narrow(requested: &mut Vec<String>, allowed: &[String]) -> bool {
            if requested.is_empty() {
                *requested = allowed.to_vec();
            } else {
                requested.retain(|x| allowed.contains(x));
            }
            !requested.is_empty()
        }
        let mut any = true;
        if let Some(c) = &self.compounds {
            any &= narrow(&mut f.compounds, c);
        }
        if let Some(g) = &self.grids {
            any &= narrow(&mut f.grids, g);
        }
        any
    }

    /// Keeps the visible cases of a window (their clocks and holds follow them).
    pub fn retain(&self, facts: &mut SlaFacts) {
        let keep = |c: &CaseViewRow| {
            self.compounds
                .as_ref()
                .is_none_or(|cs| cs.contains(&c.compound))
                && self
                    .grids
                    .as_ref()
                    .is_none_or(|gs| c.grid.as_ref().is_some_and(|g| gs.contains(g)))
        };
        facts.cases.retain(keep);
        let ids: std::collections::HashSet<&str> =
            facts.cases.iter().map(|c| c.case_id.as_str()).collect();
        let clocks = std::mem::take(&mut facts.clocks);
        facts.clocks = clocks
            .into_iter()
            .filter(|c| ids.contains(c.case_id.as_str()))
            .collect();
        let holds = std::mem::take(&mut facts.holds);
        facts.holds = holds
            .into_iter()
            .filter(|h| ids.contains(h.case_id.as_str()))
            .collect();
    }
}

fn page_size(v: u32, field: &'static str) -> Result<u32, ApiError> {
    match v {
        0 => Ok(DEFAULT_PAGE),
        1..=MAX_PAGE => Ok(v),
        _ => Err(ApiError::bad(field, format!("at most {MAX_PAGE}"))),
    }
}

/// Page tokens are `<reported_at unix µs>.<case id>` of the last row returned.
fn encode_token(row: &CaseViewRow) -> String {
    format!(
        "{}.{}",
        row.reported_at.unix_timestamp_nanos() / 1_000,
        row.case_id
    )
}

fn decode_token(token: &str) -> Result<Option<ListCursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::bad("page_token", "not a token from a previous response");
    let (us, id) = token.split_once('.').ok_or_else(bad)?;
    let us: i64 = us.parse().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    let at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|_| bad())?;
    Ok(Some(ListCursor {
        reported_at: at,
        case_id: id.to_string(),
    }))
}

/// A case view row as the contract shows it.
pub fn case_summary(r: &CaseViewRow, now: OffsetDateTime) -> pb::CaseSummary {
    pb::CaseSummary {
        case_id: r.case_id.clone(),
        version: r.version,
        category: r.category.clone(),
        compound: r.compound.clone(),
        grid: r.grid.clone().unwrap_or_default(),
        level: pb_level(&r.level),
        status: r.status.clone(),
        stage: r.stage.clone().unwrap_or_default(),
        closure: r.closure.clone().unwrap_or_default(),
        handler: r.handler.clone().unwrap_or_default(),
        department: r.department.clone().unwrap_or_default(),
        reported_at: Some(convert::timestamp(r.reported_at)),
        resolved_at: r.resolved_at.map(convert::timestamp),
        escalations: r.escalations,
        reopen_count: r.reopen_count,
        satisfaction: r.satisfaction.map_or(0, u32::from),
        breaches: r.breaches,
        next_milestone: r.next_milestone.clone().unwrap_or_default(),
        next_warn_at: r.next_warn_at.map(convert::timestamp),
        next_deadline: r.next_deadline.map(convert::timestamp),
        at_risk: summary::at_risk(r, now),
    }
}

fn dimension(v: i32) -> Result<Dimension, ApiError> {
    let d = pb::Dimension::try_from(v)
        .map_err(|_| ApiError::bad("group_by", format!("unknown dimension {v}")))?;
    Ok(match d {
        pb::Dimension::Unspecified => Dimension::All,
        pb::Dimension::Department => Dimension::Department,
        pb::Dimension::Compound => Dimension::Compound,
        pb::Dimension::Grid => Dimension::Grid,
        pb::Dimension::Category => Dimension::Category,
        pb::Dimension::Level => Dimension::Level,
        pb::Dimension::Day => Dimension::Day,
    })
}

/// A human name for a group key.
pub fn label(district: &District, dim: Dimension, key: &str) -> String {
    let found = match dim {
        Dimension::Department => district
            .departments
            .get(&DepartmentId(key.to_string()))
            .map(|d| d.name.clone()),
        Dimension::Compound => district
            .org
            .get(&OrgId(key.to_string()))
            .map(|n| n.name.clone()),
        Dimension::Grid => district
            .org
            .grid(&GridId(key.to_string()))
            .map(|g| g.name.clone()),
        Dimension::Category => district
            .catalogue
            .get(&CategoryCode(key.to_string()))
            .map(|c| c.name_zh.clone()),
        Dimension::Level | Dimension::Day | Dimension::All => None,
    };
    found.unwrap_or_else(|| {
        if key.is_empty() {
            "—".to_string()
        } else {
            key.to_string()
        }
    })
}

fn pb_rates(r: &summary::Rates) -> pb::Rates {
    pb::Rates {
        cases: r.cases,
        open: r.open,
        resolved: r.resolved,
        closed: r.closed,
        response_rate: r.response_rate,
        resolution_rate: r.resolution_rate,
        satisfaction_rate: r.satisfaction_rate,
        breaches: r.breaches,
        at_risk: r.at_risk,
        reopen_rate: r.reopen_rate,
        escalations: r.escalations,
    }
}

fn pb_group(g: &Group, label: String) -> pb::SummaryGroup {
    pb::SummaryGroup {
        key: g.key.clone(),
        label,
        rates: Some(pb_rates(&g.rates)),
        milestones: g
            .milestones
            .iter()
            .map(|m| pb::MilestoneFigures {
                milestone: m.milestone.clone(),
                decided: m.decided,
                on_time: m.on_time,
                on_time_rate: m.on_time_rate,
                p50_seconds: m.p50_seconds,
                p90_seconds: m.p90_seconds,
                breaches: m.breaches,
            })
            .collect(),
        escalations_by_rung: g
            .escalations_by_rung
            .iter()
            .map(|(l, n)| pb::LevelCount {
                level: pb_level(l),
                count: *n,
            })
            .collect(),
        held_by_rung: g
            .held_by_rung
            .iter()
            .map(|(l, s)| pb::LevelSeconds {
                level: pb_level(l),
                seconds: *s,
            })
            .collect(),
        held_by_handler: g
            .held_by_handler
            .iter()
            .take(20)
            .map(|(h, s)| pb::HandlerSeconds {
                handler: h.clone(),
                seconds: *s,
            })
            .collect(),
    }
}

/// The SLA summary of a window (what `GetSlaSummary` returns).
pub async fn sla_summary(
    state: &AppState,
    actor: &Actor,
    from: OffsetDateTime,
    to: OffsetDateTime,
    dim: Dimension,
) -> Result<pb::SlaSummary, ApiError> {
    let now = state.clock.now();
    let projected = state
        .store
        .load_checkpoint(SLA_PROJECTION)
        .await?
        .unwrap_or_default()
        .position;
    let mut facts = state.store.sla_facts(Some(from), Some(to)).await?;
    let district = state.district.get();
    visible_rows(actor, &district).retain(&mut facts);
    let totals = summary::totals(&facts, now);
    let groups = if dim == Dimension::All {
        Vec::new()
    } else {
        summary::summarize(&facts, dim, now)
            .iter()
            .map(|g| pb_group(g, label(&district, dim, &g.key)))
            .collect()
    };
    Ok(pb::SlaSummary {
        window: Some(pb::TimeWindow {
            from: Some(convert::timestamp(from)),
            to: Some(convert::timestamp(to)),
        }),
        computed_at: Some(convert::timestamp(now)),
        totals: Some(pb_group(&totals, String::new())),
        groups,
        funnel: summary::funnel(&facts)
            .iter()
            .map(|(l, n)| pb::LevelCount {
                level: pb_level(l),
                count: *n,
            })
            .collect(),
        projected_position: projected,
    })
}

// ---------------------------------------------------------------------------------------
// The overview JSON of the web page.

/// What the web dashboard shows, in one response (`GET /api/dashboard`).
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub now: String,
    pub from: String,
    pub to: String,
    pub scope: String,
    pub totals: RatesJson,
    pub milestones: Vec<MilestoneJson>,
    pub funnel: Vec<FunnelJson>,
    /// Ranked best first (response rate, then resolution rate).
    pub departments: Vec<GroupJson>,
    pub trend: Vec<TrendJson>,
    pub at_risk: Vec<CaseItem>,
    pub breached: Vec<CaseItem>,
    /// Log position the SLA figures include.
    pub projected_position: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RatesJson {
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

impl From<&summary::Rates> for RatesJson {
    fn from(r: &summary::Rates) -> Self {
        RatesJson {
            cases: r.cases,
            open: r.open,
            resolved: r.resolved,
            closed: r.closed,
            response_rate: r.response_rate,
            resolution_rate: r.resolution_rate,
            satisfaction_rate: r.satisfaction_rate,
            breaches: r.breaches,
            at_risk: r.at_risk,
            reopen_rate: r.reopen_rate,
            escalations: r.escalations,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MilestoneJson {
    pub milestone: String,
    pub decided: u64,
    pub on_time: u64,
    pub on_time_rate: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub breaches: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunnelJson {
    pub level: String,
    pub cases: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupJson {
    pub key: String,
    pub label: String,
    pub rates: RatesJson,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendJson {
    pub start: String,
    pub reported: u64,
    pub resolved: u64,
    pub breaches: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseItem {
    pub case_id: String,
    pub category: String,
    pub category_name: String,
    pub compound: String,
    pub compound_name: String,
    pub level: String,
    pub status: String,
    pub stage: Option<String>,
    pub handler: Option<String>,
    pub reported_at: String,
    pub milestone: Option<String>,
    pub deadline: Option<String>,
    pub warn_at: Option<String>,
    pub seconds_left: Option<i64>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn case_item(
    district: &District,
    row: &CaseViewRow,
    milestone: Option<&str>,
    warn_at: Option<OffsetDateTime>,
    deadline: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> CaseItem {
    CaseItem {
        case_id: row.case_id.clone(),
        category: row.category.clone(),
        category_name: label(district, Dimension::Category, &row.category),
        compound: row.compound.clone(),
        compound_name: label(district, Dimension::Compound, &row.compound),
        level: row.level.clone(),
        status: row.status.clone(),
        stage: row.stage.clone(),
        handler: row.handler.clone(),
        reported_at: rfc3339(row.reported_at),
        milestone: milestone.map(str::to_string),
        deadline: deadline.map(rfc3339),
        warn_at: warn_at.map(rfc3339),
        seconds_left: deadline.map(|d| (d - now).whole_seconds()),
    }
}

fn rank(a: &GroupJson, b: &GroupJson) -> std::cmp::Ordering {
    let key = |g: &GroupJson| {
        (
            g.rates.response_rate.unwrap_or(-1.0),
            g.rates.resolution_rate.unwrap_or(-1.0),
        )
    };
    let (ka, kb) = (key(a), key(b));
    kb.0.total_cmp(&ka.0)
        .then(kb.1.total_cmp(&ka.1))
        .then_with(|| a.key.cmp(&b.key))
}

/// The overview of `[from, to)` as of now.
pub async fn overview(
    state: &AppState,
    actor: &Actor,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Overview, ApiError> {
    check_window(from, to, "window")?;
    let now = state.clock.now();
    let district = state.district.get();
    let projected = state
        .store
        .load_checkpoint(SLA_PROJECTION)
        .await?
        .unwrap_or_default()
        .position;
    let mut facts: SlaFacts = state.store.sla_facts(Some(from), Some(to)).await?;
    let visible = visible_rows(actor, &district);
    visible.retain(&mut facts);
    let totals = summary::totals(&facts, now);
    let mut departments: Vec<GroupJson> = summary::summarize(&facts, Dimension::Department, now)
        .iter()
        .filter(|g| !g.key.is_empty())
        .map(|g| GroupJson {
            key: g.key.clone(),
            label: label(&district, Dimension::Department, &g.key),
            rates: RatesJson::from(&g.rates),
        })
        .collect();
    departments.sort_by(rank);
    let step = if to - from <= Duration::hours(48) {
        Duration::hours(1)
    } else {
        Duration::days(1)
    };
    let mut risk_filter = CaseFilter {
        at_risk_at: Some(now),
        ..CaseFilter::default()
    };
    let at_risk = if visible.restrict(&mut risk_filter) {
        state
            .store
            .list_case_views(&risk_filter, None, Some(OVERVIEW_LIST as u32))
            .await?
    } else {
        Vec::new()
    };
    let mut at_risk: Vec<CaseItem> = at_risk
        .iter()
        .map(|r| {
            case_item(
                &district,
                r,
                r.next_milestone.as_deref(),
                r.next_warn_at,
                r.next_deadline,
                now,
            )
        })
        .collect();
    at_risk.sort_by_key(|c| (c.seconds_left, c.case_id.clone()));
    let breached = summary::breached_cases(&facts)
        .into_iter()
        .take(OVERVIEW_LIST)
        .map(|f| {
            case_item(
                &district,
                f.case,
                Some(&f.clock.milestone),
                Some(f.clock.warn_at),
                Some(f.clock.deadline),
                now,
            )
        })
        .collect();
    Ok(Overview {
        now: rfc3339(now),
        from: rfc3339(from),
        to: rfc3339(to),
        scope: format!("district {}", district.name),
        totals: RatesJson::from(&totals.rates),
        milestones: totals
            .milestones
            .iter()
            .map(|m| MilestoneJson {
                milestone: m.milestone.clone(),
                decided: m.decided,
                on_time: m.on_time,
                on_time_rate: m.on_time_rate,
                p50_seconds: m.p50_seconds,
                p90_seconds: m.p90_seconds,
                breaches: m.breaches,
            })
            .collect(),
        funnel: summary::funnel(&facts)
            .into_iter()
            .map(|(level, cases)| FunnelJson { level, cases })
            .collect(),
        departments,
        trend: summary::trend(&facts, from, to, step)
            .into_iter()
            .map(|b| TrendJson {
                start: rfc3339(b.start),
                reported: b.reported,
                resolved: b.resolved,
                breaches: b.breaches,
            })
            .collect(),
        at_risk,
        breached,
        projected_position: projected,
    })
}

// ---------------------------------------------------------------------------------------
// The gRPC service.

/// `DashboardService`; its streams end when `closing` turns true.
pub struct Dashboards {
    state: AppState,
    closing: watch::Receiver<bool>,
}

impl Dashboards {
    pub fn new(state: AppState, closing: watch::Receiver<bool>) -> Dashboards {
        Dashboards { state, closing }
    }
}

type SlaStream = Pin<Box<dyn Stream<Item = Result<pb::SlaChange, Status>> + Send>>;

/// Event types that change a case's SLA picture.
const SLA_EVENTS: &[&str] = &[
    "CaseReported",
    "CaseAcknowledged",
    "ArrivedOnSite",
    "CaseResolved",
    "ResolutionConfirmed",
    "CaseReopened",
    "CaseEscalated",
    "CaseTakenOver",
    "CaseWithdrawn",
    "CaseRejected",
    "CaseMerged",
    "ClockPaused",
    "ClockResumed",
    "MilestoneStarted",
    "MilestoneMet",
    "MilestoneWarned",
    "MilestoneBreached",
    "MilestoneCancelled",
    "DeadlineShifted",
];

async fn watch_sla(
    state: AppState,
    actor: Actor,
    after: i64,
    tx: mpsc::Sender<Result<pb::SlaChange, Status>>,
    mut closing: watch::Receiver<bool>,
) {
    let mut follower = Follower::new(state.store.clone(), after, WATCH_BATCH);
    let mut router = Router::default();
    loop {
        let batch = tokio::select! {
            b = follower.next_batch() => b,
            _ = tx.closed() => return,
            _ = crate::departments::closed(&mut closing) => {
                let _ = tx.send(Err(Status::unavailable(
                    "server shutting down; resume from your last position",
                ))).await;
                return;
            }
        };
        let batch = match batch {
            Ok(b) => b,
            Err(error) => {
                let _ = tx.send(Err(ApiError::Store(error).into())).await;
                return;
            }
        };
        for rec in batch {
            let (stream, position) = (rec.stream.clone(), rec.position);
            let routed = match router.route(&*state.store, rec).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, "WatchSla cannot fold an event");
                    let _ = tx
                        .send(Err(Status::internal("internal error reading events")))
                        .await;
                    return;
                }
            };
            let event_type = routed.event.body.event_type();
            if !SLA_EVENTS.contains(&event_type) {
                continue;
            }
            let Some(case) = router.case(&stream) else {
                continue;
            };
            if !whistle_domain::scope::visible_to(&actor, case, &state.district.get()) {
                continue;
            }
            let row = match case_view_row(case) {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(%error, "WatchSla cannot build a case summary");
                    continue;
                }
            };
            let change = pb::SlaChange {
                position,
                case_id: case.id.to_string(),
                event_type: event_type.to_string(),
                occurred_at: Some(convert::timestamp(routed.event.occurred_at)),
                case: Some(case_summary(&row, state.clock.now())),
            };
            if tx.send(Ok(change)).await.is_err() {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl DashboardService for Dashboards {
    #[tracing::instrument(skip_all, fields(rpc = "ListCases"))]
    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let actor = self
            .state
            .auth
            .authenticate_request(&request, "ListCases")?;
        authorize(&actor, "ListCases")?;
        let r = request.get_ref();
        let now = self.state.clock.now();
        let size = page_size(r.page_size, "page_size")?;
        let cursor = decode_token(&r.page_token)?;
        let district = self.state.district.get();
        let Some(mut f) = filter(r.filter.as_ref(), &district, now)? else {
            return Ok(Response::new(pb::ListCasesResponse::default()));
        };
        if !visible_rows(&actor, &district).restrict(&mut f) {
            return Ok(Response::new(pb::ListCasesResponse::default()));
        }
        let mut rows = self
            .state
            .store
            .list_case_views(&f, cursor.as_ref(), Some(size + 1))
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = if more {
            rows.last().map(encode_token).unwrap_or_default()
        } else {
            String::new()
        };
        tracing::debug!(principal = %actor.principal, rows = rows.len(), "ListCases");
        Ok(Response::new(pb::ListCasesResponse {
            cases: rows.iter().map(|r| case_summary(r, now)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetSlaSummary"))]
    async fn get_sla_summary(
        &self,
        request: Request<pb::GetSlaSummaryRequest>,
    ) -> Result<Response<pb::SlaSummary>, Status> {
        let actor = self
            .state
            .auth
            .authenticate_request(&request, "GetSlaSummary")?;
        authorize(&actor, "GetSlaSummary")?;
        let r = request.get_ref();
        let (from, to) = window(r.window.as_ref(), "window")?;
        let dim = dimension(r.group_by)?;
        Ok(Response::new(
            sla_summary(&self.state, &actor, from, to, dim).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListAtRisk"))]
    async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        let actor = self
            .state
            .auth
            .authenticate_request(&request, "ListAtRisk")?;
        authorize(&actor, "ListAtRisk")?;
        let limit = page_size(request.get_ref().limit, "limit")?;
        let now = self.state.clock.now();
        let mut f = CaseFilter {
            at_risk_at: Some(now),
            ..CaseFilter::default()
        };
        if !visible_rows(&actor, &self.state.district.get()).restrict(&mut f) {
            return Ok(Response::new(pb::ListAtRiskResponse::default()));
        }
        let rows = self
            .state
            .store
            .list_case_views(&f, None, None)
            .await
            .map_err(ApiError::from)?;
        let mut cases: Vec<pb::FlaggedCase> = rows
            .iter()
            .map(|r| pb::FlaggedCase {
                case: Some(case_summary(r, now)),
                milestone: r.next_milestone.clone().unwrap_or_default(),
                warn_at: r.next_warn_at.map(convert::timestamp),
                deadline: r.next_deadline.map(convert::timestamp),
                seconds_left: r.next_deadline.map_or(0, |d| (d - now).whole_seconds()),
            })
            .collect();
        cases.sort_by(|a, b| {
            a.seconds_left.cmp(&b.seconds_left).then_with(|| {
                let id = |c: &pb::FlaggedCase| c.case.as_ref().map(|c| c.case_id.clone());
                id(a).cmp(&id(b))
            })
        });
        cases.truncate(limit as usize);
        Ok(Response::new(pb::ListAtRiskResponse { cases }))
    }

    type WatchSlaStream = SlaStream;

    async fn watch_sla(
        &self,
        request: Request<pb::WatchSlaRequest>,
    ) -> Result<Response<Self::WatchSlaStream>, Status> {
        let actor = self.state.auth.authenticate_request(&request, "WatchSla")?;
        authorize(&actor, "WatchSla")?;
        let after = request.get_ref().after_position;
        if after < 0 {
            return Err(ApiError::bad("after_position", "must not be negative").into());
        }
        let after = if after == 0 {
            self.state
                .store
                .head_position()
                .await
                .map_err(ApiError::from)?
        } else {
            after
        };
        tracing::info!(principal = %actor.principal, after, "WatchSla opened");
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch_sla(
            self.state.clone(),
            actor,
            after,
            tx,
            self.closing.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
