//! Configuration changes as events (DESIGN §5: every admin change is itself an event).
//!
//! Two admin streams hold them: [`SLA_STREAM`] (policies, rules, calendars) and
//! [`ROUTING_STREAM`] (the roster). Each event carries the whole configuration it leaves
//! in force, so any node rebuilds it from the latest event alone; the files a district
//! starts from seed an empty stream. Publishing never rewrites a policy version: a
//! version once published is immutable, changes need a new, higher version.

use crate::district::{District, DistrictError};
use crate::routing::RosterEntry;
use crate::sla::{SlaBook, SlaError, SlaSpec};
use serde::{Deserialize, Serialize};

pub const SLA_STREAM: &str = "admin-sla";
pub const ROUTING_STREAM: &str = "admin-routing";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AdminEvent {
    /// The SLA book in force from now on, and what changed.
    SlaPublished { spec: SlaSpec, changes: Vec<String> },
    /// The roster in force from now on.
    RosterReplaced { roster: Vec<RosterEntry> },
}

impl AdminEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            AdminEvent::SlaPublished { .. } => "SlaPublished",
            AdminEvent::RosterReplaced { .. } => "RosterReplaced",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error(
        "policy {name} version {version} is already published with other content; publish a higher version"
    )]
    VersionRewritten { name: String, version: u32 },
    #[error("policy {name} version {version} is not newer than the published version {latest}")]
    VersionNotNewer {
        name: String,
        version: u32,
        latest: u32,
    },
    #[error(transparent)]
    Sla(#[from] SlaError),
    #[error(transparent)]
    District(#[from] DistrictError),
}

/// Merge `update` into the book in force: new policy versions are added (the published
/// ones stay, so running clocks keep theirs), rules are replaced when given, calendars
/// are added or replaced by name. Returns the new spec and a line per change.
pub fn publish_sla(
    current: &SlaBook,
    update: SlaSpec,
) -> Result<(SlaSpec, Vec<String>), AdminError> {
    let mut spec = current.to_spec();
    let mut changes = Vec::new();
    for p in update.policies {
        let same_name: Vec<_> = spec.policies.iter().filter(|q| q.name == p.name).collect();
        if let Some(existing) = same_name.iter().find(|q| q.version == p.version) {
            if **existing != p {
                return Err(AdminError::VersionRewritten {
                    name: p.name,
                    version: p.version,
                });
            }
            continue;
        }
        if let Some(latest) = same_name.iter().map(|q| q.version).max()
            && p.version < latest
        {
            return Err(AdminError::VersionNotNewer {
                name: p.name,
                version: p.version,
                latest,
            });
        }
        changes.push(format!("policy {} v{} published", p.name, p.version));
        spec.policies.push(p);
    }
    if !update.rules.is_empty() {
        changes.push(format!(
            "{} rules replace {}",
            update.rules.len(),
            spec.rules.len()
        ));
        spec.rules = update.rules;
    }
    for (name, cal) in update.calendars {
        changes.push(format!("calendar {name} set"));
        spec.calendars.insert(name, cal);
    }
    SlaBook::build(spec.clone())?;
    Ok((spec, changes))
}

/// The district with another roster, validated like the district file.
pub fn replace_roster(
    district: &District,
    roster: Vec<RosterEntry>,
) -> Result<District, AdminError> {
    district.validate_roster(&roster)?;
    let mut next = district.clone();
    next.roster = roster;
    Ok(next)
}
