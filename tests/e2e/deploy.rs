//! `deploy/` against the code, so the operators' files cannot silently rot: the compose
//! file, the Dockerfile, the Kubernetes manifests and the NATS Helm values are read as
//! text and YAML and checked against what the binary really reads (the `env = "WHISTLE_…"`
//! attributes of `config.rs`), listens on (its default ports), serves (the routes of
//! `http.rs` and `web.rs`) and needs (a config file and district file that resolve, the
//! NATS users and permissions of `deploy/nats/whistle.conf`).
//!
//! No YAML crate: [`yaml`] below reads the block-style subset these files are written in
//! and refuses anything else (anchors, aliases, tags, multi-line plain scalars), so a file
//! that drifts out of that subset fails here instead of being half read.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use whistle_server::config::{self, FileConfig, ServeArgs, Settings};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn yaml_file(rel: &str) -> Vec<Value> {
    yaml::parse_all(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v}"))
}

fn map<'a>(v: &'a Value, what: &str) -> &'a serde_json::Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: expected a mapping, got {v}"))
}

/// Every `env = "…"` of `config.rs`: the environment variables `serve` and `migrate` read.
fn declared_env() -> BTreeSet<String> {
    let source = read("crates/whistle-server/src/config.rs");
    let mut out = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find("env = \"") {
        let tail = &rest[i + "env = \"".len()..];
        let end = tail.find('"').expect("closing quote of an env attribute");
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    for expected in [
        "WHISTLE_DATABASE_URL",
        "WHISTLE_NATS_URL",
        "WHISTLE_LISTEN",
        "WHISTLE_HTTP_LISTEN",
    ] {
        assert!(
            out.contains(expected),
            "config.rs declares {expected}: {out:?}"
        );
    }
    out
}

/// The paths the HTTP port serves: every `.route("…"` of `http.rs` and `web.rs`.
fn http_routes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for file in [
        "crates/whistle-server/src/http.rs",
        "crates/whistle-server/src/web.rs",
    ] {
        let source = read(file);
        let mut rest = source.as_str();
        while let Some(i) = rest.find(".route(\"") {
            let tail = &rest[i + ".route(\"".len()..];
            let end = tail.find('"').expect("closing quote of a route");
            out.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    for expected in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            out.contains(expected),
            "the HTTP router serves {expected}: {out:?}"
        );
    }
    out
}

fn port_of(addr: &str, what: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{what} {addr:?}: {e}"))
        .port()
}

/// The binary's default gRPC and HTTP ports.
fn default_ports() -> (u16, u16) {
    (
        port_of(config::DEFAULT_LISTEN, "DEFAULT_LISTEN"),
        port_of(config::DEFAULT_HTTP_LISTEN, "DEFAULT_HTTP_LISTEN"),
    )
}

/// `host:container[:mode]` of a compose volume, split.
fn volume_parts(spec: &str) -> (&str, &str) {
    let mut parts = spec.split(':');
    let host = parts.next().expect("volume source");
    let container = parts
        .next()
        .unwrap_or_else(|| panic!("volume {spec:?} names no container path"));
    (host, container)
}

/// The file or directory under `deploy/` that a compose service sees at `path`, through
/// its bind mounts (`./…` sources, relative to the compose file).
fn compose_host_path(service: &Value, name: &str, path: &str) -> PathBuf {
    // The deepest mount containing `path` is the one the container sees.
    let mut best: Option<(&str, &str)> = None;
    for v in seq(&service["volumes"], &format!("{name}.volumes")) {
        let (host, container) = volume_parts(str_of(v, "volume"));
        let inside = path
            .strip_prefix(container)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if inside && best.is_none_or(|(_, c)| container.len() > c.len()) {
            best = Some((host, container));
        }
    }
    let (host, container) =
        best.unwrap_or_else(|| panic!("service {name}: nothing is mounted at {path}"));
    let host = host
        .strip_prefix("./")
        .unwrap_or_else(|| panic!("service {name}: {path} is on volume {host}, not from deploy/"));
    let host = root().join("deploy").join(host);
    match path[container.len()..].trim_start_matches('/') {
        "" => host,
        rest => host.join(rest),
    }
}

/// A compose service's `environment` as a map (mapping or `KEY=VALUE` list form).
fn compose_env(service: &Value, name: &str) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let s = str_of(i, "environment entry");
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => panic!("{name}.environment: {other}"),
    }
}

fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(items) => items
            .iter()
            .map(|i| str_of(i, "command").to_string())
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `nats://[user:password@]host:port`, split.
fn nats_url_parts(url: &str) -> (Option<(String, String)>, String, u16) {
    let rest = url
        .strip_prefix("nats://")
        .unwrap_or_else(|| panic!("{url:?} is a nats:// URL"));
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((c, a)) => {
            let (user, password) = c.split_once(':').unwrap_or((c, ""));
            (Some((user.to_string(), password.to_string())), a)
        }
        None => (None, rest),
    };
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url:?} names a port"));
    let port = port
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{url:?}: port: {e}"));
    (credentials, host.to_string(), port)
}

// ── the nats-server configuration (deploy/nats) ─────────────────────────────────────

/// A nats-server configuration with comments and quoted strings removed, so what is left
/// are keys, blocks and `$VARIABLE` references.
fn nats_conf_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_quote = false;
        for c in line.chars() {
            match c {
                '"' => in_quote = !in_quote,
                '#' if !in_quote => break,
                _ if in_quote => {}
                _ => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// `$NAME` references in a nats-server configuration that it does not define itself:
/// what nats-server reads from its environment.
fn nats_conf_env(texts: &[String]) -> BTreeSet<String> {
    let code: String = texts.iter().map(|t| nats_conf_code(t)).collect();
    let defined: BTreeSet<String> = code
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once(" = ")
                .map(|(k, _)| k.trim().to_string())
        })
        .collect();
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find('$') {
        let tail = &rest[i + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > 0 && !defined.contains(&tail[..end]) {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The quoted strings between the `[` after `after` (from `start`) and its `]`.
fn quoted_list(text: &str, start: usize, after: &str) -> Vec<String> {
    let at = start
        + text[start..]
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} after byte {start}"));
    let open = at + text[at..].find('[').expect("[");
    let close = open + text[open..].find(']').expect("]");
    text[open..close]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A user of `whistle.conf`: the variable holding its password and what it may publish
/// and subscribe to.
#[derive(Debug, PartialEq, Eq)]
struct NatsUser {
    password_var: String,
    publish: Vec<String>,
    subscribe: Vec<String>,
}

/// The users of `deploy/nats/whistle.conf` and their permissions, read from the file.
fn whistle_conf_users(text: &str) -> BTreeMap<String, NatsUser> {
    // Permission blocks: `NAME = { publish: { allow: [...] } subscribe: { allow: [...] } }`.
    let mut blocks = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some((name, rest)) = t.split_once(" = ")
            && rest.trim() == "{"
        {
            let start: usize = text.lines().take(i).map(|l| l.len() + 1).sum();
            let publish = quoted_list(text, start, "publish:");
            let subscribe = quoted_list(text, start, "subscribe:");
            blocks.insert(name.trim().to_string(), (publish, subscribe));
        }
    }
    let code = nats_conf_code(text);
    let mut users = BTreeMap::new();
    for line in code.lines() {
        let t = line.trim();
        if !t.starts_with("{ user:") {
            continue;
        }
        let fields: BTreeMap<&str, &str> = t
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .split(',')
            .filter_map(|f| f.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let block = fields["permissions"].trim_start_matches('$');
        let (publish, subscribe) = blocks
            .get(block)
            .unwrap_or_else(|| panic!("whistle.conf defines the permissions {block}"));
        users.insert(
            fields["user"].to_string(),
            NatsUser {
                password_var: fields["password"].trim_start_matches('$').to_string(),
                publish: publish.clone(),
                subscribe: subscribe.clone(),
            },
        );
    }
    assert!(
        users.contains_key("whistle") && users.len() >= 2,
        "whistle.conf has the relay user and department users: {users:?}"
    );
    users
}

/// The `key: value` of a top-level (or `block {`-level) setting of a nats-server file.
fn nats_setting<'a>(code: &'a str, key: &str) -> Option<&'a str> {
    code.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// A setting whose value may be quoted (`store_dir: "/data"`), comments skipped.
fn nats_setting_quoted(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

// ── compose ─────────────────────────────────────────────────────────────────────────

struct Compose {
    services: serde_json::Map<String, Value>,
    volumes: BTreeSet<String>,
}

fn compose() -> Compose {
    let docs = yaml_file("deploy/compose.yaml");
    assert_eq!(docs.len(), 1, "compose.yaml is one document");
    let services = map(&docs[0]["services"], "services").clone();
    let volumes = match &docs[0]["volumes"] {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    Compose { services, volumes }
}

impl Compose {
    /// Services running the image built from deploy/Dockerfile.
    fn whistle(&self) -> Vec<(&String, &Value)> {
        let image = self
            .services
            .values()
            .find(|s| s["build"]["dockerfile"] == "deploy/Dockerfile")
            .map(|s| str_of(&s["image"], "image of the built service").to_string())
            .expect("a service builds deploy/Dockerfile");
        self.services
            .iter()
            .filter(|(_, s)| s["image"] == image.as_str())
            .collect()
    }

    fn serving(&self) -> Vec<(&String, &Value)> {
        self.whistle()
            .into_iter()
            .filter(|(_, s)| command(s).first().map(String::as_str) == Some("serve"))
            .collect()
    }

    fn nats(&self) -> Vec<(&String, &Value)> {
        self.services
            .iter()
            .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
            .collect()
    }
}

/// gRPC and HTTP ports of a whistle service, from its environment or the defaults.
fn listen_ports(env: &BTreeMap<String, String>) -> (u16, u16) {
    let (grpc, http) = default_ports();
    (
        env.get("WHISTLE_LISTEN")
            .map_or(grpc, |a| port_of(a, "WHISTLE_LISTEN")),
        env.get("WHISTLE_HTTP_LISTEN")
            .map_or(http, |a| port_of(a, "WHISTLE_HTTP_LISTEN")),
    )
}

#[test]
fn compose_runs_a_three_node_nats_cluster_postgres_and_two_whistle_nodes() {
    let declared = declared_env();
    let routes = http_routes();
    let c = compose();

    // ── three NATS servers, one cluster, whistle.conf's users ──
    let nats = c.nats();
    assert_eq!(nats.len(), 3, "three NATS servers");
    let nats_names: BTreeSet<String> = nats.iter().map(|(n, _)| n.to_string()).collect();
    let mut server_names = BTreeSet::new();
    let whistle_conf = read("deploy/nats/whistle.conf");
    let client_port = port_of(
        nats_setting(&nats_conf_code(&whistle_conf), "listen").expect("whistle.conf listen"),
        "whistle.conf listen",
    );
    for (name, s) in &nats {
        let cmd = command(s);
        let config_at = cmd
            .iter()
            .position(|a| a == "--config" || a == "-c")
            .and_then(|i| cmd.get(i + 1))
            .unwrap_or_else(|| panic!("{name} runs nats-server with --config"));
        let config_file = compose_host_path(s, name, config_at);
        let cluster = std::fs::read_to_string(&config_file)
            .unwrap_or_else(|e| panic!("{}: {e}", config_file.display()));
        // The users and permissions are whistle.conf's, included unchanged.
        assert!(
            cluster
                .lines()
                .any(|l| l.trim() == "include ./whistle.conf"),
            "{} includes whistle.conf",
            config_file.display()
        );
        assert!(
            !nats_conf_code(&cluster).contains("authorization"),
            "{} leaves authorization to whistle.conf",
            config_file.display()
        );
        let included = config_file.with_file_name("whistle.conf");
        assert_eq!(
            std::fs::read_to_string(&included).expect("whistle.conf beside the cluster file"),
            whistle_conf
        );
        // Routes to exactly the three services, on the cluster port.
        let code = nats_conf_code(&cluster);
        let cluster_block = &code[code.find("cluster {").expect("a cluster block")..];
        let cluster_port = port_of(
            nats_setting(cluster_block, "listen").expect("cluster listen"),
            "cluster listen",
        );
        let routes_at = cluster.find("routes:").expect("cluster routes");
        let routes_end = routes_at + cluster[routes_at..].find(']').expect("end of routes");
        let route_hosts: BTreeSet<String> = cluster[routes_at..routes_end]
            .split_whitespace()
            .filter(|w| w.starts_with("nats://"))
            .map(|u| {
                let (_, host, port) = nats_url_parts(u);
                assert_eq!(port, cluster_port, "route {u} uses the cluster port");
                host
            })
            .collect();
        assert_eq!(
            route_hosts, nats_names,
            "{name}: routes to every NATS service"
        );
        // Every variable the configuration reads from the environment is set.
        let env = compose_env(s, name);
        let needed = nats_conf_env(&[whistle_conf.clone(), cluster.clone()]);
        assert!(needed.contains("WHISTLE_NATS_RELAY_PASSWORD"), "{needed:?}");
        for var in &needed {
            assert!(
                env.contains_key(var),
                "{name} sets {var} (nats-server reads it)"
            );
        }
        server_names.insert(env["NATS_SERVER_NAME"].clone());
        // The JetStream store is on a named volume.
        let store_dir = nats_setting_quoted(&cluster, "store_dir").expect("store_dir");
        assert!(
            seq(&s["volumes"], "volumes").iter().any(|v| {
                let (host, container) = volume_parts(str_of(v, "volume"));
                container == store_dir.as_str() && c.volumes.contains(host)
            }),
            "{name}: a named volume holds the JetStream store {store_dir}"
        );
    }
    assert_eq!(
        server_names.len(),
        3,
        "distinct server names: {server_names:?}"
    );

    // ── PostgreSQL ──
    let (pg_name, pg) = c
        .services
        .iter()
        .find(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("postgres:"))
        })
        .expect("a PostgreSQL service");
    assert!(
        pg["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:15"))
    );
    assert!(!pg["healthcheck"].is_null(), "PostgreSQL has a healthcheck");
    let pg_env = compose_env(pg, pg_name);

    // ── whistle: a migrate step, then two nodes ──
    let whistle = c.whistle();
    assert!(
        whistle.iter().any(|(_, s)| command(s) == ["migrate"]),
        "a service runs `whistle migrate`"
    );
    let serving = c.serving();
    assert_eq!(serving.len(), 2, "two whistle nodes");
    let mut host_ports = BTreeSet::new();
    for s in c.services.values() {
        if let Value::Array(ports) = &s["ports"] {
            for p in ports {
                let spec = str_of(p, "port");
                let host = spec.rsplit_once(':').map(|(h, _)| h.to_string());
                assert!(host_ports.insert(host), "host port {spec} published twice");
            }
        }
    }
    for (name, s) in &whistle {
        let env = compose_env(s, name);
        for var in env.keys().filter(|k| k.starts_with("WHISTLE_")) {
            assert!(
                declared.contains(var),
                "{name} sets {var}, which whistle does not read"
            );
        }
        // The database URL names the PostgreSQL service, its user, password and database.
        let url = env
            .get("WHISTLE_DATABASE_URL")
            .unwrap_or_else(|| panic!("{name} sets WHISTLE_DATABASE_URL"));
        assert_eq!(
            url.as_str(),
            format!(
                "postgres://{}:{}@{pg_name}:5432/{}",
                pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]
            ),
            "{name}"
        );
        // The config file resolves: what has no environment variable is set there.
        let config_path = env
            .get("WHISTLE_CONFIG")
            .unwrap_or_else(|| panic!("{name} sets WHISTLE_CONFIG"));
        let file: FileConfig = config::load_file(&compose_host_path(s, name, config_path))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            file.nats.as_ref().and_then(|n| n.replicas),
            Some(nats.len()),
            "{name}: the stream is replicated on every NATS server"
        );
        if file.principals.is_empty() {
            // Demo principals: their tokens live in the data directory, which every whistle
            // service must share or a token would work on one node only.
            let dir = env
                .get("WHISTLE_DATA_DIR")
                .unwrap_or_else(|| panic!("{name} sets WHISTLE_DATA_DIR"));
            assert!(
                seq(&s["volumes"], "volumes").iter().any(|v| {
                    let (host, container) = volume_parts(str_of(v, "volume"));
                    container == dir && host == "whistle-data" && c.volumes.contains(host)
                }),
                "{name}: the shared volume whistle-data is mounted at {dir}"
            );
        }
        if command(s) == ["migrate"] {
            continue;
        }
        // NATS: all three servers, as the relay user, with the servers' relay password.
        let servers: Vec<_> = env["WHISTLE_NATS_URL"]
            .split(',')
            .map(nats_url_parts)
            .collect();
        let hosts: BTreeSet<String> = servers.iter().map(|(_, h, _)| h.clone()).collect();
        assert_eq!(
            hosts, nats_names,
            "{name}: WHISTLE_NATS_URL lists every NATS server"
        );
        for (credentials, host, port) in &servers {
            assert_eq!(*port, client_port, "{name}: {host} on the client port");
            let (user, password) = credentials.clone().expect("credentials in the URL");
            assert_eq!(user, "whistle", "{name}: the relay user");
            for (n, ns) in &nats {
                assert_eq!(
                    password,
                    compose_env(ns, n)["WHISTLE_NATS_RELAY_PASSWORD"],
                    "{name}: the password {n} has for the relay user"
                );
            }
        }
        // Ports: published container ports are the ones the node listens on.
        let (grpc, http) = listen_ports(&env);
        let published: BTreeSet<u16> = seq(&s["ports"], "ports")
            .iter()
            .map(|p| {
                let spec = str_of(p, "port");
                spec.rsplit_once(':')
                    .and_then(|(_, c)| c.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: port {spec:?}"))
            })
            .collect();
        assert_eq!(published, BTreeSet::from([grpc, http]), "{name}: ports");
        // The healthcheck asks a route the node serves, on its HTTP port.
        let check = seq(&s["healthcheck"]["test"], "healthcheck.test")
            .iter()
            .map(|t| str_of(t, "healthcheck").to_string())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            check.contains(&format!("/dev/tcp/127.0.0.1/{http}")),
            "{name}: healthcheck on the HTTP port: {check}"
        );
        let path = check
            .split("GET ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name}: the healthcheck sends a GET: {check}"));
        assert!(
            routes.contains(path),
            "{name}: healthcheck path {path} is served"
        );
        // Started after the migration, on a healthy database and NATS cluster.
        let deps = map(&s["depends_on"], "depends_on");
        assert_eq!(
            deps[pg_name.as_str()]["condition"],
            "service_healthy",
            "{name}"
        );
        let migrate = whistle
            .iter()
            .find(|(_, m)| command(m) == ["migrate"])
            .map(|(n, _)| n.as_str())
            .expect("migrate");
        assert_eq!(deps[migrate]["condition"], "service_completed_successfully");
        for (dep, cond) in deps {
            if cond["condition"] == "service_healthy" {
                assert!(
                    !c.services[dep]["healthcheck"].is_null(),
                    "{name} waits for {dep} to be healthy: it needs a healthcheck"
                );
            }
        }
    }
}

#[test]
fn compose_monitoring_scrapes_both_nodes_and_provisions_the_dashboard() {
    let routes = http_routes();
    let c = compose();
    let serving = c.serving();

    // Prometheus scrapes /metrics of every node, on its HTTP port.
    let (prom_name, prom) = c
        .services
        .iter()
        .find(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("prom/prometheus"))
        })
        .expect("a Prometheus service");
    let config_at = command(prom)
        .iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
        .expect("prometheus --config.file=");
    let config = compose_host_path(prom, prom_name, &config_at);
    let config = yaml::parse_all(&std::fs::read_to_string(&config).expect("prometheus config"))
        .expect("prometheus config is YAML");
    let job = &seq(&config[0]["scrape_configs"], "scrape_configs")[0];
    assert!(routes.contains(str_of(&job["metrics_path"], "metrics_path")));
    let targets: BTreeSet<String> = seq(&job["static_configs"][0]["targets"], "targets")
        .iter()
        .map(|t| str_of(t, "target").to_string())
        .collect();
    let expected: BTreeSet<String> = serving
        .iter()
        .map(|(n, s)| format!("{n}:{}", listen_ports(&compose_env(s, n)).1))
        .collect();
    assert_eq!(targets, expected, "Prometheus scrapes every whistle node");

    // Grafana: the data source is that Prometheus, the dashboard provider reads the folder
    // where deploy/monitoring/grafana/ is mounted, and the dashboard is there.
    let (graf_name, grafana) = c
        .services
        .iter()
        .find(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("grafana/grafana"))
        })
        .expect("a Grafana service");
    let provisioning = compose_host_path(grafana, graf_name, "/etc/grafana/provisioning");
    let one_yaml = |dir: &str| -> Value {
        let dir = provisioning.join(dir);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        assert_eq!(files.len(), 1, "{}: one provisioning file", dir.display());
        yaml::parse_all(&std::fs::read_to_string(&files[0]).expect("read"))
            .unwrap_or_else(|e| panic!("{}: {e}", files[0].display()))
            .remove(0)
    };
    let datasources = one_yaml("datasources");
    let ds = &seq(&datasources["datasources"], "datasources")[0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(
        ds["isDefault"], "true",
        "the dashboard's datasource variable picks it"
    );
    assert_eq!(ds["url"], format!("http://{prom_name}:9090").as_str());
    let dashboards = one_yaml("dashboards");
    let provider = &seq(&dashboards["providers"], "providers")[0];
    let folder = str_of(&provider["options"]["path"], "provider path");
    let host_folder = compose_host_path(grafana, graf_name, folder);
    assert_eq!(
        host_folder.canonicalize().expect("dashboard folder"),
        root()
            .join("deploy/monitoring/grafana")
            .canonicalize()
            .expect("deploy/monitoring/grafana")
    );
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(host_folder.join("whistle-dashboard.json"))
            .expect("the dashboard is in the provisioned folder"),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["uid"].is_string(), "the dashboard has a uid");
    if let Some(home) =
        compose_env(grafana, graf_name).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    {
        assert!(
            compose_host_path(grafana, graf_name, home).is_file(),
            "the home dashboard {home} exists"
        );
    }
}

// ── Dockerfile ──────────────────────────────────────────────────────────────────────

/// The Dockerfile's instructions, continuation lines joined: (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        // Comment and empty lines are skipped, also inside continued instructions.
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (instr, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((instr.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

/// The runtime stage's `ENV` (`KEY=VALUE …`).
fn dockerfile_env() -> BTreeMap<String, String> {
    dockerfile()
        .into_iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, args)| {
            args.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The numeric uid the image runs as.
fn dockerfile_uid() -> u32 {
    let user = dockerfile()
        .into_iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, a)| a)
        .expect("the image sets USER");
    user.split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is numeric (Kubernetes' runAsNonRoot checks it)"))
}

#[test]
fn the_dockerfile_builds_the_binary_and_exposes_the_ports_it_listens_on() {
    let declared = declared_env();
    let instructions = dockerfile();
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("rust:1.95-bookworm"), "{froms:?}");
    assert!(
        froms
            .last()
            .is_some_and(|f| f.starts_with("debian:bookworm-slim"))
    );
    assert!(
        instructions
            .iter()
            .any(|(i, a)| i == "RUN"
                && a.contains("cargo build --release --locked -p whistle-server")),
        "the builder runs cargo build --release --locked -p whistle-server"
    );
    // What the builder copies exists, and .dockerignore keeps none of it out.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for (_, args) in instructions
        .iter()
        .filter(|(i, a)| i == "COPY" && !a.starts_with("--from"))
    {
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root().join(source).exists(), "COPY {source}: exists");
            assert!(
                !ignored.iter().any(|p| p == source),
                ".dockerignore excludes {source}, which the Dockerfile copies"
            );
        }
    }
    for needed in ["target", ".git"] {
        assert!(
            ignored.iter().any(|p| p == needed),
            ".dockerignore excludes {needed}"
        );
    }
    // The e2e target the server's manifest names is inside what is copied.
    assert!(
        read("crates/whistle-server/Cargo.toml").contains("path = \"../../tests/e2e/main.rs\"")
    );
    assert!(
        instructions
            .iter()
            .any(|(i, a)| i == "COPY" && a == "tests tests")
    );

    let env = dockerfile_env();
    for var in env.keys().filter(|k| k.starts_with("WHISTLE_")) {
        assert!(
            declared.contains(var),
            "the image sets {var}, which whistle does not read"
        );
    }
    let (grpc, http) = listen_ports(&env);
    assert_eq!(
        (grpc, http),
        default_ports(),
        "the image keeps the default ports"
    );
    let exposed: BTreeSet<u16> = instructions
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| {
            a.split_whitespace()
                .map(|p| {
                    p.trim_end_matches("/tcp")
                        .parse::<u16>()
                        .expect("EXPOSE port")
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(exposed, BTreeSet::from([grpc, http]));
    assert_ne!(dockerfile_uid(), 0, "the image does not run as root");
    assert!(
        instructions
            .iter()
            .any(|(i, a)| i == "ENTRYPOINT" && a.contains("\"whistle\"")),
        "the entrypoint is the whistle binary"
    );
}

// ── Kubernetes ──────────────────────────────────────────────────────────────────────

/// Every object of the manifests kustomization.yaml lists, by (kind, name).
fn k8s_objects() -> BTreeMap<(String, String), Value> {
    let kustomization = yaml_file("deploy/k8s/kustomization.yaml").remove(0);
    let mut out = BTreeMap::new();
    for r in seq(&kustomization["resources"], "resources") {
        let file = format!("deploy/k8s/{}", str_of(r, "resource"));
        for doc in yaml_file(&file) {
            let kind = str_of(&doc["kind"], "kind").to_string();
            let name = str_of(&doc["metadata"]["name"], "metadata.name").to_string();
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: {kind} {name} has an apiVersion"
            );
            assert!(
                out.insert((kind.clone(), name.clone()), doc).is_none(),
                "{kind} {name} twice"
            );
        }
    }
    out
}

fn obj<'a>(objects: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objects
        .get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("the manifests define {kind} {name}"))
}

/// A key of a Secret (`stringData`) or ConfigMap (`data`).
fn k8s_value<'a>(
    objects: &'a BTreeMap<(String, String), Value>,
    kind: &str,
    name: &str,
    key: &str,
) -> &'a str {
    let o = obj(objects, kind, name);
    let data = if kind == "Secret" {
        &o["stringData"]
    } else {
        &o["data"]
    };
    data[key]
        .as_str()
        .unwrap_or_else(|| panic!("{kind} {name} has the key {key}"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    map(selector, "selector")
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// A container's environment: literal values and `secretKeyRef` (name, key) references.
fn container_env(
    container: &Value,
) -> (BTreeMap<String, String>, BTreeMap<String, (String, String)>) {
    let mut literal = BTreeMap::new();
    let mut secret = BTreeMap::new();
    if let Value::Array(env) = &container["env"] {
        for e in env {
            let name = str_of(&e["name"], "env name").to_string();
            if let Some(v) = e["value"].as_str() {
                literal.insert(name, v.to_string());
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                secret.insert(
                    name,
                    (
                        str_of(&r["name"], "secretKeyRef.name").to_string(),
                        str_of(&r["key"], "secretKeyRef.key").to_string(),
                    ),
                );
            }
        }
    }
    (literal, secret)
}

/// The content a container sees at `path` through its volume mounts (Secret or
/// ConfigMap volumes).
fn mounted_file<'a>(
    objects: &'a BTreeMap<(String, String), Value>,
    pod: &Value,
    container: &Value,
    path: &str,
) -> &'a str {
    for m in seq(&container["volumeMounts"], "volumeMounts") {
        let at = str_of(&m["mountPath"], "mountPath");
        let Some(file) = path.strip_prefix(at).map(|f| f.trim_start_matches('/')) else {
            continue;
        };
        let volume = seq(&pod["volumes"], "volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("the mounted volume");
        let (kind, source) = if volume["secret"].is_object() {
            ("Secret", &volume["secret"])
        } else {
            ("ConfigMap", &volume["configMap"])
        };
        let name = source["secretName"]
            .as_str()
            .or(source["name"].as_str())
            .expect("volume source name");
        let key = match &source["items"] {
            Value::Array(items) => items
                .iter()
                .find(|i| i["path"] == file)
                .map(|i| str_of(&i["key"], "item key"))
                .unwrap_or_else(|| panic!("{kind} {name} projects {file}")),
            _ => file,
        };
        return k8s_value(objects, kind, name, key);
    }
    panic!("nothing is mounted at {path}")
}

fn probe_path<'a>(container: &'a Value, probe: &str, http_port: u16) -> &'a str {
    let get = &container[probe]["httpGet"];
    let port = &get["port"];
    assert!(
        *port == "http" || *port == http_port.to_string().as_str(),
        "{probe} on the HTTP port, got {port}"
    );
    str_of(&get["path"], probe)
}

#[test]
fn kubernetes_manifests_match_what_the_binary_reads_listens_on_and_serves() {
    let declared = declared_env();
    let routes = http_routes();
    let objects = k8s_objects();
    let deployment = obj(&objects, "Deployment", "whistle");
    let replicas: u32 = str_of(&deployment["spec"]["replicas"], "replicas")
        .parse()
        .expect("replicas");
    assert!(replicas >= 2, "at least two whistle nodes");
    let template = &deployment["spec"]["template"];
    let pod_labels = &template["metadata"]["labels"];
    assert!(labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let pod = &template["spec"];
    assert!(pod["terminationGracePeriodSeconds"].is_string());
    assert_eq!(pod["securityContext"]["runAsNonRoot"], "true");
    assert_eq!(
        pod["securityContext"]["runAsUser"],
        dockerfile_uid().to_string().as_str(),
        "the uid the image runs as"
    );

    let mut containers: Vec<&Value> = seq(&pod["containers"], "containers").iter().collect();
    if let Value::Array(init) = &pod["initContainers"] {
        containers.extend(init);
    }
    let mut serve = None;
    let mut migrate = false;
    for c in &containers {
        let name = str_of(&c["name"], "container name");
        let (literal, secret) = container_env(c);
        for var in literal
            .keys()
            .chain(secret.keys())
            .filter(|k| k.starts_with("WHISTLE_"))
        {
            assert!(
                declared.contains(var),
                "{name} sets {var}, which whistle does not read"
            );
        }
        for (secret_name, key) in secret.values() {
            k8s_value(&objects, "Secret", secret_name, key);
        }
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"], "true",
            "{name}"
        );
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], "false",
            "{name}"
        );
        for limit in ["requests", "limits"] {
            assert!(
                c["resources"][limit]["memory"].is_string(),
                "{name}: {limit}"
            );
        }
        let args: Vec<&str> = seq(&c["args"], "args")
            .iter()
            .map(|a| str_of(a, "arg"))
            .collect();
        match args.first() {
            Some(&"serve") => serve = Some(*c),
            Some(&"migrate") => migrate = true,
            other => panic!("{name} runs whistle {other:?}"),
        }
    }
    assert!(migrate, "an init container runs `whistle migrate`");
    let serve = serve.expect("a container runs `whistle serve`");
    let (literal, secret) = container_env(serve);
    assert!(secret.contains_key("WHISTLE_DATABASE_URL") && secret.contains_key("WHISTLE_NATS_URL"));

    // Ports: named, and the ones the process listens on.
    let (grpc, http) = listen_ports(&literal);
    let ports: BTreeMap<String, u16> = seq(&serve["ports"], "ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name").to_string(),
                str_of(&p["containerPort"], "containerPort")
                    .parse()
                    .expect("port"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("grpc".to_string(), grpc), ("http".to_string(), http)])
    );
    // Probes: readiness on /readyz, liveness (and startup) on /healthz, all served.
    assert_eq!(probe_path(serve, "readinessProbe", http), "/readyz");
    assert_eq!(probe_path(serve, "livenessProbe", http), "/healthz");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if serve[probe].is_object() {
            let path = probe_path(serve, probe, http);
            assert!(
                routes.contains(path),
                "{probe} {path} is a route whistle serves"
            );
        }
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], http.to_string().as_str());
    assert!(routes.contains(str_of(
        &annotations["prometheus.io/path"],
        "prometheus.io/path"
    )));

    // Services: select the pods, target their named ports.
    let services: Vec<&Value> = objects
        .iter()
        .filter(|((k, _), _)| k == "Service")
        .map(|(_, v)| v)
        .collect();
    assert!(!services.is_empty());
    for s in services {
        assert!(
            labels_match(&s["spec"]["selector"], pod_labels),
            "{}",
            s["metadata"]["name"]
        );
        for p in seq(&s["spec"]["ports"], "service ports") {
            let target = str_of(&p["targetPort"], "targetPort");
            assert!(
                ports.contains_key(target) || ports.values().any(|v| v.to_string() == target),
                "Service port {p} targets a container port"
            );
        }
    }
    let pdb = obj(&objects, "PodDisruptionBudget", "whistle");
    assert!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let min_available: u32 = str_of(&pdb["spec"]["minAvailable"], "minAvailable")
        .parse()
        .expect("minAvailable");
    assert!(min_available >= 1 && min_available < replicas);

    // The config file and the district file resolve as `whistle serve` resolves them, with
    // the database and NATS URLs of the Secret: no demo principals (they would write
    // tokens to a read-only filesystem), the stream on every NATS server.
    let config_text = mounted_file(&objects, pod, serve, &literal["WHISTLE_CONFIG"]);
    let district_text = mounted_file(&objects, pod, serve, &literal["WHISTLE_DISTRICT"]);
    let dir = std::env::temp_dir().join(format!("whistle-deploy-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("whistle.toml"), config_text).expect("write config");
    std::fs::write(dir.join("district.toml"), district_text).expect("write district");
    let database_url = k8s_value(
        &objects,
        "Secret",
        "whistle",
        &secret["WHISTLE_DATABASE_URL"].1,
    );
    let nats_url = k8s_value(&objects, "Secret", "whistle", &secret["WHISTLE_NATS_URL"].1);
    let resolved = Settings::resolve(&ServeArgs {
        config: Some(dir.join("whistle.toml")),
        district: Some(dir.join("district.toml")),
        database_url: Some(database_url.to_string()),
        nats_url: Some(nats_url.to_string()),
        data_dir: Some(dir.join("data")),
        ..ServeArgs::default()
    });
    let settings = resolved.unwrap_or_else(|e| panic!("the k8s configuration resolves: {e:#}"));
    assert!(
        settings.demo_tokens.is_none(),
        "principals come from the config file"
    );
    assert!(!dir.join("data").exists(), "whistle serve writes no files");
    assert!(database_url.starts_with("postgres://"));
    let _ = std::fs::remove_dir_all(&dir);

    // NATS: the Secret's URL lists every server of the Helm chart's cluster, as the relay
    // user; the stream is replicated on all of them.
    let values = yaml_file("deploy/k8s/nats-values.yaml").remove(0);
    let nats_replicas: usize = str_of(&values["config"]["cluster"]["replicas"], "replicas")
        .parse()
        .expect("replicas");
    let relay = settings.nats.expect("the relay is on");
    assert_eq!(relay.stream.replicas, nats_replicas);
    let servers: Vec<_> = nats_url.split(',').map(nats_url_parts).collect();
    let hosts: BTreeSet<String> = servers.iter().map(|(_, h, _)| h.clone()).collect();
    let expected: BTreeSet<String> = (0..nats_replicas)
        .map(|i| format!("nats-{i}.nats-headless"))
        .collect();
    assert_eq!(hosts, expected, "the chart's pods (release `nats`)");
    for (credentials, _, port) in &servers {
        assert_eq!(*port, 4222);
        assert_eq!(
            credentials.as_ref().map(|(u, _)| u.as_str()),
            Some("whistle")
        );
    }
    // The district file is the district the NATS permissions are written for.
    let district = config::parse_district(district_text, "configmap.yaml").expect("district");
    // and every department user of whistle.conf is a department of that district.
    let conf = read("deploy/nats/whistle.conf");
    for (user, permissions) in whistle_conf_users(&conf) {
        if user == "whistle" {
            continue;
        }
        let filter = format!("whistle.{}.*.{user}.>", district.id);
        assert!(
            permissions.publish.iter().any(|s| s.ends_with(&filter)),
            "whistle.conf's user {user} consumes {filter}: {permissions:?}"
        );
        assert!(
            district.departments.keys().any(|d| d.as_str() == user),
            "the NATS user {user} is a department of the district {}",
            district.id
        );
    }
}

#[test]
fn the_nats_helm_values_grant_exactly_what_whistle_conf_grants() {
    let conf = read("deploy/nats/whistle.conf");
    let expected = whistle_conf_users(&conf);
    let values = yaml_file("deploy/k8s/nats-values.yaml").remove(0);
    let config = &values["config"];
    assert_eq!(config["cluster"]["enabled"], "true");
    assert_eq!(config["jetstream"]["enabled"], "true");
    assert_eq!(config["jetstream"]["fileStore"]["enabled"], "true");
    assert_eq!(config["jetstream"]["fileStore"]["pvc"]["enabled"], "true");
    let unquote = |v: &Value| -> String {
        let s = str_of(v, "merged value");
        s.strip_prefix("<<")
            .and_then(|s| s.strip_suffix(">>"))
            .map_or(s, str::trim)
            .to_string()
    };
    assert_eq!(
        unquote(&config["merge"]["max_payload"]),
        nats_setting(&nats_conf_code(&conf), "max_payload").expect("max_payload")
    );
    let strings = |v: &Value| -> Vec<String> {
        seq(v, "allow")
            .iter()
            .map(|s| str_of(s, "subject").to_string())
            .collect()
    };
    let users: BTreeMap<String, NatsUser> =
        seq(&config["merge"]["authorization"]["users"], "users")
            .iter()
            .map(|u| {
                let password = unquote(&u["password"]);
                (
                    str_of(&u["user"], "user").to_string(),
                    NatsUser {
                        password_var: password
                            .strip_prefix('$')
                            .unwrap_or_else(|| panic!("password {password} is a variable"))
                            .to_string(),
                        publish: strings(&u["permissions"]["publish"]["allow"]),
                        subscribe: strings(&u["permissions"]["subscribe"]["allow"]),
                    },
                )
            })
            .collect();
    assert_eq!(
        users, expected,
        "nats-values.yaml's users are whistle.conf's"
    );

    // Each password variable comes from the Secret nats-users.
    let objects = k8s_objects();
    let env = map(&values["container"]["env"], "container.env");
    let vars: BTreeSet<&str> = expected.values().map(|u| u.password_var.as_str()).collect();
    assert_eq!(
        env.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        vars
    );
    for (var, source) in env {
        let r = &source["valueFrom"]["secretKeyRef"];
        let value = k8s_value(
            &objects,
            "Secret",
            str_of(&r["name"], "secret name"),
            str_of(&r["key"], "secret key"),
        );
        assert!(
            value.starts_with('"') && value.ends_with('"'),
            "{var}: the hash is quoted inside the value (nats-server parses it)"
        );
    }
}

#[test]
fn the_yaml_reader_reads_what_these_files_use_and_refuses_the_rest() {
    let docs = yaml::parse_all(
        "# c\na: 1 # trailing\nb:\n  - x\n  - \"q # not a comment\"\n  - k: v\n    l: 'it''s'\nc: [\"p\", q]\nd: {}\ne: |\n  line 1\n  # kept\n\n  line 3\nf: >-\n  folded\n  text\n---\ng:\n- same indent\nh: \"esc\\r\\n\"\n",
    )
    .expect("parses");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["a"], "1");
    assert_eq!(docs[0]["b"][1], "q # not a comment");
    assert_eq!(docs[0]["b"][2]["l"], "it's");
    assert_eq!(docs[0]["c"][1], "q");
    assert!(docs[0]["d"].as_object().is_some_and(|m| m.is_empty()));
    assert_eq!(docs[0]["e"], "line 1\n# kept\n\nline 3\n");
    assert_eq!(docs[0]["f"], "folded text");
    assert_eq!(docs[1]["g"][0], "same indent");
    assert_eq!(docs[1]["h"], "esc\r\n");
    for bad in [
        "a: &anchor 1\n",
        "a: *alias\n",
        "a: !tag x\n",
        "a:\n\t- x\n",
        "a: [x\n",
        "a: 1\na: 2\n",
        "a: 1\n b: 2\n",
        "a: plain\n  continued\n",
    ] {
        assert!(yaml::parse_all(bad).is_err(), "refused: {bad:?}");
    }
}

/// A reader for the block-style YAML subset of deploy/: mappings, sequences (indented or
/// at the key's indentation), plain and quoted scalars, `|`/`>` block scalars, one-line
/// flow collections, comments and `---` documents. Scalars stay strings (`"1"`,
/// `"true"`); an empty value is null. Anything else is an error, never a guess.
mod yaml {
    use serde_json::{Map, Value};

    pub fn parse_all(text: &str) -> Result<Vec<Value>, String> {
        let mut docs = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(std::mem::take(&mut current));
            } else {
                current.push(line.to_string());
            }
        }
        docs.push(current);
        docs.into_iter()
            .filter(|d| d.iter().any(|l| !blank(l)))
            .map(|lines| {
                let mut p = Parser { lines, pos: 0 };
                let v = p.node(0)?;
                p.skip();
                match p.lines.get(p.pos) {
                    Some(l) => Err(p.error(&format!("unexpected line {l:?}"))),
                    None => Ok(v),
                }
            })
            .collect()
    }

    fn blank(line: &str) -> bool {
        let t = line.trim_start();
        t.is_empty() || t.starts_with('#')
    }

    struct Parser {
        lines: Vec<String>,
        pos: usize,
    }

    impl Parser {
        fn error(&self, what: &str) -> String {
            format!("line {}: {what}", self.pos + 1)
        }

        fn skip(&mut self) {
            while self.pos < self.lines.len() && blank(&self.lines[self.pos]) {
                self.pos += 1;
            }
        }

        /// Indentation and content of the next non-blank line.
        fn peek(&mut self) -> Result<Option<(usize, String)>, String> {
            self.skip();
            let Some(line) = self.lines.get(self.pos) else {
                return Ok(None);
            };
            let content = line.trim_start_matches(' ');
            if content.starts_with('\t') {
                return Err(self.error("tab in indentation"));
            }
            Ok(Some((line.len() - content.len(), content.to_string())))
        }

        fn node(&mut self, min_indent: usize) -> Result<Value, String> {
            let Some((indent, content)) = self.peek()? else {
                return Ok(Value::Null);
            };
            if indent < min_indent {
                return Ok(Value::Null);
            }
            if content == "-" || content.starts_with("- ") {
                self.sequence(indent)
            } else if split_key(&content).is_some() {
                self.mapping(indent)
            } else {
                Err(self.error(&format!("a value on a line of its own: {content:?}")))
            }
        }

        fn mapping(&mut self, indent: usize) -> Result<Value, String> {
            let mut out = Map::new();
            while let Some((at, content)) = self.peek()? {
                if at < indent {
                    break;
                }
                if at > indent {
                    return Err(self.error("unexpected indentation"));
                }
                let Some((key, rest)) = split_key(&content) else {
                    break;
                };
                self.pos += 1;
                let value = self.value(&rest, indent)?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(self.error(&format!("key {key:?} twice")));
                }
            }
            Ok(Value::Object(out))
        }

        fn sequence(&mut self, indent: usize) -> Result<Value, String> {
            let mut out = Vec::new();
            while let Some((at, content)) = self.peek()? {
                if at != indent || !(content == "-" || content.starts_with("- ")) {
                    if at > indent {
                        return Err(self.error("unexpected indentation"));
                    }
                    break;
                }
                let item = content[1..].trim_start_matches(' ');
                if item.is_empty() || item.starts_with('#') {
                    self.pos += 1;
                    out.push(self.node(indent + 1)?);
                } else if item.starts_with("- ") || split_key(item).is_some() {
                    // A collection starting on the dash's line: re-read that line as if it
                    // began at the item's column.
                    let column = indent + (content.len() - item.len());
                    self.lines[self.pos] = format!("{}{item}", " ".repeat(column));
                    out.push(self.node(column)?);
                } else {
                    self.pos += 1;
                    out.push(self.inline(item)?);
                }
            }
            Ok(Value::Array(out))
        }

        /// The value after `key:` on a line indented `indent`.
        fn value(&mut self, rest: &str, indent: usize) -> Result<Value, String> {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                return match self.peek()? {
                    Some((at, c)) if at == indent && (c == "-" || c.starts_with("- ")) => {
                        self.sequence(indent)
                    }
                    Some((at, _)) if at > indent => self.node(at),
                    _ => Ok(Value::Null),
                };
            }
            if rest.starts_with('|') || rest.starts_with('>') {
                return self.block_scalar(rest, indent);
            }
            let v = self.inline(rest)?;
            // A plain scalar continued on the next, deeper line is not supported.
            if let Some((at, _)) = self.peek()?
                && at > indent
            {
                return Err(self.error("a value continued on the next line"));
            }
            Ok(v)
        }

        fn inline(&self, text: &str) -> Result<Value, String> {
            let mut chars = Inline {
                s: text.chars().collect(),
                i: 0,
            };
            let v = chars.value(false).map_err(|e| self.error(&e))?;
            chars.space();
            if chars.i < chars.s.len() && chars.s[chars.i] != '#' {
                return Err(self.error(&format!("trailing text in {text:?}")));
            }
            Ok(v)
        }

        fn block_scalar(&mut self, header: &str, indent: usize) -> Result<Value, String> {
            let folded = header.starts_with('>');
            let chomp = header[1..].trim();
            let chomp = chomp.split('#').next().unwrap_or("").trim();
            if !["", "-", "+"].contains(&chomp) {
                return Err(self.error(&format!("block scalar header {header:?}")));
            }
            let mut raw = Vec::new();
            let mut block_indent = None;
            while let Some(line) = self.lines.get(self.pos) {
                let content = line.trim_start_matches(' ');
                let at = line.len() - content.len();
                if content.is_empty() {
                    raw.push(String::new());
                    self.pos += 1;
                    continue;
                }
                if at <= indent {
                    break;
                }
                let bi = *block_indent.get_or_insert(at);
                if at < bi {
                    return Err(self.error("block scalar line less indented than its first"));
                }
                raw.push(line[bi..].to_string());
                self.pos += 1;
            }
            let trailing = raw.iter().rev().take_while(|l| l.is_empty()).count();
            let body = &raw[..raw.len() - trailing];
            let mut text = if folded {
                let mut t = String::new();
                for (i, l) in body.iter().enumerate() {
                    if i > 0 {
                        t.push(if l.is_empty() || body[i - 1].is_empty() {
                            '\n'
                        } else {
                            ' '
                        });
                    }
                    t.push_str(l);
                }
                t
            } else {
                body.join("\n")
            };
            match chomp {
                "-" => {}
                "+" => text.push_str(&"\n".repeat(trailing + 1)),
                _ => text.push('\n'),
            }
            Ok(Value::String(text))
        }
    }

    /// `key: rest` of a mapping line (plain keys have no spaces; quoted keys allowed).
    fn split_key(content: &str) -> Option<(String, String)> {
        let (key, after) = if let Some(q) = content.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else if let Some(q) = content.strip_prefix('\'') {
            let end = q.find('\'')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            if content.starts_with(['#', '[', '{', '-', '&', '*', '!', '|', '>']) {
                return None;
            }
            let end = content.find(':')?;
            let key = &content[..end];
            if key.is_empty() || key.contains(char::is_whitespace) {
                return None;
            }
            (key.to_string(), &content[end..])
        };
        let rest = after.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        Some((key, rest.to_string()))
    }

    /// One line's worth of scalar or flow collection.
    struct Inline {
        s: Vec<char>,
        i: usize,
    }

    impl Inline {
        fn space(&mut self) {
            while self.i < self.s.len() && self.s[self.i] == ' ' {
                self.i += 1;
            }
        }

        fn value(&mut self, in_flow: bool) -> Result<Value, String> {
            self.space();
            match self.s.get(self.i) {
                None => Ok(Value::Null),
                Some('&' | '*' | '!') => Err("anchors, aliases and tags are not supported".into()),
                Some('"') => self.double_quoted(),
                Some('\'') => self.single_quoted(),
                Some('[') => {
                    self.i += 1;
                    let mut out = Vec::new();
                    loop {
                        self.space();
                        match self.s.get(self.i) {
                            Some(']') => {
                                self.i += 1;
                                return Ok(Value::Array(out));
                            }
                            Some(',') if !out.is_empty() => self.i += 1,
                            None => return Err("unclosed [".into()),
                            _ => out.push(self.value(true)?),
                        }
                    }
                }
                Some('{') => {
                    self.i += 1;
                    let mut out = Map::new();
                    loop {
                        self.space();
                        match self.s.get(self.i) {
                            Some('}') => {
                                self.i += 1;
                                return Ok(Value::Object(out));
                            }
                            Some(',') if !out.is_empty() => self.i += 1,
                            None => return Err("unclosed {".into()),
                            _ => {
                                let key = match self.value(true)? {
                                    Value::String(k) => k,
                                    other => return Err(format!("flow key {other}")),
                                };
                                self.space();
                                if self.s.get(self.i) != Some(&':') {
                                    return Err("flow mapping without ':'".into());
                                }
                                self.i += 1;
                                let v = self.value(true)?;
                                out.insert(key, v);
                            }
                        }
                    }
                }
                Some(_) => {
                    let start = self.i;
                    while let Some(&c) = self.s.get(self.i) {
                        let at_comment = c == '#' && self.i > start && self.s[self.i - 1] == ' ';
                        let next = self.s.get(self.i + 1).copied();
                        let flow_end = in_flow
                            && (c == ','
                                || c == ']'
                                || c == '}'
                                || (c == ':'
                                    && next.is_none_or(|n| [' ', ',', ']', '}'].contains(&n))));
                        if at_comment || flow_end {
                            break;
                        }
                        self.i += 1;
                    }
                    let text: String = self.s[start..self.i].iter().collect();
                    let text = text.trim_end();
                    Ok(match text {
                        "" | "~" | "null" => Value::Null,
                        t => Value::String(t.to_string()),
                    })
                }
            }
        }

        fn double_quoted(&mut self) -> Result<Value, String> {
            self.i += 1;
            let mut out = String::new();
            loop {
                match self.s.get(self.i) {
                    None => return Err("unclosed \"".into()),
                    Some('"') => {
                        self.i += 1;
                        return Ok(Value::String(out));
                    }
                    Some('\\') => {
                        let c = self.s.get(self.i + 1).ok_or("dangling \\")?;
                        out.push(match c {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            '"' | '\\' | '/' => *c,
                            other => return Err(format!("escape \\{other} is not supported")),
                        });
                        self.i += 2;
                    }
                    Some(&c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }

        fn single_quoted(&mut self) -> Result<Value, String> {
            self.i += 1;
            let mut out = String::new();
            loop {
                match self.s.get(self.i) {
                    None => return Err("unclosed '".into()),
                    Some('\'') if self.s.get(self.i + 1) == Some(&'\'') => {
                        out.push('\'');
                        self.i += 2;
                    }
                    Some('\'') => {
                        self.i += 1;
                        return Ok(Value::String(out));
                    }
                    Some(&c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
    }
}
