//! `whistle demo`: the embedded server (SQLite in a fresh data directory, the bundled demo
//! district and principals, the in-process bus) on an accelerated clock, with the
//! simulator of [`super::sim`] acting on it over gRPC until Ctrl-C.

use super::sim::{Config, LivePace, Simulator};
use super::world::{LOCAL, Member};
use crate::app::Application;
use crate::config::{ServeArgs, Settings};
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use time::OffsetDateTime;
use whistle_api::clock::AcceleratedClock;
use whistle_api::{Principal, hash_token};
use whistle_domain::{DepartmentId, District, PrincipalId, Role, Scope};

/// The street supervisor whose dashboard URL is printed beside the district-wide one.
const STREET_SUPERVISOR: &str = "sup-dongfeng";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second: 60 shows one simulated hour per real minute
    /// (a day in 24 minutes).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Random seed: the same seed gives the same day (up to live timing).
    #[arg(long, default_value_t = 83012)]
    pub seed: u64,
    /// Reports per simulated day.
    #[arg(long, default_value_t = 300.0)]
    pub cases_per_day: f64,
    /// Data directory [default: ./whistle-data/demo-<UTC timestamp>, new for each run].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// HTTP listen address (dashboard, /metrics) [default: 127.0.0.1:50052].
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Simulated start, RFC 3339 [default: 06:00 today, UTC+8].
    #[arg(long)]
    pub start: Option<String>,
}

/// Run the demo until `stop` completes (Ctrl-C in the binary).
pub async fn run(args: DemoArgs, stop: impl Future<Output = ()> + Send) -> Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number, got {}", args.speed);
    }
    let real_now = OffsetDateTime::now_utc();
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        PathBuf::from(crate::config::DEFAULT_DATA_DIR).join(format!(
            "demo-{:04}{:02}{:02}-{:02}{:02}{:02}",
            real_now.year(),
            u8::from(real_now.month()),
            real_now.day(),
            real_now.hour(),
            real_now.minute(),
            real_now.second()
        ))
    });
    let start = match &args.start {
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .with_context(|| {
                format!("--start {s:?}: use RFC 3339, e.g. 2026-03-02T06:00:00+08:00")
            })?,
        None => {
            let local = real_now.to_offset(LOCAL);
            local
                .replace_time(time::Time::from_hms(6, 0, 0).context("06:00")?)
                .to_offset(time::UtcOffset::UTC)
        }
    };
    let mut settings = Settings::resolve(&ServeArgs {
        data_dir: Some(data_dir.clone()),
        listen: args.listen,
        http_listen: args.http_listen,
        ..ServeArgs::default()
    })?;
    let logins = settings
        .demo_tokens
        .clone()
        .context("the demo runs with the demo principals")?;
    let district = settings.district.clone();
    let mut members = super::principals()?
        .into_iter()
        .filter_map(|p| {
            let token = logins.logins.iter().find(|l| l.id == p.id)?.token.clone();
            // The scope as the server resolved it from the principal's `scope`/`grids`.
            let scope = settings
                .principals
                .iter()
                .find(|(_, r)| r.id.as_str() == p.id)
                .map(|(_, r)| r.scope.clone())?;
            Some(Member {
                id: p.id,
                role: p.role,
                department: p.department,
                scope,
                token,
            })
        })
        .collect::<Vec<_>>();
    for desk in duty_desks(&district, &members, &data_dir)? {
        settings.principals.push((
            hash_token(&desk.token),
            Principal {
                id: PrincipalId::new(&desk.id),
                role: Role::Department,
                department: desk.department.clone().map(DepartmentId),
                name: desk.id.clone(),
                scope: Scope::District,
            },
        ));
        members.push(desk);
    }
    // Dashboard URLs: a district-wide supervisor sees the whole demo; the street
    // supervisor only 东风街道 (scopes, DESIGN §6).
    let mut dashboards: Vec<&Member> = Vec::new();
    let district_wide = members
        .iter()
        .find(|m| m.role == "supervisor" && m.scope == Scope::District);
    let street = members.iter().find(|m| m.id == STREET_SUPERVISOR);
    for m in district_wide.into_iter().chain(street) {
        if !dashboards.iter().any(|d| d.id == m.id) {
            dashboards.push(m);
        }
    }
    if dashboards.is_empty()
        && let Some(m) = members.iter().find(|m| m.role == "supervisor")
    {
        dashboards.push(m);
    }
    let supervisor = *dashboards
        .first()
        .context("no supervisor among the demo principals")?;
    // A dozen principals stand in for a district's people on a clock running `speed`
    // times fast: the per-principal rate limits scale with it.
    let scale = args.speed.max(1.0);
    settings.limits.per_second *= scale;
    settings.limits.burst =
        (f64::from(settings.limits.burst) * scale).min(f64::from(u32::MAX)) as u32;
    let clock = AcceleratedClock::new(start, args.speed);
    let app = Application::build_with_clock(settings, Arc::new(clock)).await?;
    let addr = app.local_addr();
    let http = app.http_addr();
    let run_id = format!("demo{:x}", real_now.unix_timestamp());
    println!(
        "whistle demo: a simulated day in {} at {}× (one simulated hour every {:.0} s), seed {}, ~{} reports a day",
        district.name,
        args.speed,
        3600.0 / args.speed,
        args.seed,
        args.cases_per_day
    );
    let local = start.to_offset(LOCAL);
    println!(
        "  simulated time starts {:04}-{:02}-{:02} {:02}:{:02} (UTC+8)",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    );
    for m in &dashboards {
        let sees = if m.scope == Scope::District {
            "the whole district"
        } else {
            "its area only"
        };
        println!(
            "  dashboard  http://{http}/#token={}   (as {}: {sees})",
            m.token, m.id
        );
    }
    println!("  gRPC       {addr}");
    println!("  metrics    http://{http}/metrics");
    println!(
        "  data       {} (SQLite; demo tokens in {})",
        data_dir.display(),
        super::tokens_path(&data_dir).display()
    );
    println!(
        "  inspect    whistle case show <ID> --as {} --server http://{addr} --data-dir {}",
        supervisor.id,
        data_dir.display()
    );
    println!("  stop       Ctrl-C");

    let cfg = Config {
        speed: args.speed,
        seed: args.seed,
        cases_per_day: args.cases_per_day,
        run_id,
        progress: true,
        ..Config::default()
    };
    let (stop_server, server_stopped) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(app.run_until_stopped(async move {
        let mut rx = server_stopped;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let simulator = Simulator::connect(cfg, &district, members, addr).await?;
    let mut pace = LivePace(clock);
    let summary = tokio::select! {
        summary = simulator.run(&mut pace, stop) => summary,
        served = &mut server => {
            // The server stopped by itself: report why.
            return match served {
                Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("the server task failed: {e}")),
            };
        }
    };
    tracing::info!("demo: stopping the server");
    let _ = stop_server.send(true);
    match server.await {
        Ok(res) => res?,
        Err(e) => anyhow::bail!("the server task failed: {e}"),
    }
    println!(
        "whistle demo: {} cases reported, {} signed for, {} climbed a rung by breach, {} taken over by the district, {} resolved, {} confirmed ({} commands; data kept in {})",
        summary.reported,
        summary.acknowledged,
        summary.climbed,
        summary.taken_over,
        summary.resolved,
        summary.confirmed,
        summary.actions,
        data_dir.display()
    );
    Ok(())
}

/// A duty desk (`dept-<id>`) for every department of the district that has no demo
/// principal: the bundled principals cover three of the eight, and without the others
/// every water, power, police, urban-management and market case would breach and go to
/// the district duty office, which is not what a day looks like. Their tokens join
/// `demo-tokens.toml`, so `whistle case … --as dept-water` works too.
fn duty_desks(
    district: &District,
    members: &[Member],
    data_dir: &std::path::Path,
) -> Result<Vec<Member>> {
    let missing: Vec<super::DemoPrincipal> = district
        .departments
        .values()
        .filter(|d| {
            !members
                .iter()
                .any(|m| m.department.as_deref() == Some(d.id.0.as_str()))
        })
        .map(|d| super::DemoPrincipal {
            id: format!("dept-{}", d.id.0),
            role: "department".into(),
            department: Some(d.id.0.clone()),
            name: format!("{} duty desk (demo)", d.name),
            scope: None,
            grids: Vec::new(),
        })
        .collect();
    let (tokens, _) = super::ensure_tokens(data_dir, &missing)?;
    missing
        .into_iter()
        .map(|p| {
            let token = tokens
                .tokens
                .get(&p.id)
                .with_context(|| format!("demo token for {}", p.id))?
                .clone();
            Ok(Member {
                id: p.id,
                role: p.role,
                department: p.department,
                scope: Scope::District,
                token,
            })
        })
        .collect()
}
