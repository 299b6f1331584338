//! whistle-department: the department side of whistle (小区吹哨、部门报到).
//!
//! A Rust department service depends on this crate to receive the events routed to
//! its department and act on them:
//!
//! * [`consumer`] — [`DepartmentConsumer`], a durable JetStream pull consumer with
//!   explicit ack after handling, de-duplication by event id, per-case order and
//!   redelivery on failure; a [`Handler`] does the work;
//! * [`delivery`] — [`Delivery`], one event parsed from a NATS message or a gRPC
//!   `Assignment`;
//! * [`example`] — the example department service (binary
//!   `whistle-department-example`): signs for, reports on site and resolves every
//!   case dispatched to it, over gRPC (plain text, TLS or mutual TLS: [`GrpcTlsFiles`]),
//!   from NATS or from `WatchAssignments`.
//!
//! It depends only on whistle's NATS contract (`whistle-bus` without its relay),
//! the domain types and the generated gRPC client — no database driver.

pub mod consumer;
pub mod delivery;
pub mod example;

pub use consumer::{
    ConsumerConfig, ConsumerStats, DepartmentConsumer, DepartmentError, HandleError, Handler,
    inbox_prefix,
};
pub use delivery::{Delivery, DeliveryError};
pub use example::{ExampleError, ExampleHandler, GrpcTlsFiles, run_grpc, run_nats};
