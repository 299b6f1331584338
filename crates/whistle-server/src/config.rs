//! Configuration: command-line flags, then environment variables (both through clap),
//! then the optional TOML config file, then defaults — in that order of precedence.
//! With nothing given, whistle runs embedded: a SQLite file in `./whistle-data`, the demo
//! district and demo principals, gRPC on 127.0.0.1:50051.

use crate::demo;
use crate::tls::TlsSettings;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use whistle_api::scheduler::SchedulerConfig;
use whistle_api::{Principal, RateLimits, hash_token};
use whistle_bus::{RelayConfig, Retention, Storage, StreamSettings};
use whistle_domain::{District, DistrictSpec, Scope, SlaBook, SlaSpec};
use whistle_store::StoreConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:50052";
pub const DEFAULT_DATA_DIR: &str = "whistle-data";
/// How long `serve` drains after SIGTERM before abandoning what is left: under the
/// 30 s Kubernetes gives a pod by default, so whistle gives up (and says so) before
/// it is killed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// The config file (`--config FILE`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    /// HTTP listen address (/healthz, /readyz, /metrics).
    pub http_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// A district file in the format of the bundled `demo/district.toml`.
    pub district_file: Option<PathBuf>,
    /// An SLA file (policies, rules, calendars) in the format of the shipped presets.
    pub sla_file: Option<PathBuf>,
    /// A shipped SLA preset: `83012` (default) or `beijing-12345`.
    pub sla_preset: Option<String>,
    /// Run the deadline scheduler in this process (default true).
    pub scheduler: Option<bool>,
    pub max_connections: Option<u32>,
    /// Seconds a request waits for a database connection before `UNAVAILABLE`.
    pub acquire_timeout_secs: Option<u64>,
    /// Seconds a shutdown waits for in-flight work before abandoning it [default: 25].
    pub drain_timeout_secs: Option<u64>,
    #[serde(default)]
    pub principals: Vec<PrincipalConfig>,
    /// NATS JetStream (the relay to departments); absent: embedded mode, no relay.
    #[serde(default)]
    pub nats: Option<NatsFileConfig>,
    /// Per-principal rate limits; absent: 50 requests/s, bursts of 100.
    #[serde(default)]
    pub limits: Option<LimitsFileConfig>,
    /// TLS for the gRPC and HTTP ports; absent: plain text.
    #[serde(default)]
    pub tls: Option<TlsFileConfig>,
    /// JWTs from the district's identity provider; absent: whistle's own tokens only.
    #[serde(default)]
    pub jwt: Option<JwtFileConfig>,
}

/// The `[jwt]` table of the config file: accept the identity provider's JWTs (RS256 or
/// ES256) besides whistle's own tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFileConfig {
    /// The provider's exact `iss`.
    pub issuer: Option<String>,
    /// The `aud` tokens for whistle carry.
    pub audience: Option<String>,
    /// The provider's public keys, a JWKS document (`{"keys": [...]}`).
    pub jwks_file: Option<PathBuf>,
    /// Claim holding the whistle role [default: whistle_role].
    pub role_claim: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, seconds [default: 60, at most 600].
    pub leeway_secs: Option<u64>,
}

/// The JWT verifier of `[jwt]`: the key set is read and checked now, so a bad file stops
/// the start rather than refusing every login.
pub fn jwt_settings(file: Option<&JwtFileConfig>) -> Result<Option<whistle_api::JwtVerifier>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let issuer = file.issuer.clone().context("[jwt] issuer is required")?;
    let audience = file
        .audience
        .clone()
        .context("[jwt] audience is required")?;
    let path = file
        .jwks_file
        .as_ref()
        .context("[jwt] jwks_file is required")?;
    let mut config = whistle_api::JwtConfig::new(issuer, audience);
    if let Some(c) = &file.role_claim {
        config.role_claim = c.clone();
    }
    if let Some(l) = file.leeway_secs {
        config.leeway_secs = l;
    }
    let jwks = std::fs::read_to_string(path)
        .with_context(|| format!("[jwt] jwks_file: reading {}", path.display()))?;
    let verifier = whistle_api::JwtVerifier::new(config, &jwks).map_err(|e| match e {
        whistle_api::jwt::JwksError::Config(reason) => anyhow::anyhow!("[jwt] {reason}"),
        other => anyhow::anyhow!("[jwt] jwks_file {}: {other}", path.display()),
    })?;
    Ok(Some(verifier))
}

/// The `[limits]` table of the config file: a token bucket per principal on each node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFileConfig {
    /// Sustained requests per second per principal [default: 50]; 0 makes `burst` a
    /// budget that never refills (tests).
    pub requests_per_second: Option<f64>,
    /// Requests a principal may make at once [default: 100].
    pub burst: Option<u32>,
}

/// The rate limits of `[limits]`, defaults filled in.
pub fn limits_settings(file: Option<&LimitsFileConfig>) -> Result<RateLimits> {
    let mut limits = RateLimits::default();
    let Some(file) = file else {
        return Ok(limits);
    };
    if let Some(r) = file.requests_per_second {
        if !r.is_finite() || r < 0.0 {
            bail!("[limits] requests_per_second must be a number >= 0, got {r}");
        }
        limits.per_second = r;
    }
    if let Some(b) = file.burst {
        if b == 0 {
            bail!("[limits] burst must be at least 1");
        }
        limits.burst = b;
    }
    Ok(limits)
}

/// The `[tls]` table of the config file: PEM files. With `cert` and `key` both ports
/// serve TLS only; with `client_ca` too, clients may present a certificate signed by it
/// and department accounts must present one naming their department.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    /// The server's certificate chain.
    pub cert: Option<PathBuf>,
    /// The server's private key.
    pub key: Option<PathBuf>,
    /// CA of client certificates (mutual TLS for department integrations).
    pub client_ca: Option<PathBuf>,
}

/// The `[nats]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFileConfig {
    /// `nats://host:4222` (comma-separated for a cluster); `--nats-url` wins.
    pub url: Option<String>,
    /// Stream name [default: WHISTLE_CASES].
    pub stream: Option<String>,
    /// Replicas (3 on a cluster) [default: 1].
    pub replicas: Option<usize>,
    /// `file` or `memory` [default: file].
    pub storage: Option<String>,
    /// `limits` or `interest` [default: limits].
    pub retention: Option<String>,
    /// Seconds JetStream de-duplicates by event id [default: 120].
    pub duplicate_window_secs: Option<u64>,
    /// Days messages are kept [default: 30].
    pub max_age_days: Option<u64>,
}

/// A principal in the config file. Only the token's SHA-256 is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    pub id: String,
    pub role: String,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Grid workers, handlers, supervisors: the org node (street, community, compound,
    /// building, unit) whose cases they see and act on. Absent: the whole district.
    #[serde(default)]
    pub scope: Option<String>,
    /// Grid workers: their grids (instead of `scope`).
    #[serde(default)]
    pub grids: Vec<String>,
    pub token_sha256: String,
}

/// What `serve` (and `migrate`) may be given on the command line or in the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "WHISTLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded SQLite database and demo tokens [default: ./whistle-data].
    #[arg(long, env = "WHISTLE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` for PostgreSQL; default is `sqlite://<data-dir>/whistle.db`.
    #[arg(long, env = "WHISTLE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// gRPC listen address [default: 127.0.0.1:50051]; port 0 picks a free port.
    #[arg(long, env = "WHISTLE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP listen address for /healthz, /readyz and /metrics [default: 127.0.0.1:50052];
    /// port 0 picks a free port.
    #[arg(long, env = "WHISTLE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// District file (org tree, catalogue, departments) [default: the bundled demo district].
    #[arg(long, env = "WHISTLE_DISTRICT")]
    pub district: Option<PathBuf>,
    /// SLA file (policies, rules, calendars) [default: the shipped 83012 preset].
    #[arg(long, env = "WHISTLE_SLA")]
    pub sla: Option<PathBuf>,
    /// NATS server(s) to relay case events to (`nats://host:4222`); without it the
    /// relay is off and departments use gRPC `WatchAssignments` (embedded mode).
    #[arg(long, env = "WHISTLE_NATS_URL")]
    pub nats_url: Option<String>,
    /// Replicas of the stream whistle provisions (3 on a three-node cluster); wins over
    /// `[nats] replicas` [default: 1]. An environment variable so that a deployment
    /// without a config file does not get an unreplicated stream on a cluster.
    #[arg(long, env = "WHISTLE_NATS_REPLICAS")]
    pub nats_replicas: Option<usize>,
    /// PEM certificate chain: both ports serve TLS only (with --tls-key).
    #[arg(long, env = "WHISTLE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WHISTLE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA of client certificates: department accounts must present one naming their
    /// department.
    #[arg(long, env = "WHISTLE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds SIGTERM waits for in-flight requests, the relay's current batch and the
    /// store to finish before abandoning them with a warning; wins over
    /// `drain_timeout_secs` in the config file [default: 25]. Keep it under the
    /// orchestrator's grace period (Kubernetes: terminationGracePeriodSeconds).
    #[arg(long, env = "WHISTLE_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
}

/// Fully resolved settings.
pub struct Settings {
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub district: District,
    pub sla: SlaBook,
    /// `None` when this process does not run the deadline scheduler.
    pub scheduler: Option<SchedulerConfig>,
    pub principals: Vec<(String, Principal)>,
    /// Set when the demo principals are in use, so `serve` can show how to log in.
    pub demo_tokens: Option<DemoLogins>,
    /// The relay to NATS JetStream; `None` in embedded mode.
    pub nats: Option<RelayConfig>,
    /// Per-principal rate limits (`[limits]`).
    pub limits: RateLimits,
    /// TLS (and mutual TLS) for both ports; `None`: plain text.
    pub tls: Option<TlsSettings>,
    /// Verifier of the identity provider's JWTs (`[jwt]`); `None`: whistle's tokens only.
    pub jwt: Option<whistle_api::JwtVerifier>,
    /// How long a shutdown drains before abandoning what is left.
    pub drain_timeout: Duration,
}

/// The demo principals' tokens, shown at start.
#[derive(Debug, Clone)]
pub struct DemoLogins {
    /// (principal id, display name, token)
    pub logins: Vec<DemoLogin>,
    /// The tokens were created by this start (a new data directory).
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub id: String,
    pub name: String,
    pub token: String,
}

pub fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

pub fn parse_district(text: &str, origin: &str) -> Result<District> {
    let spec: DistrictSpec =
        toml::from_str(text).with_context(|| format!("parsing district file {origin}"))?;
    District::build(spec).with_context(|| format!("invalid district file {origin}"))
}

pub fn parse_sla(text: &str, origin: &str) -> Result<SlaBook> {
    let spec: SlaSpec =
        toml::from_str(text).with_context(|| format!("parsing SLA file {origin}"))?;
    SlaBook::build(spec).with_context(|| format!("invalid SLA file {origin}"))
}

/// The shipped preset of that name.
pub fn sla_preset(name: &str) -> Result<SlaBook> {
    match name {
        "83012" => parse_sla(whistle_domain::sla::PRESET_83012, "(preset 83012)"),
        "beijing-12345" => parse_sla(
            whistle_domain::sla::PRESET_BEIJING_12345,
            "(preset beijing-12345)",
        ),
        other => bail!("unknown SLA preset {other:?}: use 83012 or beijing-12345"),
    }
}

/// The relay settings: `--nats-url` / `WHISTLE_NATS_URL`, else `[nats] url`; the
/// stream settings from `[nats]`.
fn nats_settings(
    args: &ServeArgs,
    file: Option<&NatsFileConfig>,
    district: &str,
) -> Result<Option<RelayConfig>> {
    let file = file.cloned().unwrap_or_default();
    let Some(url) = args.nats_url.clone().or(file.url.clone()) else {
        return Ok(None);
    };
    whistle_bus::parse_servers(&url).map_err(|e| anyhow::anyhow!("--nats-url: {e}"))?;
    if !whistle_bus::subject::is_token(district) {
        bail!("district id {district:?} cannot be a NATS subject token");
    }
    let mut stream = StreamSettings::new(district);
    if let Some(name) = file.stream {
        if !whistle_bus::subject::is_token(&name) {
            bail!("[nats] stream {name:?}: use letters, digits, '-' or '_'");
        }
        stream.name = name;
    }
    if let Some(r) = args.nats_replicas.or(file.replicas) {
        if !(1..=5).contains(&r) {
            bail!("--nats-replicas / [nats] replicas must be 1 to 5, got {r}");
        }
        stream.replicas = r;
    }
    if let Some(s) = file.storage {
        stream.storage = Storage::parse(&s)
            .with_context(|| format!("[nats] storage {s:?}: use file or memory"))?;
    }
    if let Some(r) = file.retention {
        stream.retention = Retention::parse(&r)
            .with_context(|| format!("[nats] retention {r:?}: use limits or interest"))?;
    }
    if let Some(s) = file.duplicate_window_secs {
        stream.duplicate_window = Duration::from_secs(s.max(1));
    }
    if let Some(d) = file.max_age_days {
        stream.max_age = Duration::from_secs(d.saturating_mul(24 * 3600));
    }
    Ok(Some(RelayConfig::new(url, stream)))
}

fn principal(p: &PrincipalConfig) -> Result<(String, Principal)> {
    let hash = p.token_sha256.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("principal {}: token_sha256 must be 64 hex characters", p.id);
    }
    // The same shape rules as a JWT's claims (whistle_api::jwt).
    let principal = whistle_api::auth::principal_from_parts(
        &p.id,
        &p.role,
        p.department.as_deref(),
        p.name.as_deref(),
        p.scope.as_deref(),
        &p.grids,
    )
    .map_err(|e| anyhow::anyhow!("principal {}: {e}", p.id))?;
    Ok((hash, principal))
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let url = match args.database_url.clone().or(file.database_url.clone()) {
            Some(url) => url,
            None => {
                std::fs::create_dir_all(&data_dir)
                    .with_context(|| format!("creating data directory {}", data_dir.display()))?;
                format!("sqlite://{}", data_dir.join("whistle.db").display())
            }
        };
        let mut store = StoreConfig::new(url);
        if let Some(n) = file.max_connections {
            store.max_connections = n;
        }
        if let Some(s) = file.acquire_timeout_secs {
            store.acquire_timeout = Duration::from_secs(s);
        }
        let http_listen = match args.http_listen.or(file.http_listen) {
            Some(a) => a,
            None => DEFAULT_HTTP_LISTEN
                .parse()
                .context("default HTTP listen address")?,
        };
        let listen = match args.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let district = match args.district.clone().or(file.district_file.clone()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading district file {}", path.display()))?;
                parse_district(&text, &path.display().to_string())?
            }
            None => parse_district(demo::DISTRICT_TOML, "(bundled demo)")?,
        };
        let sla = match args.sla.clone().or(file.sla_file.clone()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading SLA file {}", path.display()))?;
                parse_sla(&text, &path.display().to_string())?
            }
            None => sla_preset(file.sla_preset.as_deref().unwrap_or("83012"))?,
        };
        let scheduler = file
            .scheduler
            .unwrap_or(true)
            .then(SchedulerConfig::default);
        let (principals, demo_tokens) = if file.principals.is_empty() {
            let demo_principals = demo::principals()?;
            let (tokens, created) = demo::ensure_tokens(&data_dir, &demo_principals)?;
            let mut out = Vec::new();
            let mut shown = Vec::new();
            for p in &demo_principals {
                let token = tokens
                    .tokens
                    .get(&p.id)
                    .with_context(|| format!("demo token for {}", p.id))?;
                out.push(principal(&PrincipalConfig {
                    id: p.id.clone(),
                    role: p.role.clone(),
                    department: p.department.clone(),
                    name: Some(p.name.clone()),
                    scope: p.scope.clone(),
                    grids: p.grids.clone(),
                    token_sha256: hash_token(token),
                })?);
                shown.push(DemoLogin {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    token: token.clone(),
                });
            }
            (
                out,
                Some(DemoLogins {
                    logins: shown,
                    created,
                }),
            )
        } else {
            (
                file.principals
                    .iter()
                    .map(principal)
                    .collect::<Result<Vec<_>>>()?,
                None,
            )
        };
        for (_, p) in &principals {
            if let Some(d) = &p.department
                && !district.departments.contains_key(d)
            {
                bail!("principal {}: unknown department {d}", p.id);
            }
            match &p.scope {
                Scope::District => {}
                Scope::Org(o) if district.org.get(o).is_none() => {
                    bail!(
                        "principal {}: scope {o} is not an org node of the district",
                        p.id
                    )
                }
                Scope::Org(_) => {}
                Scope::Grids(gs) => {
                    if let Some(g) = gs.iter().find(|g| district.org.grid(g).is_none()) {
                        bail!("principal {}: unknown grid {g}", p.id);
                    }
                }
            }
        }
        let nats = nats_settings(args, file.nats.as_ref(), &district.id)?;
        let limits = limits_settings(file.limits.as_ref())?;
        let tls_file = file.tls.clone().unwrap_or_default();
        let tls = crate::tls::load_paths(
            args.tls_cert.clone().or(tls_file.cert),
            args.tls_key.clone().or(tls_file.key),
            args.tls_client_ca.clone().or(tls_file.client_ca),
        )?;
        let jwt = jwt_settings(file.jwt.as_ref())?;
        let drain_timeout = args
            .drain_timeout_secs
            .or(file.drain_timeout_secs)
            .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs);
        Ok(Settings {
            data_dir,
            store,
            listen,
            http_listen,
            district,
            sla,
            scheduler,
            principals,
            demo_tokens,
            nats,
            limits,
            tls,
            jwt,
            drain_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_replicas_from_the_flag_win_over_the_file_and_are_bounded() {
        let file = NatsFileConfig {
            replicas: Some(1),
            ..NatsFileConfig::default()
        };
        let mut args = ServeArgs {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..ServeArgs::default()
        };
        let replicas = |args: &ServeArgs| {
            nats_settings(args, Some(&file), "qinghe").map(|c| c.expect("relay on").stream.replicas)
        };
        assert_eq!(replicas(&args).expect("file"), 1);
        args.nats_replicas = Some(3);
        assert_eq!(replicas(&args).expect("flag"), 3);
        args.nats_replicas = Some(7);
        let e = replicas(&args).expect_err("out of range");
        assert!(e.to_string().contains("--nats-replicas"), "{e}");
        let none = ServeArgs {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            nats_settings(&none, None, "qinghe")
                .expect("defaults")
                .expect("relay on")
                .stream
                .replicas,
            1
        );
    }

    #[test]
    fn limits_default_and_refuse_nonsense() {
        assert_eq!(
            limits_settings(None).expect("default"),
            RateLimits::default()
        );
        let file: FileConfig =
            toml::from_str("[limits]\nrequests_per_second = 0\nburst = 5\n").expect("toml");
        let limits = limits_settings(file.limits.as_ref()).expect("fixed budget");
        assert_eq!((limits.per_second, limits.burst), (0.0, 5));
        let partial = LimitsFileConfig {
            requests_per_second: Some(10.0),
            burst: None,
        };
        assert_eq!(limits_settings(Some(&partial)).expect("partial").burst, 100);
        for bad in [
            LimitsFileConfig {
                requests_per_second: Some(-1.0),
                burst: None,
            },
            LimitsFileConfig {
                requests_per_second: None,
                burst: Some(0),
            },
        ] {
            assert!(limits_settings(Some(&bad)).is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<FileConfig>("[limits]\nrps = 1\n").is_err());
    }

    #[test]
    fn jwt_table_is_read_at_start_and_errors_name_the_field() {
        assert!(jwt_settings(None).expect("absent").is_none());
        let dir = std::env::temp_dir().join(format!("whistle-jwt-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let jwks = dir.join("jwks.json");
        // A P-256 public key (the x and y of any point on the curve will do here: the
        // verifier checks sizes at start, the curve at the first token).
        std::fs::write(
            &jwks,
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
              "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
        )
        .expect("write");
        let text = format!(
            "[jwt]\nissuer = \"https://idp\"\naudience = \"whistle\"\njwks_file = {:?}\nleeway_secs = 30\n",
            jwks.display().to_string()
        );
        let file: FileConfig = toml::from_str(&text).expect("toml");
        let v = jwt_settings(file.jwt.as_ref())
            .expect("valid")
            .expect("configured");
        assert_eq!(v.config().leeway_secs, 30);
        assert_eq!(v.config().role_claim, "whistle_role");
        let err = |f: JwtFileConfig| format!("{:#}", jwt_settings(Some(&f)).expect_err("refused"));
        let base = file.jwt.clone().expect("jwt");
        assert!(
            err(JwtFileConfig {
                issuer: None,
                ..base.clone()
            })
            .contains("[jwt] issuer")
        );
        assert!(
            err(JwtFileConfig {
                jwks_file: Some(dir.join("missing.json")),
                ..base.clone()
            })
            .contains("missing.json")
        );
        assert!(
            err(JwtFileConfig {
                leeway_secs: Some(3600),
                ..base.clone()
            })
            .contains("leeway_secs")
        );
        std::fs::write(&jwks, "{}").expect("write");
        assert!(err(base).contains("jwks.json"));
        assert!(toml::from_str::<FileConfig>("[jwt]\nissuer = \"x\"\nkeys = 1\n").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
