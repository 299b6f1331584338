//! The organisation tree (district → street → community → compound → building → unit)
//! with grids (网格) overlaid. Built and validated once from district data; after that
//! every lookup is infallible by construction of the ids it hands out.

use crate::ids::{GridId, OrgId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kind of an organisation node; `Ord` follows the nesting, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    District,
    Street,
    Community,
    Compound,
    Building,
    Unit,
}

impl OrgKind {
    /// The kind a child of this kind must have.
    pub fn child(self) -> Option<OrgKind> {
        match self {
            OrgKind::District => Some(OrgKind::Street),
            OrgKind::Street => Some(OrgKind::Community),
            OrgKind::Community => Some(OrgKind::Compound),
            OrgKind::Compound => Some(OrgKind::Building),
            OrgKind::Building => Some(OrgKind::Unit),
            OrgKind::Unit => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OrgKind::District => "district",
            OrgKind::Street => "street",
            OrgKind::Community => "community",
            OrgKind::Compound => "compound",
            OrgKind::Building => "building",
            OrgKind::Unit => "unit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNode {
    pub id: OrgId,
    pub kind: OrgKind,
    pub name: String,
    /// `None` only for the district root.
    pub parent: Option<OrgId>,
}

/// A grid covers a set of organisation nodes (and everything below them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub id: GridId,
    pub name: String,
    pub covers: Vec<OrgId>,
}

/// The validated tree. Construct with [`crate::District::build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgTree {
    pub(crate) nodes: BTreeMap<OrgId, OrgNode>,
    pub(crate) grids: BTreeMap<GridId, Grid>,
    /// Most specific grid for each covered node, precomputed at build time.
    pub(crate) grid_of_node: BTreeMap<OrgId, GridId>,
}

impl OrgTree {
    pub fn get(&self, id: &OrgId) -> Option<&OrgNode> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &OrgNode> {
        self.nodes.values()
    }

    pub fn grids(&self) -> impl Iterator<Item = &Grid> {
        self.grids.values()
    }

    pub fn grid(&self, id: &GridId) -> Option<&Grid> {
        self.grids.get(id)
    }

    /// The node and its ancestors, innermost first.
    pub fn ancestry<'a>(&'a self, id: &OrgId) -> impl Iterator<Item = &'a OrgNode> + 'a {
        let mut next = self.nodes.get(id);
        std::iter::from_fn(move || {
            let node = next?;
            next = node.parent.as_ref().and_then(|p| self.nodes.get(p));
            Some(node)
        })
    }

    /// The ancestor (or the node itself) of the given kind.
    pub fn ancestor_of_kind(&self, id: &OrgId, kind: OrgKind) -> Option<&OrgNode> {
        self.ancestry(id).find(|n| n.kind == kind)
    }

    /// True when `id` is `ancestor` or lies below it.
    pub fn is_within(&self, id: &OrgId, ancestor: &OrgId) -> bool {
        self.ancestry(id).any(|n| &n.id == ancestor)
    }

    /// The most specific grid covering the node or one of its ancestors.
    pub fn grid_of(&self, id: &OrgId) -> Option<&GridId> {
        self.ancestry(id).find_map(|n| self.grid_of_node.get(&n.id))
    }
}
