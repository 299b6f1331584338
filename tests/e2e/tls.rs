//! TLS end to end (issue 6 item 3), with certificates generated per test run by rcgen: a
//! CA, a server certificate for 127.0.0.1/localhost, and client certificates for the
//! `fire` department (named by its subject CN) and the `gas` department (named by a DNS
//! SAN). Both ports serve TLS only; with a client CA, department accounts must present a
//! certificate naming their department, on every service. whistle's own clients connect
//! too: the `whistle case` CLI (the real binary) and the example department service
//! (in-process, over mutual TLS). Transport does not depend on the store, so SQLite is
//! enough.

use crate::support::{
    AppOptions, Backend, Client, TestApp, department, plain, spawn_app_with, token,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use whistle_department::{ExampleError, ExampleHandler, GrpcTlsFiles, run_grpc};
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
        // Client identities as files too, for the CLI and the example department.
        for (name, (cert, key)) in [("fire", &fire), ("gas", &gas)] {
            std::fs::write(dir.join(format!("{name}.pem")), cert).expect("write");
            std::fs::write(dir.join(format!("{name}.key")), key).expect("write");
        }
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

/// A department token on `CaseQueryService` is tied to its certificate just as on
/// `DepartmentService`: the check is in the authentication every RPC passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_certificates_are_checked_on_every_service() {
    let b = Backend::sqlite();
    let pki = Pki::generate();
    let app = spawn_tls(&b, pki.settings(true)).await;
    // Routing dispatches a fire hazard here to the fire brigade: dept-fire may read it.
    let gw = tls_client(&app, &pki, "gw-lin", None).await;
    let case_id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;

    let fire = tls_client(&app, &pki, "dept-fire", Some(&pki.fire)).await;
    let view = fire.get(&case_id).await.expect("its own certificate");
    assert_eq!(view.handler, department("fire"));
    let bare = tls_client(&app, &pki, "dept-fire", None).await;
    let e = bare.get(&case_id).await.expect_err("no certificate");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let as_gas = tls_client(&app, &pki, "dept-fire", Some(&pki.gas)).await;
    let e = as_gas.get(&case_id).await.expect_err("gas' certificate");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // The handling service too (before any scope check).
    let e = as_gas
        .handling()
        .acknowledge_case(as_gas.req(plain(&case_id)))
        .await
        .expect_err("gas' certificate");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Everyone else is unaffected: no certificate needed.
    assert_eq!(
        gw.get(&case_id).await.expect("grid worker").case_id,
        case_id
    );
    app.stop().await;
}

/// The real `whistle` binary with `args`; (success, stdout, stderr).
async fn whistle(args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"));
    cmd.args(&args);
    // Only what the test sets: no TLS or token settings from the caller's environment.
    for var in [
        "WHISTLE_SERVER",
        "WHISTLE_TOKEN",
        "WHISTLE_TLS_CA",
        "WHISTLE_TLS_CLIENT_CERT",
        "WHISTLE_TLS_CLIENT_KEY",
        "WHISTLE_TLS_DOMAIN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run whistle");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_over_tls_with_its_ca_and_client_certificate() {
    let b = Backend::sqlite();
    let pki = Pki::generate();
    let app = spawn_tls(&b, pki.settings(true)).await;
    let https = format!("https://127.0.0.1:{}", app.addr.port());
    let ca = pki.path("ca.pem").display().to_string();

    // https:// with --tls-ca.
    let (ok, out, err) = whistle(
        strings(&[
            "case",
            "report",
            "--category",
            "fire_hazard",
            "--location",
            "hongqi-jiayuan-b2",
            "--description",
            "smoke from the bike shed",
            "--server",
            &https,
            "--tls-ca",
            &ca,
            "--token",
            &token("gw-lin"),
        ]),
        vec![],
    )
    .await;
    assert!(ok, "report over TLS: {out}{err}");
    let case_id = out
        .split_whitespace()
        .skip_while(|w| *w != "case")
        .nth(1)
        .expect("reported: case <id>")
        .to_string();
    uuid::Uuid::parse_str(&case_id).expect("a case id");

    // An http:// URL with the CA from the environment: the CA implies TLS.
    let (ok, out, err) = whistle(
        strings(&["case", "show", &case_id, "--server"])
            .into_iter()
            .chain([format!("http://127.0.0.1:{}", app.addr.port())])
            .collect(),
        vec![
            ("WHISTLE_TLS_CA", ca.clone()),
            ("WHISTLE_TOKEN", token("gw-lin")),
        ],
    )
    .await;
    assert!(ok, "show over TLS: {out}{err}");
    assert!(out.contains(&case_id), "{out}");

    // A department account with its client certificate (flags), and without.
    let fire_show = |identity: bool| {
        let mut args = strings(&[
            "case", "show", &case_id, "--server", &https, "--tls-ca", &ca,
        ]);
        args.extend(["--token".into(), token("dept-fire")]);
        if identity {
            args.extend([
                "--tls-cert".into(),
                pki.path("fire.pem").display().to_string(),
                "--tls-key".into(),
                pki.path("fire.key").display().to_string(),
            ]);
        }
        whistle(args, vec![])
    };
    let (ok, out, err) = fire_show(true).await;
    assert!(ok, "department with its certificate: {out}{err}");
    assert!(out.contains(&case_id), "{out}");
    let (ok, out, err) = fire_show(false).await;
    assert!(!ok, "department without a certificate: {out}{err}");
    assert!(err.contains("client certificate"), "{err}");

    // https:// without a CA: refused before connecting, naming the missing flag.
    let (ok, out, err) = whistle(
        strings(&[
            "case",
            "show",
            &case_id,
            "--server",
            &https,
            "--token",
            &token("gw-lin"),
        ]),
        vec![],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(err.contains("--tls-ca"), "{err}");
    // A CA file that is not there is named.
    let missing = pki.path("nope.pem").display().to_string();
    let (ok, _, err) = whistle(
        strings(&[
            "case",
            "show",
            &case_id,
            "--server",
            &https,
            "--tls-ca",
            &missing,
            "--token",
            &token("gw-lin"),
        ]),
        vec![],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("nope.pem"), "{err}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_department_works_over_mutual_tls() {
    let b = Backend::sqlite();
    let pki = Pki::generate();
    let app = spawn_tls(&b, pki.settings(true)).await;
    let server = format!("https://localhost:{}", app.addr.port());
    let files = GrpcTlsFiles {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("fire.pem")),
        key: Some(pki.path("fire.key")),
        domain: None,
    };

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn({
        let server = server.clone();
        let files = files.clone();
        async move {
            let mut handler =
                ExampleHandler::with_tls(&server, &token("dept-fire"), "fire", &files)
                    .expect("handler");
            let last = run_grpc(&mut handler, 0, async {
                let _ = stopped.await;
            })
            .await;
            (handler.resolved, last)
        }
    });
    let gw = tls_client(&app, &pki, "gw-lin", None).await;
    let case_id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;
    // Bounded wait for the example service to sign for, arrive and resolve the case.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let view = loop {
        let view = gw.get(&case_id).await.expect("get case");
        if view.status == "resolved" {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not resolved over mutual TLS: {view:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(view.handler, department("fire"));
    let _ = stop.send(());
    let (resolved, last) = service.await.expect("service");
    assert_eq!(resolved, 1);
    assert!(last > 0);

    // Misconfigurations are refused when the handler is built, naming the file or flag.
    let no_ca = GrpcTlsFiles {
        ca: None,
        ..files.clone()
    };
    match ExampleHandler::with_tls(&server, &token("dept-fire"), "fire", &no_ca) {
        Err(ExampleError::Config(m)) => assert!(m.contains("--tls-ca"), "{m}"),
        other => panic!("https without a CA: {other:?}"),
    }
    let swapped = GrpcTlsFiles {
        key: Some(pki.path("fire.pem")),
        ..files.clone()
    };
    let e = ExampleHandler::with_tls(&server, &token("dept-fire"), "fire", &swapped)
        .expect_err("a certificate as the key")
        .to_string();
    assert!(e.contains("fire.pem"), "{e}");
    let missing = GrpcTlsFiles {
        ca: Some(pki.path("nope.pem")),
        ..files
    };
    let e = ExampleHandler::with_tls(&server, &token("dept-fire"), "fire", &missing)
        .expect_err("missing CA")
        .to_string();
    assert!(e.contains("nope.pem"), "{e}");
    app.stop().await;
}
