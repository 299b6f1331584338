//! The bundled demo district and its principals, so `whistle serve` with no flags shows a
//! working system. Demo tokens are random per data directory, shown once at first start
//! and kept (mode 0600) in `<data-dir>/demo-tokens.toml` for the CLI's `--as ID`.
//!
//! `whistle demo` lives below: [`world`] (who reports what, where, when, and how people
//! behave), [`sim`] (the simulator acting over gRPC) and [`command`] (the subcommand).

pub mod command;
pub mod sim;
pub mod world;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DISTRICT_TOML: &str = include_str!("../demo/district.toml");
pub const PRINCIPALS_TOML: &str = include_str!("../demo/principals.toml");
pub const TOKENS_FILE: &str = "demo-tokens.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct DemoPrincipal {
    pub id: String,
    pub role: String,
    #[serde(default)]
    pub department: Option<String>,
    pub name: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub grids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DemoPrincipals {
    principals: Vec<DemoPrincipal>,
}

pub fn principals() -> Result<Vec<DemoPrincipal>> {
    let p: DemoPrincipals =
        toml::from_str(PRINCIPALS_TOML).context("parsing bundled demo principals")?;
    Ok(p.principals)
}

/// principal id → token
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DemoTokens {
    pub tokens: BTreeMap<String, String>,
}

pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKENS_FILE)
}

/// A fresh bearer token: 256 random bits, hex, with a prefix secret scanners can match.
pub fn new_token() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness for tokens: {e}"))?;
    Ok(format!(
        "wst_{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Load the demo tokens of this data directory, creating any that are missing.
/// Returns the tokens and whether any were created (then they are printed once).
pub fn ensure_tokens(data_dir: &Path, principals: &[DemoPrincipal]) -> Result<(DemoTokens, bool)> {
    let path = tokens_path(data_dir);
    let mut tokens = match std::fs::read_to_string(&path) {
        Ok(s) => toml::from_str::<DemoTokens>(&s)
            .with_context(|| format!("parsing {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DemoTokens::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut created = false;
    for p in principals {
        if !tokens.tokens.contains_key(&p.id) {
            tokens.tokens.insert(p.id.clone(), new_token()?);
            created = true;
        }
    }
    if created {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let text = format!(
            "# Demo bearer tokens of this data directory. Secret: anyone with one acts as that principal.\n{}",
            toml::to_string(&tokens).context("encoding demo tokens")?
        );
        write_private(&path, &text)?;
    }
    Ok((tokens, created))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().ok();
    Ok(())
}

/// The token of a demo principal, for the CLI's `--as ID`.
pub fn token_for(data_dir: &Path, id: &str) -> Result<String> {
    let path = tokens_path(data_dir);
    let s = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (start `whistle serve` with this --data-dir first)",
            path.display()
        )
    })?;
    let t: DemoTokens =
        toml::from_str(&s).with_context(|| format!("parsing {}", path.display()))?;
    t.tokens.get(id).cloned().with_context(|| {
        format!(
            "no demo principal {id:?}; known: {}",
            t.tokens.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}
