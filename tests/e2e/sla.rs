//! Deadlines end to end, in virtual time: the real server's scheduler fires what falls
//! due, once — after a restart, and with two server processes on one PostgreSQL.

use crate::both_backends;
use crate::support::{AppOptions, Backend, TestApp, spawn_app_with};
use std::collections::BTreeMap;
use std::time::Duration as StdDuration;
use time::Duration;
use time::macros::datetime;
use whistle_api::ManualClock;
use whistle_store::{EventStore, Store};

both_backends!(
    a_deadline_due_while_the_server_was_down_fires_once_after_restart,
    a_declined_case_nobody_accepts_is_taken_over_by_the_district,
);

const T0: time::OffsetDateTime = datetime!(2026-03-02 09:00:00 +08:00);

async fn app(b: &Backend, clock: &ManualClock) -> TestApp {
    spawn_app_with(
        b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: true,
            tls: None,
        },
    )
    .await
}

/// Wait (bounded) until no deadline is due at `now`, i.e. the schedulers caught up.
async fn settle(store: &Store, now: time::OffsetDateTime) {
    for _ in 0..600 {
        let (_, next) = store.deadline_summary().await.expect("summary");
        if next.is_none_or(|n| n > now) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("deadlines due at {now} were not fired within 30 s");
}

/// CaseEscalated events per case stream, from the whole log.
async fn escalations(store: &Store) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.expect("read_all");
        let Some(last) = page.last() else { return out };
        after = last.position;
        for e in &page {
            if e.event_type == "CaseEscalated" {
                *out.entry(e.stream.to_string()).or_default() += 1;
            }
        }
    }
}

async fn a_deadline_due_while_the_server_was_down_fires_once_after_restart(b: Backend) {
    let clock = ManualClock::new(T0);
    let first = app(&b, &clock).await;
    let gw = first.client("gw-lin").await;
    let id = gw.report_ok("neighbour_noise", "heping-lijing-b1-u1").await;
    let store = b.store().await;
    assert_eq!(
        store.deadline_summary().await.expect("summary").0,
        4,
        "respond and resolve, each a warn and a breach"
    );
    first.stop().await;

    // While nobody runs, the respond deadline (09:08) passes.
    clock.set(T0 + Duration::minutes(9));
    let second = app(&b, &clock).await;
    settle(&store, whistle_api::Clock::now(&clock)).await;
    let gw = second.client("gw-lin").await;
    let t = gw.timeline(&id).await;
    let types: Vec<&str> = t.entries.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "MilestoneWarned").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "MilestoneBreached").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "CaseEscalated").count(),
        1,
        "{types:?}"
    );
    let view = gw.get(&id).await.expect("get");
    assert_eq!(view.level, i32::from(whistle_proto::v1::Level::Unit));
    // More scheduler passes change nothing.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(gw.timeline(&id).await.entries.len(), t.entries.len());
    second.stop().await;
    store.close().await;
}

/// Two server processes (two pools, two schedulers) on one database; 1,000 cases whose
/// respond deadline falls in the same second; each escalates exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_escalate_each_of_1000_cases_due_in_the_same_second_exactly_once() {
    let Some(b) = Backend::postgres("sla::two_nodes").await else {
        return;
    };
    let clock = ManualClock::new(T0);
    let node_a = app(&b, &clock).await;
    let node_b = app(&b, &clock).await;
    let gw_a = node_a.client("gw-lin").await;
    let gw_b = node_b.client("gw-lin").await;
    let compounds = [
        "heping-lijing",
        "heping-beili",
        "liuyin-huayuan",
        "binhe-mingju",
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let gw = if chunk % 2 == 0 {
            gw_a.clone()
        } else {
            gw_b.clone()
        };
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..125 {
                let location = compounds[(chunk + i) % compounds.len()];
                ids.push(gw.report_ok("neighbour_noise", location).await);
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.extend(r.expect("reporter task"));
    }
    assert_eq!(ids.len(), 1000);
    let store = b.store().await;
    assert!(escalations(&store).await.is_empty());

    clock.set(T0 + Duration::minutes(8) + Duration::seconds(1));
    settle(&store, whistle_api::Clock::now(&clock)).await;
    let per_case = escalations(&store).await;
    assert_eq!(per_case.len(), 1000, "every case escalated");
    assert!(
        per_case.values().all(|n| *n == 1),
        "none twice: {:?}",
        per_case.values().filter(|n| **n != 1).count()
    );
    node_a.stop().await;
    node_b.stop().await;
    store.close().await;
}

/// `whistle replay` against a real log: under the preset in force the figures match the
/// recorded ones; under a stricter candidate it names the change and scores worse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whistle_replay_scores_a_real_log_under_a_candidate_policy() {
    let b = Backend::sqlite();
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let wang = app.client("h-wang").await;
    // Three cases signed at minute 6, two left to climb.
    let mut signed = Vec::new();
    for _ in 0..3 {
        signed.push(
            gw.report_ok("leak_from_above", "hongqi-jiayuan-b1-u1")
                .await,
        );
    }
    for _ in 0..2 {
        gw.report_ok("neighbour_noise", "heping-lijing").await;
    }
    clock.set(T0 + Duration::minutes(6));
    for id in &signed {
        wang.ack(id).await.expect("signed at minute 6");
    }
    clock.set(T0 + Duration::minutes(9));
    let store = b.store().await;
    settle(&store, whistle_api::Clock::now(&clock)).await;
    app.stop().await;
    store.close().await;

    let dir = b.data_dir();
    let strict = dir.join("strict.toml");
    std::fs::write(
        &strict,
        whistle_domain::sla::PRESET_83012
            .replace("version = 1", "version = 2")
            .replace("target_seconds = 480", "target_seconds = 300"),
    )
    .expect("write candidate");
    let replay = |policy: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"))
            .args(["replay", "--json", "--to", "2026-03-02T10:00:00+08:00"])
            .arg("--database-url")
            .arg(b.url())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--policy")
            .arg(policy)
            .output()
            .expect("run whistle replay");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON report")
    };
    let respond_by_level = |report: &serde_json::Value, level: &str| {
        report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| {
                r["dimension"] == "level" && r["group"] == level && r["milestone"] == "respond"
            })
            .map(|r| {
                (
                    r["actual"]["late"].as_u64(),
                    r["candidate"]["late"].as_u64(),
                )
            })
    };
    let preset = dir.join("83012.toml");
    std::fs::write(&preset, whistle_domain::sla::PRESET_83012).expect("write preset");
    let same = replay(&preset);
    assert_eq!(same["cases"], 5);
    assert_eq!(same["changes"].as_array().map(Vec::len), Some(0));
    for row in same["rows"].as_array().expect("rows") {
        assert_eq!(row["actual"], row["candidate"], "{row}");
    }
    // Two climbed: late at NEIGHBOUR under both.
    assert_eq!(
        respond_by_level(&same, "NEIGHBOUR"),
        Some((Some(2), Some(2)))
    );
    let stricter = replay(&strict);
    assert!(
        stricter["changes"][0]
            .as_str()
            .is_some_and(|c| c.contains("respond target 480 s → 300 s")),
        "{}",
        stricter["changes"]
    );
    // The three signed at minute 6 were on time under 8 minutes, late under 5.
    assert_eq!(
        respond_by_level(&stricter, "NEIGHBOUR"),
        Some((Some(2), Some(5)))
    );
}

/// At ESCALATED: the paired department declines (its time stays charged to it), nobody
/// else signs within 8 minutes, and the scheduler hands the case to the district duty
/// officer (兜底), who signs for it.
async fn a_declined_case_nobody_accepts_is_taken_over_by_the_district(b: Backend) {
    let clock = ManualClock::new(T0);
    let app = app(&b, &clock).await;
    let gw = app.client("gw-lin").await;
    let fire = app.client("dept-fire").await;
    let id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;
    let v = gw.get(&id).await.expect("get");
    assert_eq!(
        v.handler.and_then(|h| h.kind),
        Some(whistle_proto::v1::handler::Kind::DepartmentId(
            "fire".into()
        )),
        "dispatched to the paired fire brigade"
    );
    clock.set(T0 + Duration::minutes(3));
    fire.handling()
        .decline_case(fire.req(crate::support::reason(&id, "a gas matter, not ours")))
        .await
        .expect("decline");
    clock.set(T0 + Duration::minutes(8));
    let store = b.store().await;
    settle(&store, whistle_api::Clock::now(&clock)).await;
    let v = gw.get(&id).await.expect("get");
    assert_eq!(
        v.handler.and_then(|h| h.kind),
        Some(whistle_proto::v1::handler::Kind::PrincipalId(
            "district-duty".into()
        ))
    );
    let fire_hold = &v.holds[0];
    assert_eq!(
        fire_hold.handler.clone().and_then(|h| h.kind),
        Some(whistle_proto::v1::handler::Kind::DepartmentId(
            "fire".into()
        ))
    );
    let held = fire_hold.to.as_ref().map(|t| t.seconds).unwrap_or_default()
        - fire_hold
            .from
            .as_ref()
            .map(|t| t.seconds)
            .unwrap_or_default();
    assert_eq!(held, 180, "three minutes charged to the fire brigade");
    let t = gw.timeline(&id).await;
    assert_eq!(
        crate::support::case_events(&t),
        [
            "CaseReported",
            "CaseAssigned",
            "CaseDeclined",
            "CaseTakenOver"
        ]
    );
    app.client("district-duty")
        .await
        .ack(&id)
        .await
        .expect("the duty officer signs for it");
    app.stop().await;
    store.close().await;
}
