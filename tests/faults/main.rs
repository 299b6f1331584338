//! The fault-injection suite (DESIGN §7): whistle's processes, its broker and its
//! database fail under load, and afterwards nothing acknowledged is lost or doubled.
//!
//! Its own test binary (`cargo test --workspace --test faults`) so it can be run
//! alone; `cargo test --workspace` (CI) runs it too, bounded. Knobs:
//!
//! * `WHISTLE_FAULT_TRIALS` — SIGKILLs in the kill loop (default 20; the acceptance
//!   run is 100);
//! * `WHISTLE_FAULT_SEED` — the seed of the kill moments (printed by every run).
//!
//! Everything runs against real services: the real `whistle` binary, PostgreSQL (the
//! shared server, or for the restart test a private instance started from the
//! PostgreSQL binaries in a temp dir), nats-server processes of its own.

#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;

mod harness;

mod clock_jump;
mod kill_loop;
mod nats_restart;
mod nodes;
mod postgres_restart;
mod retries;
mod stream_loss;
