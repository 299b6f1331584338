//! Wiring of the tonic server: shared state, the services, health and reflection, and
//! `serve`, which takes an already bound listener and a shutdown future (so tests bind
//! port 0 and the binary decides how to stop).

use crate::admin::Admin;
use crate::auth::TokenAuthenticator;
use crate::clock::Clock;
use crate::dashboard::Dashboards;
use crate::departments::Departments;
use crate::live::Live;
use crate::services::{CaseHandling, CaseQuery, Intake};
use crate::tls::GrpcTls;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use whistle_domain::{District, SlaBook};
use whistle_proto::v1::admin_service_server::AdminServiceServer;
use whistle_proto::v1::case_handling_service_server::CaseHandlingServiceServer;
use whistle_proto::v1::case_query_service_server::CaseQueryServiceServer;
use whistle_proto::v1::dashboard_service_server::DashboardServiceServer;
use whistle_proto::v1::department_service_server::DepartmentServiceServer;
use whistle_proto::v1::intake_service_server::IntakeServiceServer;
use whistle_store::Store;

/// Largest request accepted: room for a maximal description or note (4000 characters of
/// CJK = 12 KB) and ten evidence URLs, with margin so that an oversized field gets the
/// precise `INVALID_ARGUMENT` from validation rather than a transport error.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Everything a request needs. Cheap to clone: all parts are shared.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// The district in force (its roster changes through `AdminService`).
    pub district: Live<District>,
    /// SLA policies, rules and calendars in force (every version kept).
    pub sla: Live<SlaBook>,
    /// Admin stream versions this node has applied.
    pub applied: Arc<crate::admin::Applied>,
    pub auth: Arc<TokenAuthenticator>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serve gRPC on `listener` until `shutdown` completes, then drain in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_tls(listener, state, None, shutdown).await
}

/// [`serve`], over TLS only when `tls` is given (and with mutual TLS for department
/// accounts when it has a client CA: [`crate::tls`]).
pub async fn serve_with_tls(
    listener: TcpListener,
    state: AppState,
    tls: Option<&GrpcTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (close, closing) = tokio::sync::watch::channel(false);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IntakeServiceServer<Intake>>()
        .await;
    health_reporter
        .set_serving::<CaseHandlingServiceServer<CaseHandling>>()
        .await;
    health_reporter
        .set_serving::<CaseQueryServiceServer<CaseQuery>>()
        .await;
    health_reporter
        .set_serving::<DepartmentServiceServer<Departments>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<Admin>>()
        .await;
    health_reporter
        .set_serving::<DashboardServiceServer<Dashboards>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(whistle_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // STACK.md: serve_with_incoming ignores Server::tcp_nodelay; without NODELAY p99
    // latency jumps to ~45 ms (Nagle).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        // Handshake failures are logged by tonic and never end the accept loop.
        builder = builder.tls_config(tls.server_config())?;
    }
    // With a client CA, department accounts must present a certificate naming their
    // department on every service: the shared authenticator every RPC passes checks it.
    state
        .auth
        .require_department_certificates(tls.is_some_and(GrpcTls::mutual));
    builder
        .layer(crate::metrics::RpcMetricsLayer)
        .add_service(health)
        .add_service(reflection)
        .add_service(
            IntakeServiceServer::new(Intake(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            CaseHandlingServiceServer::new(CaseHandling(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            DepartmentServiceServer::new(Departments::new(state.clone(), closing.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            DashboardServiceServer::new(Dashboards::new(state.clone(), closing.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AdminServiceServer::new(Admin(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            CaseQueryServiceServer::new(CaseQuery(state))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            // Server streams (WatchAssignments) end now, or draining would wait on
            // them forever; clients resume from their cursor.
            let _ = close.send(true);
        })
        .await?;
    Ok(())
}
