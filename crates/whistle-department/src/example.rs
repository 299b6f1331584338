//! The example department service: signs for, reports on site and resolves every
//! case dispatched to its department, over whistle's gRPC `DepartmentService`
//! with its own token. It receives its work either from NATS (a durable consumer,
//! [`run_nats`]) or, without NATS, from `WatchAssignments` ([`run_grpc`]); the
//! handler ([`ExampleHandler`]) is the same.
//!
//! Idempotent end to end: each gRPC command carries the idempotency key
//! `<event id>-<step>`, so a redelivered event replays the original results
//! instead of acting twice, even across restarts.
//!
//! TLS ([`GrpcTlsFiles`], [`ExampleHandler::with_tls`]): an `https://` endpoint or a CA
//! file connects over TLS, verifying whistle against that CA (tonic is built without
//! system roots, so `https://` needs one); a client certificate and key make it mutual
//! TLS, which whistle requires of department accounts when it has a client CA. The files
//! are read and checked when the handler is built, each error naming its file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use whistle_domain::{EventBody, Handler as CaseHandler};
use whistle_proto::v1 as pb;
use whistle_proto::v1::department_service_client::DepartmentServiceClient;

use crate::consumer::{ConsumerConfig, DepartmentConsumer, HandleError, Handler};
use crate::delivery::Delivery;

/// The example service's errors.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// The gRPC endpoint, token or TLS options are malformed.
    #[error("{0}")]
    Config(String),
    /// A TLS file could not be read or parsed.
    #[error("TLS {what} file {}: {reason}", .path.display())]
    TlsFile {
        /// Which file: `CA`, `client certificate` or `client key`.
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// TLS for the gRPC connection to whistle, as PEM files.
#[derive(Debug, Clone, Default)]
pub struct GrpcTlsFiles {
    /// CA that signed whistle's server certificate; implies TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate (mutual TLS): its CN or a DNS SAN is the department id.
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name whistle's certificate must carry (default: the endpoint's host).
    pub domain: Option<String>,
}

fn read_tls(what: &'static str, path: &Path) -> Result<Vec<u8>, ExampleError> {
    std::fs::read(path).map_err(|e| ExampleError::TlsFile {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A light shape check, so a swapped or empty file is named now; tonic parses the PEM
/// when the endpoint is configured (no PEM parser of our own in this crate).
fn check_pem(what: &'static str, path: &Path, pem: &[u8], label: &str) -> Result<(), ExampleError> {
    let text = String::from_utf8_lossy(pem);
    let found = text.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if found {
        Ok(())
    } else {
        Err(ExampleError::TlsFile {
            what,
            path: path.to_owned(),
            reason: format!("holds no PEM {label}"),
        })
    }
}

/// An error and its sources, `: `-separated (tonic's transport error alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl GrpcTlsFiles {
    /// `endpoint` for `server`, with TLS when the URL is `https://` or a CA is given (an
    /// `http://` URL is then switched to `https://`: tonic speaks TLS to https URIs only).
    fn endpoint(&self, server: &str) -> Result<Endpoint, ExampleError> {
        let https = server
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ExampleError::Config(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        let Some(ca) = &self.ca else {
            if https {
                return Err(ExampleError::Config(format!(
                    "--server {server:?} uses TLS: give --tls-ca FILE (WHISTLE_TLS_CA), the PEM \
                     CA that signed whistle's certificate; this build has no system root \
                     certificates"
                )));
            }
            if identity.is_some() {
                return Err(ExampleError::Config(
                    "--tls-cert/--tls-key need TLS: give --tls-ca FILE (WHISTLE_TLS_CA)".into(),
                ));
            }
            return Endpoint::from_shared(server.to_owned())
                .map_err(|e| ExampleError::Config(format!("--server {server:?}: {e}")));
        };
        let url = match server.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => server.to_owned(),
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|e| ExampleError::Config(format!("--server {server:?}: {e}")))?;
        let ca_pem = read_tls("CA", ca)?;
        check_pem("CA", ca, &ca_pem, "CERTIFICATE")?;
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        if let Some(domain) = &self.domain {
            cfg = cfg.domain_name(domain.clone());
        }
        // Configured in two steps so that a file tonic cannot parse is the one named: the
        // CA alone first, then with the client identity.
        let ca_only =
            endpoint
                .clone()
                .tls_config(cfg.clone())
                .map_err(|e| ExampleError::TlsFile {
                    what: "CA",
                    path: ca.clone(),
                    reason: chain(&e),
                })?;
        let Some((cert, key)) = identity else {
            return Ok(ca_only);
        };
        let cert_pem = read_tls("client certificate", cert)?;
        check_pem("client certificate", cert, &cert_pem, "CERTIFICATE")?;
        let key_pem = read_tls("client key", key)?;
        check_pem("client key", key, &key_pem, "PRIVATE KEY")?;
        endpoint
            .tls_config(cfg.identity(Identity::from_pem(cert_pem, key_pem)))
            .map_err(|e| ExampleError::TlsFile {
                what: "client certificate",
                path: cert.clone(),
                reason: format!("with key {}: {}", key.display(), chain(&e)),
            })
    }
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
    /// A handler calling `server` (`http://host:50051`) with `token`, in plain text.
    /// Connects lazily.
    pub fn new(
        server: &str,
        token: &str,
        department: &str,
    ) -> Result<ExampleHandler, ExampleError> {
        Self::with_tls(server, token, department, &GrpcTlsFiles::default())
    }

    /// A handler calling `server` with `token`, over TLS as `tls` says (see the module
    /// docs). The files are read now; connects lazily.
    pub fn with_tls(
        server: &str,
        token: &str,
        department: &str,
        tls: &GrpcTlsFiles,
    ) -> Result<ExampleHandler, ExampleError> {
        let channel = tls
            .endpoint(server)?
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
