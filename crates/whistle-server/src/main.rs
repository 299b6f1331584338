//! `whistle`: with no arguments, `serve` in the embedded default (SQLite file, demo
//! district). Subcommands: `serve`, `migrate`, `district` (print ids to use), `case …`
//! (a gRPC client for people) and `demo` (a simulated day on an accelerated clock).
//! SIGTERM or ctrl-c ends `serve` with a bounded drain (`app` module docs), exit status 0.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use whistle_server::app::Application;
use whistle_server::cli::{self, CaseCommand, ClientArgs};
use whistle_server::config::{ServeArgs, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "whistle",
    version,
    about = "小区吹哨、部门报到 — complaint escalation with response-time commitments"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(ServeArgs),
    /// Print the district's categories and example locations, for reporting.
    District(ServeArgs),
    /// Administer a running server: the SLA book, the roster and bearer tokens.
    Admin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::AdminCommand,
    },
    /// What-if: score the log's milestones under a candidate SLA file beside the actual
    /// figures, per level, department and category. Writes nothing.
    Replay {
        #[command(flatten)]
        store: ServeArgs,
        /// Candidate SLA file (policies, rules, calendars).
        #[arg(long)]
        policy: std::path::PathBuf,
        /// Only cases reported at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Only cases reported before this RFC 3339 time; also the scoring horizon.
        #[arg(long)]
        to: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild read models from zero by replaying the log (safe while servers run).
    Rebuild {
        #[command(flatten)]
        store: ServeArgs,
        /// Only this read model: `case_views` or `sla` (default: all).
        #[arg(long)]
        projection: Option<String>,
    },
    /// A simulated day: the embedded server on an accelerated clock, with grid workers,
    /// handlers, departments and residents acting on it over gRPC. Ctrl-C stops it.
    Demo(whistle_server::demo::command::DemoArgs),
    /// Measure whistle beside the raw cost of the same work on this machine (plain
    /// inserts, JetStream publishes, a bare tonic echo): a table and a JSON file.
    Bench(whistle_server::bench::BenchArgs),
    /// Act on cases through a running server's gRPC API.
    Case {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CaseCommand,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // The demo's terminal shows its own progress lines; every committed command at INFO
    // would drown them (RUST_LOG still overrides).
    let default_filter = match cli.command {
        Some(Cmd::Demo(_)) | Some(Cmd::Bench(_)) => "warn",
        _ => "info,sqlx=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Cmd::Serve(ServeArgs::default())) {
            Cmd::Serve(args) => serve(args).await,
            Cmd::Migrate(args) => {
                let settings = Settings::resolve(&args)?;
                let store = whistle_store::Store::connect(&settings.store)
                    .await
                    .context("connecting to the store")?;
                store.migrate().await.context("running migrations")?;
                println!("migrations applied ({})", store.backend_name());
                store.close().await;
                Ok(())
            }
            Cmd::District(args) => {
                let settings = Settings::resolve(&args)?;
                print_district(&settings.district);
                Ok(())
            }
            Cmd::Rebuild { store, projection } => {
                let settings = Settings::resolve(&store)?;
                whistle_server::rebuild::run(&settings, projection.as_deref()).await
            }
            Cmd::Demo(args) => whistle_server::demo::command::run(args, shutdown_signal()).await,
            Cmd::Bench(args) => whistle_server::bench::run(args).await,
            Cmd::Case { client, command } => cli::run(client, command).await,
            Cmd::Admin { client, command } => cli::run_admin(client, command).await,
            Cmd::Replay {
                store,
                policy,
                from,
                to,
                json,
            } => {
                let settings = Settings::resolve(&store)?;
                let text = std::fs::read_to_string(&policy)
                    .with_context(|| format!("reading {}", policy.display()))?;
                let proposed =
                    whistle_server::config::parse_sla(&text, &policy.display().to_string())?;
                let parse = |s: Option<String>,
                             what: &str|
                 -> Result<Option<time::OffsetDateTime>> {
                    s.map(|s| {
                        time::OffsetDateTime::parse(
                            &s,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .with_context(|| {
                            format!("--{what} {s:?}: use RFC 3339, e.g. 2026-01-01T00:00:00+08:00")
                        })
                    })
                    .transpose()
                };
                let window = whistle_server::replay::Window {
                    from: parse(from, "from")?,
                    to: parse(to, "to")?,
                };
                let store = whistle_store::Store::connect(&settings.store)
                    .await
                    .context("connecting to the store")?;
                let report =
                    whistle_server::replay::run(&store, &settings.sla, &proposed, window).await?;
                store.close().await;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).context("encoding JSON")?
                    );
                } else {
                    whistle_server::replay::print(&report);
                }
                Ok(())
            }
        }
    });
    // Whatever a drain abandoned (its deadline passed) must not hold the exit: tasks are
    // cancelled at their next await, blocking work gets a moment, then the process goes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(&args)?;
    let demo = settings.demo_tokens.clone();
    let data_dir = settings.data_dir.clone();
    let district = settings.district.name.clone();
    let app = Application::build(settings).await?;
    let addr = app.local_addr();
    println!("whistle: gRPC listening on {addr}");
    println!(
        "whistle: HTTP on http://{} (/healthz /readyz /metrics)",
        app.http_addr()
    );
    println!("whistle: district {district}");
    if let Some(demo) = demo {
        println!(
            "whistle: demo principals (tokens in {}{}):",
            whistle_server::demo::tokens_path(&data_dir).display(),
            if demo.created { ", created now" } else { "" }
        );
        for l in &demo.logins {
            println!(
                "    {:<15} {}\n                    token {}",
                l.id, l.name, l.token
            );
        }
        println!(
            "whistle: try  whistle case report --as gw-lin --category leak_from_above --location hongqi-jiayuan-b1-u1 --description \"water through the ceiling\""
        );
    }
    app.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let signal = tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    };
    tracing::info!(signal, "shutting down");
}

fn print_district(d: &whistle_domain::District) {
    println!("{} ({})", d.name, d.id);
    println!("\ncategories (--category):");
    for c in d.catalogue.categories.values() {
        println!(
            "  {:<22} {:<10} starts at {:<9} {:<9} {}",
            c.code.0,
            c.name_zh,
            c.starts_at.as_str(),
            c.policy.as_str(),
            c.name_en
        );
    }
    println!(
        "\ncompounds (--location takes a compound, building `<compound>-b<N>` or unit `<compound>-b<N>-u<M>`):"
    );
    for n in d
        .org
        .nodes()
        .filter(|n| n.kind == whistle_domain::OrgKind::Compound)
    {
        let buildings = d
            .org
            .nodes()
            .filter(|b| b.parent.as_ref() == Some(&n.id))
            .count();
        println!("  {:<18} {} ({buildings} buildings)", n.id.0, n.name);
    }
    println!("\ndepartments (--department):");
    for dep in d.departments.values() {
        println!("  {:<10} {}", dep.id.0, dep.name);
    }
}
