//! Principals and roles as values. Authentication happens at the edge; the domain only
//! sees the resulting [`Actor`] and uses it for rules such as "only the handler who holds
//! a case may resolve it".

use crate::ids::{DepartmentId, GridId, OrgId, PrincipalId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a principal is allowed to be in the escalation ladder (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A resident using an app; reports and confirms their own cases.
    Resident,
    /// A grid worker (网格员): reports on behalf of residents in their grid.
    GridWorker,
    /// A handler at a rung below `ESCALATED`: party-member household, building steward,
    /// party branch / property company.
    Handler,
    /// An account of a district functional department; acts at `ESCALATED`.
    Department,
    /// A supervisor of a community, street or district: dispatches and oversees.
    Supervisor,
    /// Administers the district's data and principals.
    Admin,
    /// whistle itself (deadlines, routing); never held by a token.
    System,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Resident,
        Role::GridWorker,
        Role::Handler,
        Role::Department,
        Role::Supervisor,
        Role::Admin,
        Role::System,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::GridWorker => "grid_worker",
            Role::Handler => "handler",
            Role::Department => "department",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of the district a grid worker, handler or supervisor works in (DESIGN §6).
/// Residents see their own reports and departments their own assignments whatever the
/// scope; admins and the system see everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "kind", content = "ids", rename_all = "snake_case")]
pub enum Scope {
    /// The whole district (district-level supervisors, the duty officer).
    #[default]
    District,
    /// Everything located at or below one org node: a street or community (supervisors),
    /// a compound, building or unit (handlers).
    Org(OrgId),
    /// Cases located in these grids (grid workers).
    Grids(Vec<GridId>),
}

/// Who is acting, as established by authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub principal: PrincipalId,
    pub role: Role,
    /// Set for department accounts: the department the principal signs for. A department
    /// account without one cannot hold a case.
    pub department: Option<DepartmentId>,
    /// Where a grid worker, handler or supervisor may see and act. Not stored with events
    /// (only principal and role are); `decide` checks it.
    #[serde(default)]
    pub scope: Scope,
}

impl Actor {
    pub fn new(principal: impl Into<String>, role: Role) -> Self {
        Actor {
            principal: PrincipalId::new(principal),
            role,
            department: None,
            scope: Scope::District,
        }
    }

    pub fn department(principal: impl Into<String>, department: impl Into<String>) -> Self {
        Actor {
            principal: PrincipalId::new(principal),
            role: Role::Department,
            department: Some(DepartmentId::new(department)),
            scope: Scope::District,
        }
    }

    /// The same actor narrowed to `scope`.
    pub fn scoped(self, scope: Scope) -> Self {
        Actor { scope, ..self }
    }

    /// The system actor used for automatic commands (deadlines, routing).
    pub fn system() -> Self {
        Actor::new("system", Role::System)
    }
}
