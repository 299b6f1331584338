//! A district's data: organisation tree, grids, category catalogue, departments and their
//! pairings with compounds (结对包建). Districts describe it in a file ([`DistrictSpec`],
//! deserialised at the edge); [`District::build`] validates it into values the rest of the
//! domain can trust.

use crate::catalogue::{Catalogue, Category};
use crate::ids::{CategoryCode, DepartmentId, GridId, OrgId, PrincipalId, is_valid_code};
use crate::org::{Grid, OrgKind, OrgNode, OrgTree};
use crate::routing::RosterEntry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A district functional department that must "report" when the compound blows the whistle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub id: DepartmentId,
    pub name: String,
    /// Categories this department usually owns at `ESCALATED` (five-party list).
    #[serde(default)]
    pub categories: Vec<CategoryCode>,
    /// Compounds this department is paired with (结对包建).
    #[serde(default)]
    pub paired_compounds: Vec<OrgId>,
}

/// One organisation node as written in a district file. A compound may give `buildings`
/// and `units_per_building` instead of listing every building and unit; they are expanded
/// to ids `<compound>-b<N>` and `<compound>-b<N>-u<M>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNodeSpec {
    pub id: OrgId,
    pub kind: OrgKind,
    pub name: String,
    #[serde(default)]
    pub parent: Option<OrgId>,
    #[serde(default)]
    pub buildings: Option<u16>,
    #[serde(default)]
    pub units_per_building: Option<u8>,
}

/// The district file, as written by operators (TOML at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictSpec {
    pub id: String,
    pub name: String,
    pub org: Vec<OrgNodeSpec>,
    #[serde(default)]
    pub grids: Vec<Grid>,
    pub categories: Vec<Category>,
    #[serde(default)]
    pub departments: Vec<Department>,
    /// Who handles each rung where (routing below `ESCALATED`).
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// The district officer who takes over a case no department signs for in time (兜底).
    #[serde(default)]
    pub takeover_principal: Option<PrincipalId>,
}

/// A validated district.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct District {
    pub id: String,
    pub name: String,
    pub org: OrgTree,
    pub catalogue: Catalogue,
    pub departments: BTreeMap<DepartmentId, Department>,
    pub roster: Vec<RosterEntry>,
    pub takeover_principal: Option<PrincipalId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistrictError {
    #[error("invalid code {0:?}: use 1-64 ASCII letters, digits, '-' or '_'")]
    InvalidCode(String),
    #[error("duplicate id {0}")]
    Duplicate(String),
    #[error("node {node}: parent {parent} does not exist")]
    MissingParent { node: String, parent: String },
    #[error("node {node}: a {kind} cannot be placed under a {parent_kind}")]
    BadNesting {
        node: String,
        kind: &'static str,
        parent_kind: &'static str,
    },
    #[error("there must be exactly one district root node, found {0}")]
    Roots(usize),
    #[error("grid {grid} covers unknown node {node}")]
    UnknownGridNode { grid: String, node: String },
    #[error("department {department} names unknown {what} {id}")]
    UnknownReference {
        department: String,
        what: &'static str,
        id: String,
    },
    #[error("the catalogue is empty")]
    EmptyCatalogue,
    #[error("roster entry for {principal} at {level}: {reason}")]
    BadRoster {
        principal: String,
        level: &'static str,
        reason: String,
    },
}

impl District {
    pub fn build(spec: DistrictSpec) -> Result<District, DistrictError> {
        if !is_valid_code(&spec.id) {
            return Err(DistrictError::InvalidCode(spec.id));
        }
        let mut nodes: BTreeMap<OrgId, OrgNode> = BTreeMap::new();
        let mut insert = |node: OrgNode| -> Result<(), DistrictError> {
            if !is_valid_code(node.id.as_str()) {
                return Err(DistrictError::InvalidCode(node.id.0));
            }
            if nodes.contains_key(&node.id) {
                return Err(DistrictError::Duplicate(node.id.0));
            }
            nodes.insert(node.id.clone(), node);
            Ok(())
        };
        for n in &spec.org {
            insert(OrgNode {
                id: n.id.clone(),
                kind: n.kind,
                name: n.name.clone(),
                parent: n.parent.clone(),
            })?;
            if let (OrgKind::Compound, Some(buildings)) = (n.kind, n.buildings) {
                for b in 1..=buildings {
                    let bid = OrgId(format!("{}-b{b}", n.id));
                    insert(OrgNode {
                        id: bid.clone(),
                        kind: OrgKind::Building,
                        name: format!("{} {b}号楼", n.name),
                        parent: Some(n.id.clone()),
                    })?;
                    for u in 1..=n.units_per_building.unwrap_or(1) {
                        insert(OrgNode {
                            id: OrgId(format!("{bid}-u{u}")),
                            kind: OrgKind::Unit,
                            name: format!("{} {b}号楼{u}单元", n.name),
                            parent: Some(bid.clone()),
                        })?;
                    }
                }
            }
        }
        let roots = nodes.values().filter(|n| n.parent.is_none()).count();
        for node in nodes.values() {
            match &node.parent {
                None if node.kind != OrgKind::District => {
                    return Err(DistrictError::MissingParent {
                        node: node.id.0.clone(),
                        parent: "(none)".into(),
                    });
                }
                None => {}
                Some(p) => {
                    let parent = nodes.get(p).ok_or_else(|| DistrictError::MissingParent {
                        node: node.id.0.clone(),
                        parent: p.0.clone(),
                    })?;
                    if parent.kind.child() != Some(node.kind) {
                        return Err(DistrictError::BadNesting {
                            node: node.id.0.clone(),
                            kind: node.kind.as_str(),
                            parent_kind: parent.kind.as_str(),
                        });
                    }
                }
            }
        }
        if roots != 1 {
            return Err(DistrictError::Roots(roots));
        }

        let mut grids = BTreeMap::new();
        let mut grid_of_node: BTreeMap<OrgId, GridId> = BTreeMap::new();
        for g in spec.grids {
            if !is_valid_code(g.id.as_str()) {
                return Err(DistrictError::InvalidCode(g.id.0));
            }
            for n in &g.covers {
                if !nodes.contains_key(n) {
                    return Err(DistrictError::UnknownGridNode {
                        grid: g.id.0.clone(),
                        node: n.0.clone(),
                    });
                }
                // A node covered by several grids keeps the first one listed; overlays
                // such as building micro-grids are listed on the building itself.
                grid_of_node
                    .entry(n.clone())
                    .or_insert_with(|| g.id.clone());
            }
            if grids.insert(g.id.clone(), g.clone()).is_some() {
                return Err(DistrictError::Duplicate(g.id.0));
            }
        }

        if spec.categories.is_empty() {
            return Err(DistrictError::EmptyCatalogue);
        }
        let mut catalogue = Catalogue::default();
        for c in spec.categories {
            if !is_valid_code(c.code.as_str()) {
                return Err(DistrictError::InvalidCode(c.code.0));
            }
            if catalogue.categories.contains_key(&c.code) {
                return Err(DistrictError::Duplicate(c.code.0));
            }
            catalogue.categories.insert(c.code.clone(), c);
        }

        let mut departments = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for d in spec.departments {
            if !is_valid_code(d.id.as_str()) {
                return Err(DistrictError::InvalidCode(d.id.0));
            }
            if !seen.insert(d.id.clone()) {
                return Err(DistrictError::Duplicate(d.id.0));
            }
            for c in &d.categories {
                if !catalogue.categories.contains_key(c) {
                    return Err(DistrictError::UnknownReference {
                        department: d.id.0.clone(),
                        what: "category",
                        id: c.0.clone(),
                    });
                }
            }
            for c in &d.paired_compounds {
                if nodes.get(c).map(|n| n.kind) != Some(OrgKind::Compound) {
                    return Err(DistrictError::UnknownReference {
                        department: d.id.0.clone(),
                        what: "compound",
                        id: c.0.clone(),
                    });
                }
            }
            departments.insert(d.id.clone(), d);
        }

        let district = District {
            id: spec.id,
            name: spec.name,
            roster: Vec::new(),
            takeover_principal: spec.takeover_principal,
            org: OrgTree {
                nodes,
                grids,
                grid_of_node,
            },
            catalogue,
            departments,
        };
        district.validate_roster(&spec.roster)?;
        Ok(District {
            roster: spec.roster,
            ..district
        })
    }

    /// Check roster lines against the org tree: no ESCALATED lines (departments are
    /// routed by category), known org nodes, valid principal codes.
    pub fn validate_roster(&self, roster: &[RosterEntry]) -> Result<(), DistrictError> {
        for r in roster {
            let bad = |reason: String| DistrictError::BadRoster {
                principal: r.principal.0.clone(),
                level: r.level.as_str(),
                reason,
            };
            if r.level == crate::catalogue::Level::Escalated {
                return Err(bad(
                    "ESCALATED is routed to departments, not a roster".into()
                ));
            }
            if self.org.get(&r.org).is_none() {
                return Err(bad(format!("unknown org node {}", r.org)));
            }
            if !is_valid_code(r.principal.as_str()) {
                return Err(DistrictError::InvalidCode(r.principal.0.clone()));
            }
        }
        Ok(())
    }

    /// Departments that usually own `category`, paired departments of `compound` first.
    pub fn candidate_departments(
        &self,
        category: &CategoryCode,
        compound: &OrgId,
    ) -> Vec<&Department> {
        let mut owners: Vec<&Department> = self
            .departments
            .values()
            .filter(|d| d.categories.contains(category))
            .collect();
        owners.sort_by_key(|d| !d.paired_compounds.contains(compound));
        owners
    }
}
