//! Test support, behind the `testing` feature: real nats-server processes.
//!
//! The binary is `$WHISTLE_NATS_SERVER` (default `/usr/sbin/nats-server`, the
//! Debian 2.9.10 package; CI runs the NATS tests a second time against a 2.15
//! binary). Every server runs `-a 127.0.0.1 -p -1 -js -sd <tmp> --ports_file_dir
//! <tmp>`: the port is free and read back from the ports file. A server is
//! killed on `Drop`, and a parent-death signal (`prctl(PR_SET_PDEATHSIG)`)
//! kills it if the test process dies first, so killed tests leave no servers.
//!
//! [`NatsServer::start_on_port`] takes a given port instead (a client configured
//! before the server exists, e.g. readiness waiting for NATS).
//!
//! [`NatsServer::start_with_config`] runs a server from a configuration file
//! instead (the `deploy/nats` one, with users and permissions): same loopback
//! address, free port and temporary store.
//!
//! When the binary is missing a test is skipped (`SKIPPED (nats-server
//! unavailable): <test>` on stderr), unless `WHISTLE_REQUIRE_SERVICES=1`,
//! where it fails. Being test code, these helpers panic on errors.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server used when `WHISTLE_NATS_SERVER` is not set.
pub const DEFAULT_NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The nats-server binary tests run.
pub fn nats_server_binary() -> PathBuf {
    std::env::var_os("WHISTLE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NATS_SERVER))
}

fn services_required() -> bool {
    std::env::var("WHISTLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether the binary exists; prints the SKIPPED line (or panics when
/// services are required) if not.
pub fn available(test_name: &str) -> bool {
    let bin = nats_server_binary();
    if bin.is_file() {
        return true;
    }
    if services_required() {
        panic!(
            "nats-server is required (WHISTLE_REQUIRE_SERVICES=1) but {} does not exist",
            bin.display()
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (nats-server unavailable): {test_name}"
    );
    false
}

/// The server's version line (`nats-server: v2.9.10`), for test logs.
pub fn version() -> String {
    Command::new(nats_server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One nats-server process with JetStream and its own store directory.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    /// Extra arguments (cluster settings), kept for restarts.
    extra: Vec<String>,
    /// A configuration file (`-c`), which then also enables JetStream and names
    /// the store directory.
    config: Option<PathBuf>,
    /// Environment of the server process (variables the configuration reads).
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a standalone server on a free port. `None` (after printing the
    /// SKIPPED line) when the binary is missing and not required.
    pub fn start(test_name: &str) -> Option<NatsServer> {
        if !available(test_name) {
            return None;
        }
        Some(Self::start_with(Vec::new()))
    }

    /// Starts a standalone server on `port` (e.g. one a client was pointed at
    /// while nothing listened there). `None` as [`NatsServer::start`].
    pub fn start_on_port(test_name: &str, port: u16) -> Option<NatsServer> {
        if !available(test_name) {
            return None;
        }
        let mut server = NatsServer {
            child: None,
            dir: new_dir(),
            port,
            extra: Vec::new(),
            config: None,
            env: Vec::new(),
        };
        server.spawn(Some(port));
        Some(server)
    }

    /// Starts a server from the text of a configuration file, run with `-c` on
    /// loopback and a free port (the flags outrank the file's `listen`). Every
    /// `store_dir:` line is pointed at this server's temporary store (nats-server
    /// refuses `-sd` beside a `store_dir`); `env` is the server's environment, from
    /// which it reads the `$NAME`s the file does not define (passwords).
    pub fn start_with_config(
        test_name: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Option<NatsServer> {
        if !available(test_name) {
            return None;
        }
        let dir = new_dir();
        let store = dir.join("store");
        let text = config
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("store_dir:") {
                    format!("  store_dir: {:?}", store.display().to_string())
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = dir.join("nats-server.conf");
        std::fs::write(&path, text).expect("writing the nats-server configuration");
        let mut server = NatsServer {
            child: None,
            dir,
            port: 0,
            extra: Vec::new(),
            config: Some(path),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        server.spawn(None);
        Some(server)
    }

    fn start_with(extra: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            dir: new_dir(),
            port: 0,
            extra,
            config: None,
            env: Vec::new(),
        };
        server.spawn(None);
        server
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["-a", "127.0.0.1", "-p"])
            .arg(port.map_or_else(|| "-1".to_owned(), |p| p.to_string()));
        match &self.config {
            Some(config) => cmd.arg("-c").arg(config),
            None => cmd.arg("-js").arg("-sd").arg(self.dir.join("store")),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        guard_parent_death(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", nats_server_binary().display()));
        self.port = read_port(&ports_dir, "nats");
        self.child = Some(child);
        wait_tcp(self.port);
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (store and ports file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (SIGKILL); its store directory stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(Some(port));
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three (or more) JetStream servers clustered on loopback.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes; kill one with `nodes[i].kill()`.
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    /// Starts `n` clustered servers. `None` when the binary is unavailable.
    pub fn start(test_name: &str, n: usize) -> Option<Cluster> {
        if !available(test_name) {
            return None;
        }
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let name = format!("whistle-{}", uuid::Uuid::now_v7().simple());
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                NatsServer::start_with(vec![
                    "--cluster_name".into(),
                    name.clone(),
                    "-n".into(),
                    format!("node-{i}"),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".into(),
                    routes.clone(),
                ])
            })
            .collect();
        Some(Cluster { nodes })
    }

    /// All client URLs, comma-separated (what `async_nats::connect` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn new_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("whistle-nats-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("nats temp dir");
    dir
}

#[cfg(target_os = "linux")]
fn guard_parent_death(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn guard_parent_death(_cmd: &mut Command) {}

/// Reads `<kind>` port from the ports file nats-server writes
/// (`{"nats": ["nats://127.0.0.1:4222"], …}`).
fn read_port(dir: &Path, kind: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if let Some(port) = json[kind][0]
                    .as_str()
                    .and_then(|url| url.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                {
                    return port;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "nats-server wrote no ports file in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
