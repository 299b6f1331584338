//! Integration tests of the relay against real nats-server processes (spawned per
//! test by `whistle_bus::testing`) and real stores (PostgreSQL database or SQLite file
//! per test, `whistle_store::testing`). No mocks.
//!
//! Tests skip with a printed `SKIPPED (…)` line when nats-server or PostgreSQL is
//! unavailable, unless `WHISTLE_REQUIRE_SERVICES=1`, where they fail.

#[path = "bus/support.rs"]
mod support;

#[path = "bus/cluster.rs"]
mod cluster;
#[path = "bus/delivery.rs"]
mod delivery;
#[path = "bus/faults.rs"]
mod faults;
#[path = "bus/lease.rs"]
mod lease;
#[path = "bus/routing.rs"]
mod routing;
#[path = "bus/stream_loss.rs"]
mod stream_loss;
