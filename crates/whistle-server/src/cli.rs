//! `whistle case …`: a gRPC client for people, so nobody has to write a client to try
//! whistle. It speaks the same public contract as any integration.
//!
//! TLS: an `https://` server URL, or `--tls-ca`, connects over TLS, verifying the server
//! against that CA — this build has no system root certificates (tonic without
//! `tls-native-roots`/`tls-webpki-roots`), so `https://` needs `--tls-ca`. `--tls-cert`
//! and `--tls-key` present a client certificate: a department account needs its own
//! when the server has a client CA. Every file is read and parsed before connecting,
//! each error naming its file.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use whistle_proto::v1 as pb;
use whistle_proto::v1::case_handling_service_client::CaseHandlingServiceClient;
use whistle_proto::v1::case_query_service_client::CaseQueryServiceClient;
use whistle_proto::v1::intake_service_client::IntakeServiceClient;

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// gRPC endpoint of a running whistle.
    #[arg(
        long,
        env = "WHISTLE_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// PEM CA that signed the server's certificate: connect over TLS (implied by an
    /// https:// --server; required with it, as this build has no system roots).
    #[arg(long, env = "WHISTLE_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --tls-key), e.g. a department's.
    #[arg(long, env = "WHISTLE_TLS_CLIENT_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WHISTLE_TLS_CLIENT_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry [default: the --server host].
    #[arg(long, env = "WHISTLE_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
    /// Bearer token.
    #[arg(long, env = "WHISTLE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Act as this demo principal (token read from <data-dir>/demo-tokens.toml).
    #[arg(long = "as", global = true)]
    pub as_principal: Option<String>,
    /// Data directory of the demo server, for --as.
    #[arg(
        long,
        env = "WHISTLE_DATA_DIR",
        default_value = "whistle-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Refuse the command unless the case is still at this version (ABORTED otherwise).
    #[arg(long, global = true)]
    pub expected_version: Option<u64>,
    /// Idempotency key: retrying with the same key never acts twice.
    #[arg(long, global = true)]
    pub key: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CaseCommand {
    /// Report a problem.
    Report {
        #[arg(long)]
        category: String,
        /// Compound, building or unit id, e.g. hongqi-jiayuan-b2-u1.
        #[arg(long)]
        location: String,
        #[arg(long)]
        description: String,
        /// normal, urgent or emergency.
        #[arg(long)]
        urgency: Option<String>,
        /// The resident's name (stored apart from the case's events; erasable).
        #[arg(long, requires = "contact_phone")]
        contact_name: Option<String>,
        /// The resident's phone.
        #[arg(long, requires = "contact_name")]
        contact_phone: Option<String>,
        /// The exact address (room number …).
        #[arg(long, requires = "contact_name")]
        contact_address: Option<String>,
    },
    /// Show a case and its timeline.
    Show {
        case_id: String,
    },
    /// Assign to a handler (principal) or, at ESCALATED, a department.
    Assign {
        case_id: String,
        #[arg(long, conflicts_with = "department")]
        principal: Option<String>,
        #[arg(long)]
        department: Option<String>,
    },
    /// Sign for the case (签收).
    Ack {
        case_id: String,
    },
    /// Report arriving on site.
    OnSite {
        case_id: String,
    },
    /// Add a note.
    Note {
        case_id: String,
        #[arg(long)]
        text: String,
    },
    /// Resolve, optionally with evidence given as URL=SHA256.
    Resolve {
        case_id: String,
        #[arg(long)]
        summary: String,
        #[arg(long)]
        evidence: Vec<String>,
    },
    /// Move the case one rung up.
    Escalate {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Hand the case to another handler at the same rung.
    Transfer {
        case_id: String,
        #[arg(long, conflicts_with = "department")]
        principal: Option<String>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// A department declines ("not ours").
    Decline {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    Pause {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    Resume {
        case_id: String,
    },
    /// Confirm a resolution with satisfaction 1-5.
    Confirm {
        case_id: String,
        #[arg(long)]
        satisfaction: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
    Reopen {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    Withdraw {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    Reject {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Merge this duplicate into another case.
    Merge {
        case_id: String,
        #[arg(long)]
        into: String,
        #[arg(long)]
        reason: String,
    },
}

/// `whistle admin …`: the SLA book, the roster and the bearer tokens of a running server.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Print the SLA book in force (TOML, every policy version).
    SlaShow,
    /// Publish policy versions, rules and calendars from a TOML file.
    SlaPublish { file: PathBuf },
    /// Print the roster in force.
    RosterShow,
    /// Issue a bearer token; it is printed once (whistle keeps only its SHA-256).
    TokenIssue {
        /// Principal id the token authenticates as.
        #[arg(long)]
        principal: String,
        /// resident, grid_worker, handler, department, supervisor or admin.
        #[arg(long)]
        role: String,
        /// The department a department account signs for.
        #[arg(long)]
        department: Option<String>,
        /// Org node whose cases the principal sees and acts on (default: the district).
        #[arg(long, conflicts_with = "grids")]
        scope: Option<String>,
        /// Grid workers: their grids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        grids: Vec<String>,
        /// Display name (default: the principal id).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime: `30d`, `12h`, `90m`, `45s` or seconds (default: until revoked).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// Revoke an issued token by its id (see token-list).
    TokenRevoke { token_id: String },
    /// List issued tokens (never the tokens themselves).
    TokenList {
        /// Also revoked and expired tokens.
        #[arg(long)]
        all: bool,
    },
}

/// `30d`, `12h`, `90m`, `45s` or plain seconds.
fn parse_ttl(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: use e.g. 30d, 12h, 90m, 45s or seconds"))?;
    let unit = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        other => return Err(format!("{s:?}: unknown unit {other:?} (d, h, m or s)")),
    };
    n.checked_mul(unit)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: must be positive and not absurdly long"))
}

fn print_token(t: &pb::TokenInfo) {
    let scope = if !t.scope.is_empty() {
        t.scope.clone()
    } else if !t.grids.is_empty() {
        format!("grids:{}", t.grids.join(","))
    } else {
        "district".into()
    };
    let state = if t.revoked {
        format!("revoked {}", fmt_ts(t.revoked_at.as_ref()))
    } else if t.active {
        "active".into()
    } else {
        "expired".into()
    };
    println!(
        "  {:<36} {:<16} {:<11} {:<10} {:<22} expires {:<17} {}",
        t.token_id,
        t.principal_id,
        t.role,
        if t.department.is_empty() {
            "-"
        } else {
            &t.department
        },
        scope,
        t.expires_at
            .as_ref()
            .map_or_else(|| "never".into(), |e| fmt_ts(Some(e))),
        state
    );
}

struct Client {
    channel: Channel,
    auth: MetadataValue<tonic::metadata::Ascii>,
    expected_version: Option<u64>,
    key: String,
}

impl Client {
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }
    fn intake(&self) -> IntakeServiceClient<Channel> {
        IntakeServiceClient::new(self.channel.clone())
    }
    fn handling(&self) -> CaseHandlingServiceClient<Channel> {
        CaseHandlingServiceClient::new(self.channel.clone())
    }
    fn query(&self) -> CaseQueryServiceClient<Channel> {
        CaseQueryServiceClient::new(self.channel.clone())
    }
    fn reason(&self, case_id: &str, reason: &str) -> pb::ReasonRequest {
        pb::ReasonRequest {
            case_id: case_id.into(),
            expected_version: self.expected_version,
            idempotency_key: self.key.clone(),
            reason: reason.into(),
        }
    }
    fn plain(&self, case_id: &str) -> pb::CaseCommandRequest {
        pb::CaseCommandRequest {
            case_id: case_id.into(),
            expected_version: self.expected_version,
            idempotency_key: self.key.clone(),
        }
    }
}

async fn connect(args: &ClientArgs) -> Result<Client> {
    let token = match (&args.token, &args.as_principal) {
        (_, Some(id)) => crate::demo::token_for(&args.data_dir, id)?,
        (Some(t), None) => t.clone(),
        (None, None) => bail!("give --as DEMO_PRINCIPAL or --token TOKEN (or WHISTLE_TOKEN)"),
    };
    let channel = channel(args).await?;
    Ok(Client {
        channel,
        auth: format!("Bearer {token}")
            .parse()
            .context("token is not valid header text")?,
        expected_version: args.expected_version,
        key: args.key.clone().unwrap_or_default(),
    })
}

/// The channel to `--server`: over TLS with `--tls-ca` or an `https://` URL (an
/// `http://` URL is then switched to `https://`, as tonic speaks TLS only to https URIs).
async fn channel(args: &ClientArgs) -> Result<Channel> {
    let tls = client_tls(args)?;
    let url = match (&tls, args.server.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => args.server.clone(),
    };
    let mut endpoint = Channel::from_shared(url.clone()).context("invalid --server URL")?;
    if let Some(cfg) = tls {
        endpoint = endpoint.tls_config(cfg).with_context(|| {
            format!(
                "TLS configuration (--tls-ca {}{})",
                args.tls_ca
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string()),
                match (&args.tls_cert, &args.tls_key) {
                    (Some(c), Some(k)) =>
                        format!(", --tls-cert {}, --tls-key {}", c.display(), k.display()),
                    _ => String::new(),
                }
            )
        })?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// tonic's TLS configuration from the `--tls-*` flags; `None`: plain text.
fn client_tls(args: &ClientArgs) -> Result<Option<ClientTlsConfig>> {
    let https = args
        .server
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together (WHISTLE_TLS_CLIENT_CERT/KEY)"),
    };
    let Some(ca) = &args.tls_ca else {
        if https {
            bail!(
                "--server {} uses TLS: give --tls-ca FILE (or WHISTLE_TLS_CA), the PEM CA \
                 that signed the server's certificate; this build of whistle has no system \
                 root certificates",
                args.server
            );
        }
        if identity.is_some() {
            bail!("--tls-cert/--tls-key need TLS: give --tls-ca FILE (or WHISTLE_TLS_CA)");
        }
        return Ok(None);
    };
    let ca_pem = crate::tls::read("CA", ca)?;
    crate::tls::certs("CA", ca, &ca_pem)?;
    let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
    if let Some((cert, key)) = identity {
        let cert_pem = crate::tls::read("client certificate", cert)?;
        crate::tls::certs("client certificate", cert, &cert_pem)?;
        let key_pem = crate::tls::read("client key", key)?;
        PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
            format!(
                "parsing TLS client key file {}: no PEM private key",
                key.display()
            )
        })?;
        cfg = cfg.identity(Identity::from_pem(cert_pem, key_pem));
    }
    if let Some(domain) = &args.tls_domain {
        cfg = cfg.domain_name(domain.clone());
    }
    Ok(Some(cfg))
}

pub async fn run_admin(args: ClientArgs, cmd: AdminCommand) -> Result<()> {
    let c = connect(&args).await?;
    let mut admin =
        whistle_proto::v1::admin_service_client::AdminServiceClient::new(c.channel.clone());
    match cmd {
        AdminCommand::SlaShow => {
            let d = admin
                .get_sla(c.req(pb::GetSlaRequest {}))
                .await
                .map_err(status_error)?
                .into_inner();
            println!("# admin SLA stream version {}\n{}", d.version, d.toml);
        }
        AdminCommand::SlaPublish { file } => {
            let toml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let a = admin
                .publish_sla(c.req(pb::PublishSlaRequest {
                    toml,
                    expected_version: c.expected_version,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            println!("published (admin SLA stream version {}):", a.version);
            for line in a.changes {
                println!("  - {line}");
            }
        }
        AdminCommand::RosterShow => {
            let d = admin
                .get_routing(c.req(pb::GetRoutingRequest {}))
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "roster (admin routing stream version {}), takeover: {}",
                d.version,
                if d.takeover_principal_id.is_empty() {
                    "-"
                } else {
                    &d.takeover_principal_id
                }
            );
            for e in d.entries {
                println!(
                    "  {:<9} {:<22} {:<16} {}",
                    level_str(e.level),
                    e.org,
                    e.principal_id,
                    e.party
                );
            }
        }
        AdminCommand::TokenIssue {
            principal,
            role,
            department,
            scope,
            grids,
            name,
            ttl,
        } => {
            let r = admin
                .issue_token(c.req(pb::IssueTokenRequest {
                    principal_id: principal,
                    role,
                    department: department.unwrap_or_default(),
                    scope: scope.unwrap_or_default(),
                    grids,
                    name: name.unwrap_or_default(),
                    expires_at: None,
                    ttl_seconds: ttl,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            let info = r.info.unwrap_or_default();
            eprintln!(
                "issued token {} for {} ({}), expires {} — shown once, keep it now:",
                info.token_id,
                info.principal_id,
                info.role,
                info.expires_at
                    .as_ref()
                    .map_or_else(|| "never".into(), |e| fmt_ts(Some(e)))
            );
            println!("{}", r.token);
        }
        AdminCommand::TokenRevoke { token_id } => {
            let a = admin
                .revoke_token(c.req(pb::RevokeTokenRequest { token_id }))
                .await
                .map_err(status_error)?
                .into_inner();
            for line in a.changes {
                println!("{line} (admin tokens stream version {})", a.version);
            }
        }
        AdminCommand::TokenList { all } => {
            let l = admin
                .list_tokens(c.req(pb::ListTokensRequest {
                    include_inactive: all,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "issued tokens (admin tokens stream version {}): {}",
                l.version,
                l.tokens.len()
            );
            for t in &l.tokens {
                print_token(t);
            }
        }
    }
    Ok(())
}

fn handler(principal: Option<String>, department: Option<String>) -> Result<pb::Handler> {
    let kind = match (principal, department) {
        (Some(p), None) => pb::handler::Kind::PrincipalId(p),
        (None, Some(d)) => pb::handler::Kind::DepartmentId(d),
        _ => bail!("give --principal ID or --department ID"),
    };
    Ok(pb::Handler { kind: Some(kind) })
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn fmt_ts(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map_or_else(|| "-".into(), whistle_api::convert::local_time)
}

/// `-1h02m`, `7m30s`, `2d03h`: short enough for a table.
fn fmt_secs(s: i64) -> String {
    let sign = if s < 0 { "-" } else { "" };
    let s = s.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d{h:02}h")
    } else if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else {
        format!("{sign}{m}m{sec:02}s")
    }
}

fn print_ack(what: &str, a: &pb::CommandAck) {
    println!(
        "{what}: case {} now at version {}{}",
        a.case_id,
        a.version,
        if a.replayed {
            " (replayed: already done earlier with this key)"
        } else {
            ""
        }
    );
}

fn handler_str(h: Option<&pb::Handler>) -> String {
    match h.and_then(|h| h.kind.as_ref()) {
        Some(pb::handler::Kind::PrincipalId(p)) => format!("principal:{p}"),
        Some(pb::handler::Kind::DepartmentId(d)) => format!("department:{d}"),
        None => "-".into(),
    }
}

fn level_str(l: i32) -> &'static str {
    pb::Level::try_from(l).map_or("?", |l| l.as_str_name().trim_start_matches("LEVEL_"))
}

pub async fn run(args: ClientArgs, cmd: CaseCommand) -> Result<()> {
    let c = connect(&args).await?;
    match cmd {
        CaseCommand::Report {
            category,
            location,
            description,
            urgency,
            contact_name,
            contact_phone,
            contact_address,
        } => {
            let urgency = match urgency.as_deref() {
                None => pb::Urgency::Unspecified,
                Some("normal") => pb::Urgency::Normal,
                Some("urgent") => pb::Urgency::Urgent,
                Some("emergency") => pb::Urgency::Emergency,
                Some(other) => bail!("--urgency {other:?}: use normal, urgent or emergency"),
            };
            let r = c
                .intake()
                .report_case(c.req(pb::ReportCaseRequest {
                    category,
                    location,
                    description,
                    channel: pb::Channel::Unspecified.into(),
                    urgency: urgency.into(),
                    idempotency_key: c.key.clone(),
                    contact: contact_name.map(|name| pb::ResidentContact {
                        name,
                        phone: contact_phone.unwrap_or_default(),
                        address: contact_address.unwrap_or_default(),
                    }),
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            let ack = r.ack.unwrap_or_default();
            println!(
                "reported: case {} at level {}{}{}",
                ack.case_id,
                level_str(r.level),
                if r.fast_channel {
                    " (fast channel 急事急办)"
                } else {
                    ""
                },
                if ack.replayed {
                    " (replayed: reported earlier with this key)"
                } else {
                    ""
                }
            );
        }
        CaseCommand::Show { case_id } => {
            let r = c
                .query()
                .get_case_timeline(c.req(pb::GetCaseTimelineRequest { case_id }))
                .await
                .map_err(status_error)?
                .into_inner();
            let v = r.case.unwrap_or_default();
            println!("case {}  (version {})", v.case_id, v.version);
            println!("  category   {}", v.category);
            println!(
                "  location   {} (compound {}, grid {})",
                v.location,
                v.compound,
                if v.grid.is_empty() { "-" } else { &v.grid }
            );
            println!(
                "  level      {}{}",
                level_str(v.level),
                if v.fast_channel {
                    " (fast channel)"
                } else {
                    ""
                }
            );
            let state = match v.status.as_str() {
                "open" => format!("open / {}", v.stage),
                "closed" => format!("closed / {}", v.closure),
                s => s.to_string(),
            };
            println!(
                "  status     {state}{}",
                if v.paused {
                    format!(" (paused: {})", v.pause_reason)
                } else {
                    String::new()
                }
            );
            println!("  handler    {}", handler_str(v.handler.as_ref()));
            if v.satisfaction > 0 {
                println!("  satisfied  {}/5", v.satisfaction);
            }
            println!(
                "  reported   {} by {}",
                fmt_ts(v.reported_at.as_ref()),
                v.reporter_id
            );
            println!("  description: {}", v.description);
            if !v.milestones.is_empty() {
                println!("  clocks:");
                for m in &v.milestones {
                    let remaining = m.remaining.as_ref().map_or(0, |d| d.seconds);
                    let left = if m.state == "pending" || m.state == "warned" {
                        format!("  {} left", fmt_secs(remaining))
                    } else {
                        String::new()
                    };
                    println!(
                        "    {:<9} {:<9} {:<9} due {}  [{} v{}]{}",
                        m.milestone,
                        level_str(m.level),
                        m.state,
                        fmt_ts(m.deadline.as_ref()),
                        m.policy,
                        m.policy_version,
                        left
                    );
                }
            }
            if !v.holds.is_empty() {
                println!("  held by:");
                for h in &v.holds {
                    println!(
                        "    {:<24} {:<9} {} → {}",
                        handler_str(h.handler.as_ref()),
                        level_str(h.level),
                        fmt_ts(h.from.as_ref()),
                        h.to.as_ref().map_or("now".to_string(), |t| fmt_ts(Some(t)))
                    );
                }
            }
            println!("  timeline:");
            for e in r.entries {
                let actor = e.actor.unwrap_or_default();
                println!(
                    "    v{:<3} {}  {:<16} {:<12} {}",
                    e.version,
                    fmt_ts(e.occurred_at.as_ref()),
                    actor.principal_id,
                    actor.role,
                    e.summary
                );
            }
        }
        CaseCommand::Assign {
            case_id,
            principal,
            department,
        } => {
            let a = c
                .handling()
                .assign_case(c.req(pb::AssignCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    handler: Some(handler(principal, department)?),
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("assigned", &a);
        }
        CaseCommand::Ack { case_id } => {
            let a = c
                .handling()
                .acknowledge_case(c.req(c.plain(&case_id)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("signed for", &a);
        }
        CaseCommand::OnSite { case_id } => {
            let a = c
                .handling()
                .arrive_on_site(c.req(c.plain(&case_id)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("on site", &a);
        }
        CaseCommand::Note { case_id, text } => {
            let a = c
                .intake()
                .add_note(c.req(pb::AddNoteRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    text,
                    evidence: vec![],
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("note added", &a);
        }
        CaseCommand::Resolve {
            case_id,
            summary,
            evidence,
        } => {
            let evidence = evidence
                .iter()
                .map(|e| {
                    let (url, sha) = e
                        .rsplit_once('=')
                        .with_context(|| format!("--evidence {e:?}: use URL=SHA256"))?;
                    Ok(pb::Evidence {
                        url: url.into(),
                        sha256: sha.into(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let a = c
                .handling()
                .resolve_case(c.req(pb::ResolveCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    summary,
                    evidence,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("resolved", &a);
        }
        CaseCommand::Escalate { case_id, reason } => {
            let a = c
                .handling()
                .escalate_case(c.req(c.reason(&case_id, &reason)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("escalated", &a);
        }
        CaseCommand::Transfer {
            case_id,
            principal,
            department,
            reason,
        } => {
            let a = c
                .handling()
                .transfer_case(c.req(pb::TransferCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    to: Some(handler(principal, department)?),
                    reason,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("transferred", &a);
        }
        CaseCommand::Decline { case_id, reason } => {
            let a = c
                .handling()
                .decline_case(c.req(c.reason(&case_id, &reason)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("declined", &a);
        }
        CaseCommand::Pause { case_id, reason } => {
            let a = c
                .handling()
                .pause_clock(c.req(c.reason(&case_id, &reason)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("paused", &a);
        }
        CaseCommand::Resume { case_id } => {
            let a = c
                .handling()
                .resume_clock(c.req(c.plain(&case_id)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("resumed", &a);
        }
        CaseCommand::Confirm {
            case_id,
            satisfaction,
            comment,
        } => {
            let a = c
                .intake()
                .confirm_resolution(c.req(pb::ConfirmResolutionRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    satisfaction,
                    comment,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("confirmed", &a);
        }
        CaseCommand::Reopen { case_id, reason } => {
            let a = c
                .intake()
                .reopen_case(c.req(pb::ReopenCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    reason,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("reopened", &a);
        }
        CaseCommand::Withdraw { case_id, reason } => {
            let a = c
                .intake()
                .withdraw_case(c.req(pb::WithdrawCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    reason,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("withdrawn", &a);
        }
        CaseCommand::Reject { case_id, reason } => {
            let a = c
                .handling()
                .reject_case(c.req(c.reason(&case_id, &reason)))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("rejected", &a);
        }
        CaseCommand::Merge {
            case_id,
            into,
            reason,
        } => {
            let a = c
                .handling()
                .merge_case(c.req(pb::MergeCaseRequest {
                    case_id,
                    expected_version: c.expected_version,
                    idempotency_key: c.key.clone(),
                    into_case_id: into,
                    reason,
                }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_ack("merged", &a);
        }
    }
    Ok(())
}
