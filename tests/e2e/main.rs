//! End-to-end tests: the real server (in-process on port 0, or the real `whistle`
//! binary for crash tests) against real PostgreSQL (a fresh database per test) and
//! SQLite, driven over gRPC as grid workers, handlers, departments and supervisors.
//!
//! PostgreSQL tests skip with a printed notice when the server is unreachable, unless
//! `WHISTLE_REQUIRE_SERVICES=1` (CI), where they fail instead.

mod support;

mod admin;
mod bench;
mod cases;
mod crash;
mod dashboards;
mod demo;
mod departments;
mod deploy;
mod http;
mod jwt;
mod matrix;
mod privacy;
mod projections;
mod refusals;
mod scopes;
mod shutdown;
mod sla;
mod tls;
mod tokens;
mod web;
