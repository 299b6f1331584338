//! `whistle-department-example`: an example department service built on the
//! `whistle-department` library. With `--nats-url` it consumes the department's
//! durable JetStream consumer `dept-<department>`; without, it follows gRPC
//! `WatchAssignments` (whistle's embedded mode). Either way it signs for, reports on
//! site and resolves every case dispatched to its department, with its own token.
//! gRPC goes over TLS with `--tls-ca` (or an `https://` --server, which needs it) and
//! over mutual TLS with `--tls-cert`/`--tls-key`, the department's client certificate.

use clap::Parser;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;
use whistle_department::{ConsumerConfig, ExampleHandler, GrpcTlsFiles, run_grpc, run_nats};

#[derive(Debug, Parser)]
#[command(
    name = "whistle-department-example",
    version,
    about = "An example whistle department service (部门报到)"
)]
struct Args {
    /// NATS server(s); without it, assignments come over gRPC WatchAssignments.
    #[arg(long, env = "WHISTLE_NATS_URL")]
    nats_url: Option<String>,
    /// District code (first subject token after `whistle`).
    #[arg(long, env = "WHISTLE_DISTRICT_ID", default_value = "qinghe")]
    district: String,
    /// This department's code, e.g. `fire`.
    #[arg(long, env = "WHISTLE_DEPARTMENT")]
    department: String,
    /// whistle's gRPC endpoint.
    #[arg(long, env = "WHISTLE_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// This department's bearer token.
    #[arg(long, env = "WHISTLE_TOKEN", hide_env_values = true)]
    token: String,
    /// PEM CA that signed whistle's certificate: gRPC over TLS (required for https://;
    /// this build has no system roots).
    #[arg(long, env = "WHISTLE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate naming this department (mutual TLS), with --tls-key.
    #[arg(long, env = "WHISTLE_TLS_CLIENT_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WHISTLE_TLS_CLIENT_KEY")]
    tls_key: Option<PathBuf>,
    /// Name whistle's certificate must carry [default: the --server host].
    #[arg(long, env = "WHISTLE_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// JetStream stream name.
    #[arg(long, default_value = whistle_bus::DEFAULT_STREAM)]
    stream: String,
    /// Deliveries before JetStream gives up on a message.
    #[arg(long, default_value_t = 5)]
    max_deliver: i64,
    /// gRPC mode: resume after this global position.
    #[arg(long, default_value_t = 0)]
    after_position: i64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let tls = GrpcTlsFiles {
            ca: args.tls_ca,
            cert: args.tls_cert,
            key: args.tls_key,
            domain: args.tls_domain,
        };
        let mut handler =
            match ExampleHandler::with_tls(&args.server, &args.token, &args.department, &tls) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match args.nats_url {
            Some(url) => {
                let mut cfg = ConsumerConfig::new(url, &args.district, &args.department);
                cfg.stream = args.stream;
                cfg.max_deliver = args.max_deliver;
                println!(
                    "whistle-department-example: department {} consuming {} from NATS",
                    args.department, cfg.durable
                );
                run_nats(cfg, &mut handler, shutdown).await;
            }
            None => {
                println!(
                    "whistle-department-example: department {} following WatchAssignments on {}",
                    args.department, args.server
                );
                let last = run_grpc(&mut handler, args.after_position, shutdown).await;
                println!("whistle-department-example: stopped after position {last}");
            }
        }
        println!(
            "whistle-department-example: resolved {} cases",
            handler.resolved
        );
        std::process::ExitCode::SUCCESS
    })
}
