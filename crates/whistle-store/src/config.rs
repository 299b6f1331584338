//! Connection and group-commit settings.

use std::fmt;
use std::time::Duration;

/// How to open a store.
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://…` (or `postgresql://…`) for PostgreSQL, `sqlite://path/to/file.db`
    /// (created if missing, parent directories too) for SQLite. In-memory
    /// SQLite is refused: readers and the writer use separate connections.
    pub url: String,
    /// Size of the read pool (reads, migrations). The writer has its own
    /// single connection so reads never starve commits.
    pub max_connections: u32,
    /// How long an operation waits for a connection before it fails with
    /// `Unavailable`; bounds how long callers hang while the database is down.
    pub acquire_timeout: Duration,
    /// Sizing of the group-commit writer.
    pub group_commit: GroupCommitConfig,
}

impl StoreConfig {
    /// A configuration with default pool and group-commit settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            group_commit: GroupCommitConfig::default(),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("group_commit", &self.group_commit)
            .finish()
    }
}

/// The url with the password (if any) replaced, for logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_owned(),
    }
}

/// Sizing of the group-commit writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Most units (append calls) one batch transaction takes; bounds the size
    /// of a transaction and the latency added to the first caller in it.
    pub max_batch: usize,
    /// Capacity of the writer's queue; callers wait (back-pressure) when full.
    pub queue_depth: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue_depth: 4096,
        }
    }
}

/// The admin URL with its database replaced by `name` (query string kept).
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://a/b.db"), "sqlite://a/b.db");
    }
}
