//! The gRPC face of whistle: tonic services generated from `proto/whistle/v1`.
//!
//! A request flows: authenticate ([`auth`]: the token, and under mutual TLS a department
//! account's client certificate, [`tls`]) → parse and bound the request into domain
//! values ([`convert`], precise `INVALID_ARGUMENT` naming the field) → load the case,
//! `decide`, append ([`pipeline`]) → map every failure to one status ([`error`]).
//! Services ([`services`]) are thin: they only translate. [`server::serve`] takes a bound
//! listener and a shutdown future (tests bind port 0).
//!
//! Invariant: this crate writes no SQL; all state changes go through the store's append.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod convert;
pub mod dashboard;
pub mod departments;
pub mod error;
pub mod jwt;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod tls;
pub mod tokens;

pub use auth::{Principal, TokenAuthenticator, hash_token};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ApiError;
pub use jwt::{JwtConfig, JwtVerifier};
pub use limits::RateLimits;
pub use live::Live;
pub use server::{AppState, serve, serve_with_tls};
pub use tls::GrpcTls;
