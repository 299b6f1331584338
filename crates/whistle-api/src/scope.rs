//! Which cases a principal may read. Residents see the cases they reported; departments
//! see the cases that were dispatched to them (including ones they declined); grid
//! workers, handlers, supervisors and administrators see the district's cases (narrowing
//! those to their grids, rungs and areas is the next step of DESIGN §6). A case outside
//! the caller's view is answered as NOT_FOUND, so its existence does not leak.

use whistle_domain::{Actor, Case, Handler, Role};

pub fn visible_to(actor: &Actor, case: &Case) -> bool {
    match actor.role {
        Role::Admin | Role::Supervisor | Role::GridWorker | Role::Handler => true,
        Role::Resident => case.reporter == actor.principal,
        Role::Department => actor.department.as_ref().is_some_and(|d| {
            case.declined_by.contains(d)
                || case
                    .holds
                    .iter()
                    .any(|h| matches!(&h.handler, Handler::Department(x) if x == d))
        }),
        Role::System => false,
    }
}
