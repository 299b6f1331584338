//! TLS for both ports, from the `[tls]` files: the gRPC port's material goes to tonic
//! ([`whistle_api::GrpcTls`]); the HTTP port (/healthz, /readyz, /metrics, the dashboards)
//! accepts through [`TlsListener`], an `axum::serve::Listener` over the bound
//! `TcpListener`. rustls with the ring provider, the one provider in the tree (STACK.md).
//! Every file is read and parsed at start, so a missing, unreadable or malformed one is a
//! start-up error naming it.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto::ring};
use tokio_rustls::server::TlsStream;
use whistle_api::GrpcTls;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured files, loaded.
#[derive(Clone)]
pub struct TlsSettings {
    pub grpc: GrpcTls,
    pub http: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM file, the error naming it (also the CLI's client-side files).
pub(crate) fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading TLS {what} file {}", path.display()))
}

/// The certificates of a PEM file: at least one, well-formed, or an error naming `path`
/// (tonic would only fail later, at the handshake, without naming the file).
pub(crate) fn certs(what: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS {what} file {}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "TLS {what} file {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(certs)
}

impl TlsSettings {
    /// Reads and checks `cert` (PEM chain), `key` (PEM) and the optional `client_ca`.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsSettings> {
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        let chain = certs("certificate", cert, &cert_pem)?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
            format!("parsing TLS key file {}: no PEM private key", key.display())
        })?;
        let client_ca = match client_ca {
            Some(path) => {
                let pem = read("client CA", path)?;
                let mut roots = RootCertStore::empty();
                for c in certs("client CA", path, &pem)? {
                    roots
                        .add(c)
                        .with_context(|| format!("TLS client CA file {}", path.display()))?;
                }
                Some((pem, roots))
            }
            None => None,
        };
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &client_ca {
            // As on the gRPC port: a presented certificate must verify, none is fine.
            Some((_, roots)) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider)
                    .allow_unauthenticated()
                    .build()
                    .context("TLS client CA")?,
            ),
            None => builder.with_no_client_auth(),
        };
        let mut http = builder.with_single_cert(chain, private).with_context(|| {
            format!(
                "TLS key file {} does not fit certificate file {}",
                key.display(),
                cert.display()
            )
        })?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            grpc: GrpcTls {
                cert_pem,
                key_pem,
                client_ca_pem: client_ca.map(|(pem, _)| pem),
            },
            http: Arc::new(http),
        })
    }
}

/// The `[tls]` paths as configured (for `Settings::resolve`).
pub fn load_paths(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsSettings>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings::load(&cert, &key, client_ca.as_deref())?)),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => bail!("[tls] client_ca needs cert and key"),
        _ => bail!("[tls] needs both cert and key"),
    }
}

/// A TLS-accepting wrapper of the HTTP port's listener. Handshakes run concurrently (a
/// slow client does not hold up the others) and a failed or timed-out handshake is
/// logged and skipped, never fatal.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, peer)),
                                Ok(Err(error)) => {
                                    tracing::debug!(%peer, %error, "HTTP TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "HTTP TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(error) => {
                        // As axum's own listener: per-connection errors are skipped; others
                        // (too many open files) are waited out.
                        tracing::warn!(%error, "HTTP accept failed");
                        if !matches!(
                            error.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                        ) {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
