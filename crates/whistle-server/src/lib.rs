//! The `whistle` binary's library half: configuration, the bundled demo district, the
//! [`app::Application`] that wires store, domain data and gRPC together, and the
//! command-line client. `main.rs` only parses arguments and dispatches; end-to-end tests
//! build an `Application` in-process or start the real binary.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod rebuild;
pub mod replay;
pub mod tls;
pub mod web;
