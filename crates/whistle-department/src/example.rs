//! The example department service: signs for, reports on site and resolves every
//! case dispatched to its department, over whistle's gRPC `DepartmentService`
//! with its own token. It receives its work either from NATS (a durable consumer,
//! [`run_nats`]) or, without NATS, from `WatchAssignments` ([`run_grpc`]); the
//! handler ([`ExampleHandler`]) is the same.
//!
//! Idempotent end to end: each gRPC command carries the idempotency key
//! `<event id>-<step>`, so a redelivered event replays the original results
//! instead of acting twice, even across restarts.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use whistle_domain::{EventBody, Handler as CaseHandler};
use whistle_proto::v1 as pb;
use whistle_proto::v1::department_service_client::DepartmentServiceClient;

use crate::consumer::{ConsumerConfig, DepartmentConsumer, HandleError, Handler};
use crate::delivery::Delivery;

/// The example service's errors.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// The gRPC endpoint or token is malformed.
    #[error("{0}")]
    Config(String),
}

/// Acts on cases dispatched to `department` through whistle's gRPC API.
#[derive(Debug, Clone)]
pub struct ExampleHandler {
    client: DepartmentServiceClient<Channel>,
    auth: MetadataValue<Ascii>,
    department: String,
    /// Cases resolved by this handler.
    pub resolved: u64,
}

impl ExampleHandler {
    /// A handler calling `server` (`http://host:50051`) with `token`. Connects lazily.
    pub fn new(
        server: &str,
        token: &str,
        department: &str,
    ) -> Result<ExampleHandler, ExampleError> {
        let channel = Channel::from_shared(server.to_owned())
            .map_err(|e| ExampleError::Config(format!("--server {server:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| ExampleError::Config("--token is not a valid header value".into()))?;
        Ok(ExampleHandler {
            client: DepartmentServiceClient::new(channel),
            auth,
            department: department.to_owned(),
            resolved: 0,
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }

    /// Whether the event dispatches the case to this department.
    fn dispatched_to_me(&self, d: &Delivery) -> Result<bool, HandleError> {
        if !matches!(d.event_type.as_str(), "CaseAssigned" | "CaseTransferred") {
            return Ok(false);
        }
        let body = d
            .body()
            .map_err(|e| HandleError::Permanent(format!("payload of {}: {e}", d.event_id)))?;
        let to = match &body {
            EventBody::CaseAssigned { handler, .. } => handler,
            EventBody::CaseTransferred { to, .. } => to,
            _ => return Ok(false),
        };
        Ok(matches!(to, CaseHandler::Department(dep) if dep.as_str() == self.department))
    }
}

/// gRPC failures that a retry can fix are transient; the rest are permanent.
fn classify(step: &str, s: Status) -> HandleError {
    let reason = format!("{step}: {:?} {}", s.code(), s.message());
    match s.code() {
        Code::Unavailable
        | Code::Aborted
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Unknown
        | Code::Internal
        | Code::Cancelled => HandleError::Transient(reason),
        _ => HandleError::Permanent(reason),
    }
}

impl Handler for ExampleHandler {
    async fn handle(&mut self, d: &Delivery) -> Result<(), HandleError> {
        if !self.dispatched_to_me(d)? {
            return Ok(());
        }
        let case_id = d.case_id.to_string();
        let key = |step: &str| format!("{}-{step}", d.event_id);
        let plain = |step: &str| pb::CaseCommandRequest {
            case_id: case_id.clone(),
            expected_version: None,
            idempotency_key: key(step),
        };
        let mut client = self.client.clone();
        client
            .acknowledge_case(self.req(plain("ack")))
            .await
            .map_err(|s| classify("AcknowledgeCase", s))?;
        client
            .arrive_on_site(self.req(plain("site")))
            .await
            .map_err(|s| classify("ArriveOnSite", s))?;
        client
            .resolve_case(self.req(pb::ResolveCaseRequest {
                case_id: case_id.clone(),
                expected_version: None,
                idempotency_key: key("resolve"),
                summary: format!("handled by the {} duty desk", self.department),
                evidence: Vec::new(),
            }))
            .await
            .map_err(|s| classify("ResolveCase", s))?;
        self.resolved += 1;
        tracing::info!(case_id = %case_id, event_id = %d.event_id, department = %self.department, "case signed for, on site, resolved");
        Ok(())
    }
}

/// Consumes the department's NATS subjects until `shutdown`, retrying the
/// connection (and waiting for whistle to provision the stream) with backoff.
pub async fn run_nats(
    cfg: ConsumerConfig,
    handler: &mut ExampleHandler,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    loop {
        let connected = tokio::select! {
            c = DepartmentConsumer::connect(cfg.clone()) => c,
            _ = &mut shutdown => return,
        };
        match connected {
            Ok(mut consumer) => {
                backoff = Duration::from_millis(200);
                match consumer.run(handler, &mut shutdown).await {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(%error, "consumer failed; reconnecting"),
                }
            }
            Err(error) => {
                tracing::info!(%error, retry_in_ms = backoff.as_millis() as u64, "waiting for NATS and the whistle stream")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Follows `WatchAssignments` from `after` until `shutdown`: reconnects from the last
/// handled position; a transient handler failure is retried in place (the stream is
/// ordered), a permanent one logged and skipped. Returns the last handled position.
pub async fn run_grpc(
    handler: &mut ExampleHandler,
    mut after: i64,
    shutdown: impl Future<Output = ()>,
) -> i64 {
    use tokio_stream::StreamExt;
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut client = handler.client.clone();
        let opened = tokio::select! {
            r = client.watch_assignments(handler.req(pb::WatchAssignmentsRequest { after_position: after })) => r,
            _ = &mut shutdown => return after,
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    let next = tokio::select! {
                        n = stream.next() => n,
                        _ = &mut shutdown => return after,
                    };
                    let Some(Ok(a)) = next else { break };
                    let d = match Delivery::from_assignment(&a) {
                        Ok(d) => d,
                        Err(error) => {
                            tracing::error!(%error, position = a.position, "malformed assignment; skipping");
                            after = a.position;
                            continue;
                        }
                    };
                    let mut attempt = 0u32;
                    loop {
                        match handler.handle(&d).await {
                            Ok(()) => break,
                            Err(HandleError::Permanent(reason)) => {
                                tracing::warn!(event_id = %d.event_id, %reason, "handler failed permanently; skipping");
                                break;
                            }
                            Err(HandleError::Transient(reason)) => {
                                attempt += 1;
                                tracing::info!(event_id = %d.event_id, attempt, %reason, "handler failed; retrying");
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(200) * attempt.min(25)) => {}
                                    _ = &mut shutdown => return after,
                                }
                            }
                        }
                    }
                    after = d.position;
                    backoff = Duration::from_millis(200);
                }
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), message = status.message(), "WatchAssignments unavailable; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return after,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
