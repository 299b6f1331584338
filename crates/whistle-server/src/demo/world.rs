//! The simulated world of `whistle demo`: who reports what, where and when, and how the
//! people on each rung behave. Everything here is plain data and arithmetic on a seeded
//! random stream, so a seed always yields the same day (the timing of the live clock
//! aside); the engine in [`super::sim`] turns it into gRPC calls.

use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime, UtcOffset};
use whistle_domain::scope::covers;
use whistle_domain::{District, OrgId, OrgKind, Scope};
use whistle_proto::v1 as pb;

/// A small deterministic random stream (SplitMix64). Hand-rolled on purpose: the demo's
/// day must stay the same for a seed across dependency upgrades, which a general-purpose
/// generator crate does not promise.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for one purpose (`stream`), so that what happens to one
    /// case does not depend on how many draws other cases made before it.
    pub fn derive(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [lo, hi).
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A duration between `lo` and `hi` minutes, skewed towards `lo` (the product of two
    /// uniforms): most people act fairly soon, a few take much longer.
    pub fn minutes(&mut self, lo: f64, hi: f64) -> Duration {
        let u = self.unit() * self.unit();
        Duration::seconds_f64((lo + (hi - lo) * u) * 60.0)
    }

    /// Exponentially distributed with the given mean.
    pub fn exponential(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.unit(); // (0, 1]: ln never sees zero
        Duration::seconds_f64(-u.ln() * mean.as_seconds_f64())
    }

    /// An index drawn by weight; `None` when no weight is positive.
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0)
    }
}

/// Local time of the demo district: China Standard Time, UTC+8 all year.
pub const LOCAL: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// Reports per local hour, relative (the curve of a residential district: quiet at
/// night, a morning peak when people find last night's problems, a lunch dip, an evening
/// peak when everyone is home). The shape is normalised, so only ratios matter.
pub const HOURLY_CURVE: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, // 00–05
    0.6, 1.4, 2.2, 2.4, 2.0, 1.5, // 06–11
    1.0, 0.9, 1.1, 1.2, 1.3, 1.7, // 12–17
    2.3, 2.6, 2.2, 1.5, 0.9, 0.5, // 18–23
];

/// The category mix of a day, in percent of reports (DESIGN §1 catalogue codes). Small
/// matters settled in the compound dominate; the fast-channel emergencies are rare.
pub const CATEGORY_MIX: [(&str, f64); 16] = [
    ("neighbour_noise", 14.0),
    ("leak_from_above", 12.0),
    ("corridor_clutter", 12.0),
    ("door_or_light_broken", 10.0),
    ("sanitation", 12.0),
    ("lift_fault", 6.0),
    ("fire_lane_blocked", 6.0),
    ("property_dispute", 5.0),
    ("ebike_charging", 5.0),
    ("utility_outage", 4.0),
    ("illegal_construction", 4.0),
    ("public_security", 3.0),
    ("market_problem", 3.0),
    ("fire_hazard", 2.0),
    ("gas_smell", 1.0),
    ("property_certificate", 1.0),
];

/// Noise complaints come in the evening: this category's weight is multiplied by this
/// from 19:00 to 23:59 local time.
pub const EVENING_NOISE_FACTOR: f64 = 2.5;

/// What people write, per category (a resident's words, as a grid worker types them).
fn description(category: &str) -> &'static str {
    match category {
        "neighbour_noise" => "楼上深夜装修噪音 — renovation noise from upstairs late at night",
        "leak_from_above" => {
            "楼上卫生间渗水到天花板 — water through the ceiling from the flat above"
        }
        "corridor_clutter" => "楼道堆放杂物堵住通道 — boxes and furniture blocking the stairwell",
        "door_or_light_broken" => {
            "单元门禁坏了，楼道灯不亮 — entrance door lock broken, corridor light out"
        }
        "sanitation" => "垃圾站三天没清运 — rubbish point not cleared for three days",
        "lift_fault" => "电梯停在两层之间 — lift stuck between floors",
        "fire_lane_blocked" => "私家车长期占用消防通道 — cars parked in the fire lane",
        "property_dispute" => "物业费上涨未经业主大会 — fee rise without an owners' assembly vote",
        "ebike_charging" => "电动车在楼道里充电 — e-bike charging in the corridor",
        "utility_outage" => "整栋楼停水 — the whole building has no water",
        "illegal_construction" => {
            "一楼住户私搭阳光房 — ground-floor flat building a glass extension"
        }
        "public_security" => "地下车库有人撬车 — someone breaking into cars in the garage",
        "market_problem" => "小区门口商铺缺斤短两 — shop at the gate selling short weight",
        "fire_hazard" => "楼道消防栓被锁、灭火器过期 — hydrant locked, extinguishers expired",
        "gas_smell" => "楼道里有很浓的煤气味 — strong gas smell in the stairwell",
        "property_certificate" => "房改房多年办不下房产证 — no property certificate for years",
        _ => "需要处理的问题 — a problem that needs fixing",
    }
}

/// How the people of the district behave: the chances that make a day realistic, with
/// some late and some absent so that clocks breach and cases climb rungs.
#[derive(Debug, Clone)]
pub struct Rates {
    /// Chance that nobody at a rung signs for a case at all (NEIGHBOUR, UNIT, BRANCH,
    /// and a department that has a duty desk): its respond clock breaches at 8 minutes.
    pub absent: [f64; 4],
    /// Chance that whoever would sign does so only after the respond deadline: the case
    /// has climbed a rung by then.
    pub late: f64,
    /// Chance that a handler who signed for a case escalates it as beyond the rung
    /// (NEIGHBOUR, UNIT, BRANCH).
    pub beyond: [f64; 3],
    /// Chance of arriving on site after the 30-minute target.
    pub late_on_site: f64,
    /// Chance of resolving without going on site (a phone call settles it).
    pub remote_fix: f64,
    /// Chance that resolving takes longer than the policy's target.
    pub slow_resolve: f64,
    /// Chance that a resolved case is confirmed by its reporter (the rest stay resolved).
    pub confirm: f64,
    /// Share of reports made by residents through the app at the model compound (the
    /// first with a roster); grid workers report the rest.
    pub resident_share: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            absent: [0.10, 0.08, 0.06, 0.05],
            late: 0.06,
            beyond: [0.20, 0.15, 0.10],
            late_on_site: 0.08,
            remote_fix: 0.10,
            slow_resolve: 0.05,
            confirm: 0.85,
            resident_share: 0.15,
        }
    }
}

/// A place a case can be reported: a unit, with its compound.
#[derive(Debug, Clone)]
pub struct Place {
    pub unit: String,
    pub compound: String,
}

/// One report to make.
#[derive(Debug, Clone)]
pub struct Report {
    pub category: String,
    pub location: String,
    pub description: String,
    /// Principal id of the reporter.
    pub reporter: String,
}

/// A principal the simulator can act as.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    /// `resident`, `grid_worker`, `handler`, `department`, `supervisor`, `admin`.
    pub role: String,
    pub department: Option<String>,
    /// Where a grid worker, handler or supervisor sees and acts (DESIGN §6).
    pub scope: Scope,
    pub token: String,
}

/// Who is who in the simulation, derived from the district and the principals whose
/// tokens the simulator holds.
#[derive(Debug, Clone)]
pub struct Cast {
    pub members: BTreeMap<String, Member>,
    /// Reads case views for everyone: a supervisor, district-wide if there is one (a
    /// scoped one cannot see cases outside its area).
    pub observer: String,
    /// Unit → the grid worker who reports there (one whose scope covers it).
    pub reporter_of_unit: BTreeMap<String, String>,
    pub residents: Vec<String>,
    /// Who may claim an unassigned case at NEIGHBOUR, UNIT, BRANCH: the roster's handlers
    /// of each rung; the first whose scope covers the case claims it.
    pub claimers: [Vec<String>; 3],
    /// The district officer who takes over (兜底); never absent.
    pub takeover: Option<String>,
    district: District,
}

impl Cast {
    pub fn new(district: &District, members: Vec<Member>) -> anyhow::Result<Cast> {
        let members: BTreeMap<String, Member> =
            members.into_iter().map(|m| (m.id.clone(), m)).collect();
        let supervisors = || members.values().filter(|m| m.role == "supervisor");
        let observer = supervisors()
            .find(|m| m.scope == Scope::District)
            .or_else(|| supervisors().next())
            .map(|m| m.id.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("the demo needs a supervisor principal to read cases")
            })?;
        // A unit's reports come from a grid worker whose scope covers it (a grid worker
        // may only report in scope), one responsible for an area before a district-wide
        // one: gw-lin for 东风街道 and gw-zhao for 西湖街道 in the demo district.
        let grid_workers: Vec<&Member> = members
            .values()
            .filter(|m| m.role == "grid_worker")
            .collect();
        let reporter_of_unit: BTreeMap<String, String> = district
            .org
            .nodes()
            .filter(|n| n.kind == OrgKind::Unit)
            .filter_map(|n| {
                let covering = || {
                    grid_workers
                        .iter()
                        .filter(|m| covers(&m.scope, &n.id, district))
                };
                covering()
                    .find(|m| m.scope != Scope::District)
                    .or_else(|| covering().next())
                    .map(|m| (n.id.0.clone(), m.id.clone()))
            })
            .collect();
        if reporter_of_unit.is_empty() {
            anyhow::bail!("the demo needs a grid worker principal to report cases");
        }
        let residents = members
            .values()
            .filter(|m| m.role == "resident")
            .map(|m| m.id.clone())
            .collect();
        let claimers_at = |level: whistle_domain::Level| {
            let mut out: Vec<String> = Vec::new();
            for r in district.roster.iter().filter(|r| r.level == level) {
                let p = &r.principal.0;
                if members.get(p).is_some_and(|m| m.role == "handler") && !out.contains(p) {
                    out.push(p.clone());
                }
            }
            out
        };
        let claimers = [
            claimers_at(whistle_domain::Level::Neighbour),
            claimers_at(whistle_domain::Level::Unit),
            claimers_at(whistle_domain::Level::Branch),
        ];
        let takeover = district
            .takeover_principal
            .as_ref()
            .map(|p| p.0.clone())
            .filter(|p| members.contains_key(p));
        Ok(Cast {
            members,
            observer,
            reporter_of_unit,
            residents,
            claimers,
            takeover,
            district: district.clone(),
        })
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// The principal who acts for `handler`, if the simulation has one. A department
    /// without a duty desk has none: what is dispatched to it breaches and the district
    /// takes it over.
    pub fn acts_for(&self, handler: &pb::Handler) -> Option<&Member> {
        match handler.kind.as_ref()? {
            pb::handler::Kind::PrincipalId(p) => self.members.get(p),
            pb::handler::Kind::DepartmentId(d) => self
                .members
                .values()
                .find(|m| m.role == "department" && m.department.as_deref() == Some(d.as_str())),
        }
    }

    /// Who claims an unassigned case at this rung and location (none at ESCALATED:
    /// routing dispatches to departments, and a case no department owns waits for the
    /// district).
    pub fn claimer(&self, level: pb::Level, location: &str) -> Option<&Member> {
        let i = match level {
            pb::Level::Neighbour => 0,
            pb::Level::Unit => 1,
            pb::Level::Branch => 2,
            _ => return None,
        };
        let location = OrgId::new(location);
        self.claimers[i]
            .iter()
            .filter_map(|p| self.members.get(p))
            .find(|m| covers(&m.scope, &location, &self.district))
    }
}

/// Where and what people report, drawn from the district.
#[derive(Debug, Clone)]
pub struct Catalogue {
    places: Vec<Place>,
    place_weights: Vec<f64>,
    /// The compound residents report from (the first with a roster).
    model_compound: Option<String>,
    categories: Vec<(String, f64)>,
}

impl Catalogue {
    pub fn new(district: &District) -> anyhow::Result<Catalogue> {
        let org = &district.org;
        let rostered: std::collections::BTreeSet<&str> = district
            .roster
            .iter()
            .filter_map(|r| org.ancestor_of_kind(&r.org, OrgKind::Compound))
            .map(|n| n.id.0.as_str())
            .collect();
        let mut places = Vec::new();
        let mut place_weights = Vec::new();
        for n in org.nodes().filter(|n| n.kind == OrgKind::Unit) {
            let Some(compound) = org.ancestor_of_kind(&n.id, OrgKind::Compound) else {
                continue;
            };
            // The model compound (full roster) gets more of the traffic, so its
            // rostered flows show; otherwise every unit is equally likely.
            let w = if rostered.contains(compound.id.0.as_str()) {
                3.0
            } else {
                1.0
            };
            places.push(Place {
                unit: n.id.0.clone(),
                compound: compound.id.0.clone(),
            });
            place_weights.push(w);
        }
        if places.is_empty() {
            anyhow::bail!("the district has no units to report from");
        }
        let model_compound = places
            .iter()
            .find(|p| rostered.contains(p.compound.as_str()))
            .map(|p| p.compound.clone());
        let known = |c: &str| {
            district
                .catalogue
                .categories
                .keys()
                .any(|k| k.0.as_str() == c)
        };
        let mut categories: Vec<(String, f64)> = CATEGORY_MIX
            .iter()
            .filter(|(c, _)| known(c))
            .map(|(c, w)| (c.to_string(), *w))
            .collect();
        if categories.is_empty() {
            // Another district's catalogue: every category equally likely.
            categories = district
                .catalogue
                .categories
                .keys()
                .map(|k| (k.0.clone(), 1.0))
                .collect();
        }
        if categories.is_empty() {
            anyhow::bail!("the district has no categories");
        }
        Ok(Catalogue {
            places,
            place_weights,
            model_compound,
            categories,
        })
    }

    /// Draw the next report at local time `at`.
    pub fn report(
        &self,
        rng: &mut Rng,
        cast: &Cast,
        rates: &Rates,
        at: OffsetDateTime,
    ) -> Option<Report> {
        let hour = at.to_offset(LOCAL).hour();
        let weights: Vec<f64> = self
            .categories
            .iter()
            .map(|(c, w)| {
                if c == "neighbour_noise" && hour >= 19 {
                    w * EVENING_NOISE_FACTOR
                } else {
                    *w
                }
            })
            .collect();
        let category = self.categories[rng.weighted(&weights)?].0.clone();
        let resident = match (&self.model_compound, cast.residents.first()) {
            (Some(compound), Some(resident)) if rng.chance(rates.resident_share) => {
                Some((compound, resident))
            }
            _ => None,
        };
        let place = match resident {
            Some((compound, _)) => {
                let units: Vec<&Place> = self
                    .places
                    .iter()
                    .filter(|p| &p.compound == compound)
                    .collect();
                units[(rng.next_u64() % units.len().max(1) as u64) as usize]
            }
            None => &self.places[rng.weighted(&self.place_weights)?],
        };
        let reporter = match resident {
            Some((_, r)) => r.clone(),
            None => cast.reporter_of_unit.get(&place.unit)?.clone(),
        };
        Some(Report {
            description: description(&category).to_string(),
            category,
            location: place.unit.clone(),
            reporter,
        })
    }
}

/// The mean time to the next report at `at`, for `cases_per_day` spread along
/// [`HOURLY_CURVE`].
pub fn mean_gap(cases_per_day: f64, at: OffsetDateTime) -> Duration {
    let total: f64 = HOURLY_CURVE.iter().sum();
    let hour = usize::from(at.to_offset(LOCAL).hour());
    let per_hour = cases_per_day.max(0.001) * HOURLY_CURVE[hour] / total;
    Duration::seconds_f64(3600.0 / per_hour.max(0.000_1))
}

/// Resident satisfaction (1–5): mostly satisfied, a tail of unhappy ones.
pub fn satisfaction(rng: &mut Rng) -> u32 {
    match rng.weighted(&[4.0, 6.0, 10.0, 25.0, 55.0]) {
        Some(i) => i as u32 + 1,
        None => 5,
    }
}

/// How long resolving takes after work starts, by policy class; `slow` pushes it past
/// the target (1 day routine, 2 days complex) so that the resolve clock breaches.
pub fn resolve_time(rng: &mut Rng, class: pb::PolicyClass, slow: bool) -> Duration {
    let (lo, hi) = match class {
        pb::PolicyClass::Complex => (180.0, 1800.0),
        pb::PolicyClass::Urgent | pb::PolicyClass::Emergency => (20.0, 180.0),
        _ => (15.0, 300.0),
    };
    if slow {
        let target = match class {
            pb::PolicyClass::Complex => 2880.0,
            _ => 1440.0,
        };
        rng.minutes(target, target * 1.5)
    } else {
        rng.minutes(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_seed_always_gives_the_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..5).map(|_| Rng::derive(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::derive(7, 1);
        let mut y = Rng::derive(7, 2);
        assert_ne!(x.next_u64(), y.next_u64());
    }

    #[test]
    fn weighted_draws_never_pick_a_zero_weight() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert_ne!(r.weighted(&[1.0, 0.0, 2.0]), Some(1));
        }
        assert_eq!(r.weighted(&[0.0, 0.0]), None);
        let u = r.unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn reports_come_fastest_in_the_morning_and_evening_peaks() {
        let at = |h: u8| {
            datetime!(2026-03-02 00:00:00 +08:00)
                .replace_hour(h)
                .expect("hour")
        };
        let gap = |h| mean_gap(300.0, at(h));
        assert!(gap(9) < gap(13) && gap(19) < gap(13) && gap(13) < gap(3));
        assert!(gap(19) <= gap(9));
        // The curve is normalised: a day's expected reports are `cases_per_day`.
        let per_day: f64 = (0..24).map(|h| 3600.0 / gap(h).as_seconds_f64()).sum();
        assert!((per_day - 300.0).abs() < 1e-6, "{per_day}");
    }
}
