//! Tests of the pure case domain: fixtures, the transition tables, triage, district data,
//! the stored JSON form of events, and property tests of the DESIGN §2 invariants.
//!
//! One test binary; its modules live in `tests/domain/`.

#[path = "domain/district.rs"]
mod district;
#[path = "domain/events.rs"]
mod events;
#[path = "domain/fixtures.rs"]
mod fixtures;
#[path = "domain/properties.rs"]
mod properties;
#[path = "domain/sla.rs"]
mod sla;
#[path = "domain/transitions.rs"]
mod transitions;
#[path = "domain/triage.rs"]
mod triage;
