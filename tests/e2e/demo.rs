//! `whistle demo`: its simulator against the real server in virtual time (a bounded
//! number of actions, the server's scheduler firing what falls due between them), with
//! every outcome read back over gRPC; and the monitoring files in `deploy/monitoring` against
//! what `/metrics` really exports.

use crate::both_backends;
use crate::support::{
    AppOptions, Backend, PRINCIPALS, TestApp, http_get, scope_of, spawn_app_with, token,
};
use std::collections::BTreeSet;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use whistle_api::scheduler::{self, SchedulerConfig};
use whistle_api::{AppState, Clock, ManualClock};
use whistle_server::config::parse_district;
use whistle_server::demo::DISTRICT_TOML;
use whistle_server::demo::sim::{Config, Pace, Simulator, Summary};
use whistle_server::demo::world::Member;

both_backends!(a_simulated_day_reports_handles_breaches_escalates_and_confirms);

/// A Monday at dawn in the demo district.
const T0: OffsetDateTime = datetime!(2026-03-02 06:00:00 +08:00);

/// Steps the server's manual clock to each instant the simulator waits for and runs the
/// server's deadline scheduler (the same `run_once` its background loop calls; the loop
/// is off here) until nothing due is left, so the simulator sees breaches and
/// escalations before it acts: no waiting, whatever the machine's speed.
struct Stepped {
    clock: ManualClock,
    state: AppState,
}

impl Pace for Stepped {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn until(&mut self, at: OffsetDateTime) {
        if at > self.clock.now() {
            self.clock.set(at);
        }
        let cfg = SchedulerConfig::default();
        loop {
            let pass = scheduler::run_once(&self.state, &cfg)
                .await
                .expect("scheduler pass");
            assert_eq!(pass.failed, 0, "{pass:?}");
            if pass.claimed == 0 {
                return;
            }
        }
    }
}

fn cast() -> Vec<Member> {
    PRINCIPALS
        .iter()
        .map(|(id, role, department)| Member {
            id: id.to_string(),
            role: role.as_str().to_string(),
            department: department.map(str::to_string),
            scope: scope_of(id),
            token: token(id),
        })
        .collect()
}

async fn app(b: &Backend, clock: &ManualClock) -> TestApp {
    spawn_app_with(
        b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: false,
            tls: None,
        },
    )
    .await
}

/// Run the simulator for at most `max_actions` commands from [`T0`].
async fn simulate(app: &TestApp, clock: &ManualClock, max_actions: u64) -> Summary {
    let district = parse_district(DISTRICT_TOML, "demo").expect("demo district");
    let cfg = Config {
        seed: 7,
        cases_per_day: 150.0,
        max_actions: Some(max_actions),
        report_for: Some(Duration::hours(12)),
        run_id: "e2e".into(),
        ..Config::default()
    };
    let sim = Simulator::connect(cfg, &district, cast(), app.addr)
        .await
        .expect("simulator connects");
    let mut pace = Stepped {
        clock: clock.clone(),
        state: app.state.clone(),
    };
    sim.run(&mut pace, std::future::pending()).await
}

fn payload(e: &whistle_proto::v1::TimelineEntry) -> serde_json::Value {
    serde_json::from_str(&e.payload_json).expect("payload JSON")
}

async fn a_simulated_day_reports_handles_breaches_escalates_and_confirms(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let summary = simulate(&app, &clock, 300).await;
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(summary.actions <= 300, "{summary:?}");
    assert!(summary.reported >= 20, "{summary:?}");

    // What the server recorded, read back as the supervisor.
    let sup = app.client("sup-dongfeng").await;
    let mut categories = BTreeSet::new();
    let (mut acknowledged, mut by_department, mut resolved, mut confirmed) = (0, 0, 0, 0);
    let (mut climbed_by_breach, mut taken_over) = (0, 0);
    for id in &summary.case_ids {
        let t = sup.timeline(id).await;
        let case = t.case.as_ref().expect("case view");
        categories.insert(case.category.clone());
        let mut respond_breached = false;
        for e in &t.entries {
            let actor_role = e.actor.as_ref().map(|a| a.role.as_str()).unwrap_or("");
            match e.event_type.as_str() {
                "CaseAcknowledged" => {
                    acknowledged += 1;
                    if actor_role == "department" {
                        by_department += 1;
                    }
                }
                "CaseResolved" => resolved += 1,
                "ResolutionConfirmed" => {
                    confirmed += 1;
                    let s = payload(e)["satisfaction"].as_u64().expect("satisfaction");
                    assert!((1..=5).contains(&s), "{}", e.payload_json);
                }
                "MilestoneBreached" => {
                    let key = payload(e)["key"].as_str().unwrap_or("").to_string();
                    respond_breached |= key.contains("respond");
                }
                "CaseEscalated" => {
                    let p = payload(e);
                    if p["cause"]["kind"] == "milestone_breached"
                        && p["cause"]["milestone"] == "respond"
                    {
                        assert!(respond_breached, "escalated by a breach nobody recorded");
                        assert_eq!(actor_role, "system", "{}", e.payload_json);
                        climbed_by_breach += 1;
                    }
                }
                "CaseTakenOver" => taken_over += 1,
                _ => {}
            }
        }
        if case.closure == "confirmed" {
            assert!((1..=5).contains(&case.satisfaction), "{case:?}");
        }
    }
    assert!(
        categories.len() >= 6,
        "reports across several categories: {categories:?}"
    );
    assert!(acknowledged > 0 && by_department > 0, "{summary:?}");
    assert!(resolved > 0 && confirmed > 0, "{summary:?}");
    assert!(
        climbed_by_breach > 0,
        "at least one respond clock breached and escalated: {summary:?}"
    );
    // The simulator's own account agrees with the log.
    assert_eq!(summary.acknowledged, acknowledged, "{summary:?}");
    assert_eq!(summary.resolved, resolved, "{summary:?}");
    assert_eq!(summary.confirmed, confirmed, "{summary:?}");
    assert_eq!(summary.taken_over, taken_over, "{summary:?}");
    app.stop().await;
}

/// Exported only when the relay runs (`--nats-url`), which this in-process server does not.
const RELAY_PREFIX: &str = "whistle_relay_";

/// Every `expr` string anywhere in a Grafana dashboard (panel targets, variables).
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `whistle_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("whistle_") {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_and_prometheus_config_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/monitoring/grafana/whistle-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let prometheus = std::fs::read_to_string(root.join("deploy/monitoring/prometheus.yml"))
        .expect("read prometheus.yml");

    // Importable: a datasource variable of type prometheus that every panel uses.
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a Prometheus datasource variable named `datasource`"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} uses the datasource variable",
            p["title"]
        );
    }
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    for expected in [
        "whistle_projection_lag_events",
        "whistle_open_cases",
        "whistle_breaches_total",
    ] {
        assert!(used.contains(expected), "the dashboard shows {expected}");
    }

    // The scrape config points at whistle's HTTP port and path.
    assert!(
        prometheus.contains("metrics_path: /metrics"),
        "{prometheus}"
    );
    assert!(prometheus.contains("127.0.0.1:50052"), "{prometheus}");

    // Traffic of every kind: reports and handling, appends, scheduler fires, a refusal.
    let b = Backend::sqlite();
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let summary = simulate(&app, &clock, 60).await;
    assert!(summary.reported > 0, "{summary:?}");
    let anonymous = app.client("gw-lin").await.anonymous();
    let refused = anonymous
        .report("neighbour_noise", "heping-lijing-b1-u1", "x", "")
        .await;
    assert_eq!(
        refused.expect_err("no token").code(),
        tonic::Code::Unauthenticated
    );
    let (status, text) = http_get(app.http, "/metrics").await;
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !exported.contains(m.as_str()))
        .filter(|m| !m.starts_with(RELAY_PREFIX))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics whistle does not export: {missing:?}\nexported: {exported:?}"
    );
    app.stop().await;
}
