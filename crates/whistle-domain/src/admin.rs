//! Configuration changes as events (DESIGN §5: every admin change is itself an event).
//!
//! Three admin streams hold them: [`SLA_STREAM`] (policies, rules, calendars) and
//! [`ROUTING_STREAM`] (the roster), where each event carries the whole configuration it
//! leaves in force, so any node rebuilds it from the latest event alone (the files a
//! district starts from seed an empty stream); and [`TOKENS_STREAM`] (bearer tokens
//! issued and revoked at run time), folded from its first event, since each event
//! changes one token. A token itself is never stored, only its SHA-256. Publishing never rewrites a policy version: a
//! version once published is immutable, changes need a new, higher version.

use crate::district::{District, DistrictError};
use crate::ids::{DepartmentId, PrincipalId};
use crate::principal::{Role, Scope};
use crate::routing::RosterEntry;
use crate::sla::{SlaBook, SlaError, SlaSpec};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const SLA_STREAM: &str = "admin-sla";
pub const ROUTING_STREAM: &str = "admin-routing";
pub const TOKENS_STREAM: &str = "admin-tokens";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AdminEvent {
    /// The SLA book in force from now on, and what changed.
    SlaPublished { spec: SlaSpec, changes: Vec<String> },
    /// The roster in force from now on.
    RosterReplaced { roster: Vec<RosterEntry> },
    /// A bearer token was issued for a principal (who issued it and when are the
    /// event's actor and time).
    TokenIssued {
        /// Public handle of the token (lists, revocation); not a secret.
        token_id: String,
        principal: PrincipalId,
        role: Role,
        /// Department accounts: the department they sign for.
        #[serde(default)]
        department: Option<DepartmentId>,
        /// Where a grid worker, handler or supervisor sees and acts.
        #[serde(default)]
        scope: Scope,
        /// Display name, for logs and lists.
        name: String,
        /// Lower-case hex SHA-256 of the token: all a node needs to recognise it.
        token_sha256: String,
        /// After this instant the token is refused; `None`: until revoked.
        #[serde(default, with = "time::serde::rfc3339::option")]
        expires_at: Option<OffsetDateTime>,
    },
    /// The token is refused from now on.
    TokenRevoked { token_id: String },
}

impl AdminEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            AdminEvent::SlaPublished { .. } => "SlaPublished",
            AdminEvent::RosterReplaced { .. } => "RosterReplaced",
            AdminEvent::TokenIssued { .. } => "TokenIssued",
            AdminEvent::TokenRevoked { .. } => "TokenRevoked",
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
