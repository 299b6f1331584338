//! The bus's errors.

/// Everything the relay and provisioning can fail with. The relay treats all
/// of them as transient: it backs off and starts again from its checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Connecting to NATS failed.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// Creating or updating the stream failed.
    #[error("provisioning: {0}")]
    Provision(String),
    /// A publish was refused or not acknowledged in time.
    #[error("publishing event {event_id} (position {position}): {reason}")]
    Publish {
        /// The event.
        event_id: uuid::Uuid,
        /// Its position.
        position: i64,
        /// What NATS said.
        reason: String,
    },
    /// The event store failed.
    #[cfg(feature = "relay")]
    #[error(transparent)]
    Store(#[from] whistle_store::StoreError),
    /// An event could not be routed.
    #[cfg(feature = "relay")]
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
    /// The singleton lease was lost.
    #[error("relay lease lost: {0}")]
    Lease(String),
}
