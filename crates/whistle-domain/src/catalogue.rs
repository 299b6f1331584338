//! Escalation levels, urgency, policy classes and the district's category catalogue.
//! The catalogue is data (districts edit it); this module only gives it types.

use crate::ids::CategoryCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The rungs of the escalation ladder, lowest first. `Ord` follows the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// A party-member household or volunteer of the building (邻里小事党员牵头议).
    Neighbour,
    /// The building/unit party group leader or steward (单元琐事党小组协调议).
    Unit,
    /// The compound party branch with owners' committee and property company (小区公事党支部组织议).
    Branch,
    /// Dispatched to district functional departments (复杂难事上报提级议, 小区吹哨、部门报到).
    Escalated,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::Neighbour,
        Level::Unit,
        Level::Branch,
        Level::Escalated,
    ];

    /// The next rung up, or `None` at the top.
    pub fn next(self) -> Option<Level> {
        match self {
            Level::Neighbour => Some(Level::Unit),
            Level::Unit => Some(Level::Branch),
            Level::Branch => Some(Level::Escalated),
            Level::Escalated => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Neighbour => "NEIGHBOUR",
            Level::Unit => "UNIT",
            Level::Branch => "BRANCH",
            Level::Escalated => "ESCALATED",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The response-time class a case is held to. `Ord`: more pressing classes are greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyClass {
    Routine,
    Complex,
    Urgent,
    Emergency,
}

impl PolicyClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyClass::Routine => "routine",
            PolicyClass::Complex => "complex",
            PolicyClass::Urgent => "urgent",
            PolicyClass::Emergency => "emergency",
        }
    }

    /// Urgent and emergency cases take the fast channel (急事急办) straight to `ESCALATED`.
    pub fn is_pressing(self) -> bool {
        self >= PolicyClass::Urgent
    }
}

/// Urgency a reporter may claim on top of the category's default ("someone is trapped in
/// the lift"). It can only raise the class, never lower it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Normal,
    Urgent,
    Emergency,
}

impl Urgency {
    pub fn as_class(self) -> Option<PolicyClass> {
        match self {
            Urgency::Normal => None,
            Urgency::Urgent => Some(PolicyClass::Urgent),
            Urgency::Emergency => Some(PolicyClass::Emergency),
        }
    }
}

/// The parties of the five-party responsibility list (五方责任清单) and the compound's own
/// bodies: who is responsible for a category at a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// Registered in-service party members, party-member households (在职党员, 党员中心户).
    PartyMember,
    /// Building steward or party group leader (楼栋长, 党小组长).
    BuildingSteward,
    /// The compound party branch (小区党支部).
    PartyBranch,
    /// The owners' committee (业委会).
    OwnersCommittee,
    /// The property company (物业).
    PropertyCompany,
    /// The community (社区).
    Community,
    /// The street (街道).
    Street,
    /// A district functional department (区职能部门), at `ESCALATED`.
    Department,
}

impl Party {
    pub fn as_str(&self) -> &'static str {
        match self {
            Party::PartyMember => "party_member",
            Party::BuildingSteward => "building_steward",
            Party::PartyBranch => "party_branch",
            Party::OwnersCommittee => "owners_committee",
            Party::PropertyCompany => "property_company",
            Party::Community => "community",
            Party::Street => "street",
            Party::Department => "department",
        }
    }
}

/// Which party owns a category at one rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub level: Level,
    pub party: Party,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub code: CategoryCode,
    /// Chinese name, as residents and grid workers know it.
    pub name_zh: String,
    pub name_en: String,
    /// Where triage starts a case of this category when it is not pressing.
    pub starts_at: Level,
    /// Default response-time class.
    pub policy: PolicyClass,
    /// Free text naming the usual owner, shown to dispatchers.
    #[serde(default)]
    pub usual_owner: String,
    /// The five-party list for this category: the party responsible at each rung.
    /// Routing prefers a roster line of that party (see `crate::routing`).
    #[serde(default)]
    pub owners: Vec<Owner>,
}

impl Category {
    /// The party responsible at `level`, if the list names one.
    pub fn owner_at(&self, level: Level) -> Option<Party> {
        self.owners
            .iter()
            .find(|o| o.level == level)
            .map(|o| o.party)
    }
}

/// The catalogue of one district, keyed by code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub categories: BTreeMap<CategoryCode, Category>,
}

impl Catalogue {
    pub fn get(&self, code: &CategoryCode) -> Option<&Category> {
        self.categories.get(code)
    }
}
