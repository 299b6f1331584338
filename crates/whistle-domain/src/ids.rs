//! Identifiers. Each is its own type so a department id can never be passed where a
//! compound id is expected. String ids are codes chosen by the district (stable, human
//! readable in logs and NATS subjects); case ids are UUIDv7 generated at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A case: one event stream. UUIDv7 so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(pub uuid::Uuid);

impl CaseId {
    /// The event-stream name of this case in the store.
    pub fn stream_name(&self) -> String {
        format!("case-{}", self.0)
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A resident's contact details (name, phone, exact address), kept apart from the log in
/// the store's personal-data table: events carry only this reference, so the details can
/// be masked per role and erased without rewriting history (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContactId(pub uuid::Uuid);

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! code_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_id!(
    /// A node of the organisation tree (district, street, community, compound, building, unit).
    OrgId
);
code_id!(
    /// A grid (网格) overlaid on the organisation tree.
    GridId
);
code_id!(
    /// A district functional department (城管, 消防, 燃气 …).
    DepartmentId
);
code_id!(
    /// A category of the district's catalogue, e.g. `leak_from_above`.
    CategoryCode
);
code_id!(
    /// Anyone who acts: a grid worker, a handler, a department account, a supervisor,
    /// an administrator or the system itself.
    PrincipalId
);

/// Rules for district-chosen codes: short, ASCII, safe in NATS subjects and URLs.
pub fn is_valid_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
