//! One place that decides which gRPC status every failure becomes. Precise statuses are
//! part of the contract: clients branch on them (retry on `ABORTED`/`UNAVAILABLE`, fix the
//! named field on `INVALID_ARGUMENT`, give up on `FAILED_PRECONDITION`).

use tonic::{Code, Status};
use whistle_domain::DomainError;
use whistle_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed request field, found before the domain saw it.
    #[error("{field}: {reason}")]
    BadRequest { field: &'static str, reason: String },
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller decided on a version the case has moved past.
    #[error("expected version {expected}, the case is at version {actual}; reload and retry")]
    StaleVersion { expected: u64, actual: u64 },
    #[error("{0}")]
    PermissionDenied(String),
    /// Something other than a case that the request names and that does not exist
    /// (e.g. a token id).
    #[error("{0}")]
    NotFound(String),
    /// A stored event that no longer decodes: a bug or tampering, never the caller's fault.
    #[error("corrupt event {0}")]
    Corrupt(String),
}

impl ApiError {
    pub fn bad(field: &'static str, reason: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field,
            reason: reason.into(),
        }
    }
}

/// Status metadata key naming the offending field of an `INVALID_ARGUMENT`, for clients
/// that want it without parsing the message.
pub const FIELD_METADATA: &str = "whistle-field";

fn invalid(field: &str, message: String) -> Status {
    let mut status = Status::invalid_argument(message);
    if let Ok(v) = field.parse() {
        status.metadata_mut().insert(FIELD_METADATA, v);
    }
    status
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::BadRequest { field, .. } => invalid(field, message),
            ApiError::Domain(d) => match d {
                DomainError::Invalid { field, .. } => invalid(field, message),
                DomainError::NotFound => Status::not_found(message),
                DomainError::AlreadyExists => Status::already_exists(message),
                DomainError::Forbidden(_) => {
                    tracing::warn!(reason = %message, "permission denied");
                    crate::metrics::denied("not_holder");
                    Status::permission_denied(message)
                }
                DomainError::Transition { .. } => Status::failed_precondition(message),
            },
            ApiError::Store(s) => match s {
                StoreError::Conflict { .. } => {
                    Status::aborted(format!("{message}; reload and retry"))
                }
                StoreError::IdempotencyMismatch { .. } => invalid(
                    "idempotency_key",
                    "idempotency_key: already used for a different request".into(),
                ),
                StoreError::Unavailable(_) | StoreError::Closed => {
                    tracing::warn!(error = %message, "store unavailable");
                    Status::unavailable(
                        "the case store is unavailable; retry with the same idempotency_key",
                    )
                }
                StoreError::Invalid(_) | StoreError::Backend(_) | StoreError::Corrupt(_) => {
                    tracing::error!(error = %message, "store failure");
                    Status::internal("internal store error")
                }
            },
            ApiError::StaleVersion { .. } => Status::aborted(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::Corrupt(_) => {
                tracing::error!(error = %message, "corrupt event");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}
