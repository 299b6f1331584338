//! whistle-bus: whistle's side of NATS JetStream, and the in-process bus.
//!
//! * [`subject`] — the subject scheme (one subject per event:
//!   `whistle.<district>.<compound>.<department or _>.<EventType>`);
//! * [`message`] — the message headers (`Nats-Msg-Id` = event id, …);
//! * [`route`] — the routing fold (which department an event belongs to) and
//!   the one decoder of stored case events;
//! * [`follow`] — a log follower (read from a cursor, wake on commit, poll as a
//!   fallback): the in-process bus behind `WatchAssignments`;
//! * [`provision`] — the JetStream stream whistle creates at start;
//! * [`advisories`] — max-deliveries advisories captured in a stream and turned
//!   into delivery failures for the server to record;
//! * [`relay`] — the outbox relay (durable checkpoint, pipelined acks, per-case
//!   order, singleton lease);
//! * `testing` (feature `testing`) — real nats-server processes for tests.
//!
//! `follow`, `route` and `relay` need the event store and sit behind the default
//! feature `relay`; without it the crate is only the NATS contract (subjects,
//! headers, provisioning) for department-side code.
//!
//! Invariants: the relay never advances its checkpoint past an event JetStream
//! has not acknowledged; one event is published to exactly one subject; a
//! case's events enter the stream in version order. This crate writes no SQL
//! (checkpoints and leases are store methods).

pub mod advisories;
pub mod error;
#[cfg(feature = "relay")]
pub mod follow;
pub mod message;
pub mod provision;
#[cfg(feature = "relay")]
pub mod relay;
#[cfg(feature = "relay")]
pub mod route;
pub mod servers;
pub mod subject;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::BusError;
#[cfg(feature = "relay")]
pub use follow::Follower;
pub use provision::{DEFAULT_STREAM, Retention, Storage, StreamSettings, ensure_stream};
#[cfg(feature = "relay")]
pub use relay::{Relay, RelayConfig, RelayStatus};
#[cfg(feature = "relay")]
pub use route::{DecodeError, Route, RouteError, Routed, Router, decode};
pub use servers::{credentials, parse_servers, with_credentials};
