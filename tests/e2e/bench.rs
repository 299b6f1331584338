//! `whistle bench` end to end: the real binary, both backends, its own nats-server,
//! in a short configuration. Checks that every figure the issue asks for is in the
//! JSON with a measured (non-zero) value and, where it has one, its baseline ratio —
//! never how fast anything was (speed is for the bench to report, not for tests).

use std::process::Command;

#[test]
fn bench_reports_every_figure_beside_its_baseline() {
    let nats = whistle_bus::testing::nats_server_binary();
    if !whistle_bus::testing::available("bench::bench_reports_every_figure") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("whistle-e2e-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("bench.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whistle"));
    cmd.args([
        "bench",
        "--seconds",
        "1",
        "--clients",
        "4",
        "--summary-cases",
        "3000",
        "--summary-queries",
        "2",
    ])
    .arg("--database-url")
    .arg(whistle_store::testing::pg_admin_url())
    .arg("--nats-server")
    .arg(&nats)
    .arg("--out")
    .arg(&out);
    let output = cmd.output().expect("running whistle bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success()
        && stderr.contains("connecting to PostgreSQL")
        && !whistle_store::testing::services_required()
    {
        eprintln!("SKIPPED (PostgreSQL unreachable): bench");
        return;
    }
    assert!(
        output.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("bench.json")).expect("JSON");
    let figures = report["figures"].as_array().expect("figures");
    let find = |backend: &str, starts: &str| {
        figures
            .iter()
            .find(|f| {
                f["backend"] == backend && f["name"].as_str().is_some_and(|n| n.starts_with(starts))
            })
            .unwrap_or_else(|| panic!("no figure {backend}/{starts} in {report:#}"))
    };
    for (backend, name) in [
        ("grpc", "bare tonic ReportCase echo"),
        ("nats", "plain JetStream publish"),
    ] {
        assert!(
            find(backend, name)["value"].as_f64().expect("value") > 0.0,
            "{backend}/{name}"
        );
    }
    for backend in ["postgres", "sqlite"] {
        for name in [
            "plain insert, 100 rows/txn",
            "plain insert, 1 row/txn",
            "whistle ReportCase, closed loop",
            "whistle events appended via ReportCase",
            "whistle ReportCase, open loop",
            "report → JetStream consumer delivery",
            "rebuild case_views from zero",
            "rebuild sla from zero",
            "GetSlaSummary by department",
        ] {
            let f = find(backend, name);
            assert!(
                f["value"].as_f64().expect("value") > 0.0,
                "{backend}/{name}: {f:#}"
            );
        }
        // Whistle figures carry their baseline and its ratio.
        let closed = figures
            .iter()
            .filter(|f| {
                f["backend"] == backend
                    && f["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("whistle ReportCase, closed loop"))
            })
            .collect::<Vec<_>>();
        assert_eq!(
            closed.len(),
            2,
            "against the echo and the single-row insert"
        );
        for f in closed
            .iter()
            .chain([&find(backend, "whistle events appended")])
        {
            assert!(
                f["baseline"]["ratio"].as_f64().expect("ratio") > 0.0,
                "{f:#}"
            );
            assert!(
                f["latency"].is_object()
                    || f["name"]
                        .as_str()
                        .is_some_and(|n| n.contains("events appended")),
                "{f:#}"
            );
        }
        // Every report of the open loop reached the consumer.
        assert!(
            find(backend, "report → JetStream consumer delivery")["note"]
                .as_str()
                .is_some_and(|n| n.contains("; 0 not delivered")),
            "{report:#}"
        );
        let summary = find(backend, "GetSlaSummary by department");
        assert!(
            summary["name"].as_str().is_some_and(|n| n
                .split_whitespace()
                .any(|w| w.parse::<u64>().is_ok_and(|c| c >= 3000))),
            "the read model was grown to the asked-for cases: {summary:#}"
        );
    }
    assert!(report["peak_rss_mib"].as_f64().is_some_and(|m| m > 0.0));
    assert!(stdout.contains("× base"), "the human table: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
