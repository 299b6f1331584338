//! Who may see (and therefore act on) which case: the row-level half of authorization
//! (DESIGN §6). Roles say which commands a principal may issue (`Command::allowed_roles`);
//! this says on which cases. A case outside the caller's view is answered as "not found"
//! everywhere, so its existence does not leak.
//!
//! * residents: the cases they reported;
//! * departments: the cases dispatched to them (held now or before, or declined);
//! * grid workers, handlers, supervisors: the cases located in their [`Scope`], plus the
//!   cases they reported or hold or held (a handler keeps seeing a case it worked on);
//! * admins and the system: everything.

use crate::case::{Case, Handler, Stage, Status};
use crate::catalogue::Level;
use crate::district::District;
use crate::ids::OrgId;
use crate::principal::{Actor, Role, Scope};

/// Whether `location` lies in the scope.
pub fn covers(scope: &Scope, location: &OrgId, district: &District) -> bool {
    match scope {
        Scope::District => true,
        Scope::Org(node) => district.org.is_within(location, node),
        Scope::Grids(grids) => district
            .org
            .grid_of(location)
            .is_some_and(|g| grids.contains(g)),
    }
}

/// Whether the actor may see the case.
pub fn visible_to(actor: &Actor, case: &Case, district: &District) -> bool {
    match actor.role {
        Role::Admin | Role::System => true,
        Role::Resident => case.reporter == actor.principal,
        Role::Department => actor.department.as_ref().is_some_and(|d| {
            case.declined_by.contains(d)
                || case
                    .holds
                    .iter()
                    .any(|h| matches!(&h.handler, Handler::Department(x) if x == d))
        }),
        Role::GridWorker | Role::Handler | Role::Supervisor => {
            case.reporter == actor.principal
                || case
                    .holds
                    .iter()
                    .any(|h| matches!(&h.handler, Handler::Principal(p) if *p == actor.principal))
                || covers(&actor.scope, &case.location, district)
        }
    }
}

/// Whether the actor may address a command to the case: it sees it, or it is a
/// department claiming an escalated case from the queue (首接负责: the first department to
/// sign for an unassigned escalated case leads, though it never held it before).
pub fn may_address(actor: &Actor, case: &Case, district: &District) -> bool {
    visible_to(actor, case, district)
        || (actor.role == Role::Department
            && case.level == Level::Escalated
            && matches!(case.status, Status::Open(Stage::Unassigned)))
}

/// Whether reporting at a location is within the reporter's scope (residents and admins
/// report anywhere).
pub fn may_report_at(actor: &Actor, location: &OrgId, district: &District) -> bool {
    match actor.role {
        Role::GridWorker | Role::Handler | Role::Supervisor => {
            covers(&actor.scope, location, district)
        }
        _ => true,
    }
}
