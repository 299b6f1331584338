//! Test support, behind the `testing` feature: a fresh PostgreSQL database or
//! SQLite file per test, and the skip-or-fail rule for PostgreSQL.
//!
//! PostgreSQL tests use the shared server (admin URL from
//! `WHISTLE_TEST_PG_URL`, default [`DEFAULT_PG_ADMIN_URL`]) and create a
//! database `whistle_t_<uuid>` per test, dropped (`WITH (FORCE)`, best
//! effort) when the handle is dropped, even if the test panicked. When the
//! server is unreachable a test is skipped (it prints `SKIPPED (PostgreSQL
//! unreachable): <test name>` and returns), unless `WHISTLE_REQUIRE_SERVICES=1`,
//! in which case it fails. Being test code, these helpers panic on errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{Store, StoreConfig};

/// Admin URL used when `WHISTLE_TEST_PG_URL` is not set.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

/// The PostgreSQL admin URL tests create their databases through.
pub fn pg_admin_url() -> String {
    std::env::var("WHISTLE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// Whether unreachable services fail tests instead of skipping them
/// (`WHISTLE_REQUIRE_SERVICES=1`, set in CI).
pub fn services_required() -> bool {
    std::env::var("WHISTLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Store settings for tests: small pools, short acquire timeout.
pub fn test_config(url: &str) -> StoreConfig {
    let mut cfg = StoreConfig::new(url);
    cfg.max_connections = 4;
    cfg.acquire_timeout = Duration::from_secs(5);
    cfg
}

async fn admin_connect(admin_url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

/// A fresh, empty PostgreSQL database for one test; dropped on `Drop`.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDb {
    /// Creates the database. Returns `None` after printing the SKIPPED line
    /// when PostgreSQL is unreachable and not required.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable and `WHISTLE_REQUIRE_SERVICES=1`, or
    /// when the database cannot be created.
    pub async fn create(test_name: &str) -> Option<PgTestDb> {
        let admin_url = pg_admin_url();
        let mut admin = match admin_connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) if services_required() => {
                panic!("PostgreSQL is required (WHISTLE_REQUIRE_SERVICES=1) but unreachable: {e}")
            }
            Err(_) => {
                // Straight to the stderr handle: libtest captures `eprintln!`
                // of passing tests, and a skip must be visible.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED (PostgreSQL unreachable): {test_name}"
                );
                return None;
            }
        };
        let name = format!("whistle_t_{}", Uuid::now_v7().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let url = crate::with_database(&admin_url, &name);
        Some(PgTestDb {
            admin_url,
            name,
            url,
        })
    }

    /// URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin URL the database was created through.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Opens a store on the database and migrates it.
    ///
    /// # Panics
    /// If either fails.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&test_config(&self.url))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {}: {e}", self.name));
        store
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime (or while panicking): do the async
        // work on a thread of its own.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = admin_connect(&admin_url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = worker.join();
    }
}

/// A fresh SQLite database file in its own temporary directory, removed on `Drop`.
#[derive(Debug)]
pub struct SqliteTestDb {
    dir: PathBuf,
    url: String,
}

impl SqliteTestDb {
    /// Picks a new directory under the system temp dir (created by the store).
    pub fn new() -> SqliteTestDb {
        let dir = std::env::temp_dir().join(format!("whistle-store-{}", Uuid::now_v7().simple()));
        let url = format!("sqlite://{}", dir.join("events.db").display());
        SqliteTestDb { dir, url }
    }

    /// `sqlite://…/events.db`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens a store on the file and migrates it.
    ///
    /// # Panics
    /// If either fails.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&test_config(&self.url))
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {}: {e}", self.url));
        store
    }
}

impl Default for SqliteTestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SqliteTestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of PostgreSQL that a test can take down and bring back on the
/// same port: "the database went away" without touching the shared server. Used by the
/// store's conformance tests and the end-to-end tests.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mut proxy = Proxy {
            addr,
            upstream,
            accept: None,
            conns: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        let conns = std::sync::Arc::clone(&self.conns);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("conns").push(conn);
            }
        }));
    }

    /// Closes the listening socket and every proxied connection.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let conns: Vec<_> = std::mem::take(&mut *self.conns.lock().expect("conns"));
        for conn in conns {
            conn.abort();
            let _ = conn.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy");
        self.serve(listener);
    }
}

#[cfg(test)]
mod tests {
    use crate::with_database as database_url;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            database_url("postgres://root@127.0.0.1:5432/postgres", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            database_url("postgres://h:5432", "b"),
            "postgres://h:5432/b"
        );
    }
}
