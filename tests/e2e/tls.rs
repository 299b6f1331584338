//! TLS end to end (issue 6 item 3), with certificates generated per test run by rcgen: a
//! CA, a server certificate for 127.0.0.1/localhost, and client certificates for the
//! `fire` department (named by its subject CN) and the `gas` department (named by a DNS
//! SAN). Both ports serve TLS only; with a client CA, department accounts must present a
//! certificate naming their department. Transport does not depend on the store, so SQLite
//! is enough.

use crate::support::{AppOptions, Backend, Client, TestApp, plain, spawn_app_with, token};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use whistle_proto::v1 as pb;
use whistle_server::tls::TlsSettings;

/// PEM files of one generated PKI, in a temporary directory.
struct Pki {
    dir: PathBuf,
    ca: String,
    /// (certificate, key) PEM per client.
    fire: (String, String),
    gas: (String, String),
}

impl Pki {
    fn generate() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "whistle test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![eku];
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        // `fire` by its subject CN only, `gas` by a DNS SAN only.
        let fire = leaf(vec![], "fire", ExtendedKeyUsagePurpose::ClientAuth);
        let gas = leaf(
            vec!["gas".into()],
            "gas integration",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let dir = std::env::temp_dir().join(format!("whistle-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        std::fs::write(dir.join("server.pem"), &server.0).expect("write");
        std::fs::write(dir.join("server.key"), &server.1).expect("write");
        Pki {
            dir,
            ca: ca.pem(),
            fire,
            gas,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn settings(&self, mutual: bool) -> TlsSettings {
        let ca = self.path("ca.pem");
        TlsSettings::load(
            &self.path("server.pem"),
            &self.path("server.key"),
            mutual.then_some(ca.as_path()),
        )
        .expect("TLS settings")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn spawn_tls(b: &Backend, tls: TlsSettings) -> TestApp {
    spawn_app_with(
        b,
        &b.url(),
        AppOptions {
            tls: Some(tls),
            ..Default::default()
        },
    )
    .await
}

/// A gRPC client over TLS trusting the test CA, optionally presenting a client certificate.
async fn tls_client(
    app: &TestApp,
    pki: &Pki,
    principal: &str,
    identity: Option<&(String, String)>,
) -> Client {
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        cfg = cfg.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", app.addr.port()))
        .expect("uri")
        .tls_config(cfg)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS connect");
    Client::with_channel(channel, &token(principal))
}

/// `GET path` over HTTPS with tokio-rustls directly (as `principal`, if given); the raw
/// response.
async fn https_get(app: &TestApp, pki: &Pki, path: &str, principal: Option<&str>) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("CA pem"))
        .expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n",
            auth = principal
                .map(|p| format!("Authorization: Bearer {}\r\n", token(p)))
                .unwrap_or_default()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    // A peer closing without close_notify is fine here: we have what it sent.
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_serve_tls_only() {
    let b = Backend::sqlite();
    let pki = Pki::generate();
    let app = spawn_tls(&b, pki.settings(false)).await;

    let gw = tls_client(&app, &pki, "gw-lin", None).await;
    let case = gw.report_ok("fire_lane_blocked", "liuyin-huayuan").await;
    assert!(!case.is_empty());

    // Plain text gets nowhere: the connection or the first call fails.
    let plain_text = async {
        let channel = Channel::from_shared(format!("http://{}", app.addr))
            .expect("uri")
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Client::with_channel(channel, &token("gw-lin"))
            .report("fire_lane_blocked", "liuyin-huayuan", "over plain text", "")
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        plain_text.await.is_err(),
        "a plain-text client must not be served"
    );

    for (path, who) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/", None),
        ("/api/dashboard", Some("sup-dongfeng")),
    ] {
        let resp = https_get(&app, &pki, path, who).await;
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "GET {path} over TLS: {}",
            resp.lines().next().unwrap_or_default()
        );
    }
    // Plain HTTP on the TLS port is not answered.
    let mut tcp = tokio::net::TcpStream::connect(app.http)
        .await
        .expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    // The server is still serving after that failed handshake.
    assert!(
        https_get(&app, &pki, "/healthz", None)
            .await
            .starts_with("HTTP/1.1 200")
    );
    app.stop().await;
}

/// A department command on a case nobody holds: past authentication it is `NOT_FOUND`.
async fn dept_call(client: &Client) -> Code {
    let id = uuid::Uuid::now_v7().to_string();
    match client
        .departments()
        .acknowledge_case(client.req(plain(&id)))
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn watch(client: &Client) -> Code {
    let req = client.req(pb::WatchAssignmentsRequest { after_position: 0 });
    match client.departments().watch_assignments(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_accounts_must_present_their_certificate() {
    let b = Backend::sqlite();
    let pki = Pki::generate();
    let app = spawn_tls(&b, pki.settings(true)).await;

    // Certificate named by CN (fire) and by DNS SAN (gas): accepted.
    let fire = tls_client(&app, &pki, "dept-fire", Some(&pki.fire)).await;
    assert_eq!(dept_call(&fire).await, Code::NotFound);
    assert_eq!(watch(&fire).await, Code::Ok);
    let gas = tls_client(&app, &pki, "dept-gas", Some(&pki.gas)).await;
    assert_eq!(dept_call(&gas).await, Code::NotFound);

    // dept-fire's token with gas' certificate, or with none: refused.
    let fire_as_gas = tls_client(&app, &pki, "dept-fire", Some(&pki.gas)).await;
    assert_eq!(dept_call(&fire_as_gas).await, Code::Unauthenticated);
    assert_eq!(watch(&fire_as_gas).await, Code::Unauthenticated);
    let fire_bare = tls_client(&app, &pki, "dept-fire", None).await;
    assert_eq!(dept_call(&fire_bare).await, Code::Unauthenticated);
    assert_eq!(watch(&fire_bare).await, Code::Unauthenticated);

    // Client certificates are optional for everyone else.
    let gw = tls_client(&app, &pki, "gw-lin", None).await;
    gw.report_ok("fire_lane_blocked", "liuyin-huayuan").await;
    app.stop().await;
}

#[test]
fn missing_or_bad_files_are_named_at_start() {
    let pki = Pki::generate();
    let missing = pki.path("nope.pem");
    let err = TlsSettings::load(&missing, &pki.path("server.key"), None)
        .expect_err("missing cert")
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
    let err = TlsSettings::load(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&missing),
    )
    .expect_err("missing CA")
    .to_string();
    assert!(err.contains("nope.pem"), "{err}");
    // A certificate file given as the key.
    let err = format!(
        "{:#}",
        TlsSettings::load(&pki.path("server.pem"), &pki.path("server.pem"), None)
            .expect_err("not a key")
    );
    assert!(err.contains("server.pem"), "{err}");
}
