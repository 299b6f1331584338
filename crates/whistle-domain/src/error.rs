//! Why a command was refused. The variants are what callers branch on: the API maps each
//! to one gRPC status code.

/// A refused command. Nothing is appended when `decide` returns one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command itself is malformed; `field` names the offending input field as the
    /// public API spells it.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The command addresses a case that was never reported.
    #[error("case not found")]
    NotFound,
    /// A report for a case id that already exists.
    #[error("case already exists")]
    AlreadyExists,
    /// The actor may not do this to this case (not its handler, wrong role for the rung).
    #[error("not permitted: {0}")]
    Forbidden(String),
    /// The case's state does not allow the command (e.g. resolving an unacknowledged case,
    /// anything but reopen on a closed case).
    #[error("{command} not allowed while the case is {state}: {reason}")]
    Transition {
        command: &'static str,
        state: String,
        reason: String,
    },
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
