//! whistle-projections: the read models supervisors and lists read.
//!
//! * [`rows`] — pure: a folded case → its case-view row (the command pipeline writes it
//!   in the same transaction as the case's events: read-your-writes for `GetCase` and
//!   lists) and its SLA rows (clocks, holds).
//! * [`projector`] — the asynchronous SLA projection: follows the log, replaces the
//!   touched cases' rows and advances its checkpoint in one transaction.
//! * [`summary`] — pure: SLA summaries (three rates, per-milestone figures, percentiles,
//!   funnel, trend, at-risk and breached lists) over the fact rows of a window.
//! * [`rebuild`] — empty a read model and project the log again from zero.
//!
//! Invariants: every row is a function of the log alone (no clock, no configuration),
//! so a rebuild equals the live tables; this crate computes rows, whistle-store writes
//! them (nothing but the store writes SQL).

pub mod projector;
pub mod rebuild;
pub mod rows;
pub mod summary;

pub use projector::{
    ProjectionError, Projector, ProjectorConfig, ProjectorStatus, SLA_PROJECTION, catch_up,
};
pub use rebuild::{Projection, project_case_views, rebuild};
pub use rows::{EncodeError, case_view_row, sla_rows};
pub use summary::{Dimension, Group, MilestoneStats, Rates, TrendBucket};
