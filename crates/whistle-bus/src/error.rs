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
    /// The stream does not exist (deleted under the relay): the next session
    /// provisions it again and, finding it behind the checkpoint, refills it.
    #[error("stream {stream} does not exist")]
    StreamMissing {
        /// Stream name.
        stream: String,
    },
    /// The stream lost messages JetStream had acknowledged: a new message was
    /// acknowledged at or below a sequence already acknowledged (the stream was
    /// recreated underneath), or the stream's last sequence fell below it. The
    /// relay re-publishes the log from the start.
    #[error(
        "stream {stream} lost messages: sequence {found} after {acknowledged} had been acknowledged"
    )]
    StreamReset {
        /// Stream name.
        stream: String,
        /// The highest sequence acknowledged before.
        acknowledged: u64,
        /// The sequence seen now (a new message's, or the stream's last).
        found: u64,
    },
    /// The singleton lease was lost.
    #[error("relay lease lost: {0}")]
    Lease(String),
}
