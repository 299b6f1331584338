//! The supervisor dashboard page in a real browser: the in-process server on virtual
//! time, cases reported and handled over gRPC, then headless Chromium loads
//! `/#token=<supervisor token>`, runs the page's script against `/api/dashboard` and
//! dumps the DOM, which must show those cases with their clocks and filled tiles. A
//! screenshot is saved under `<target>/e2e-artifacts/` for people to look at.
//!
//! Chromium comes from `WHISTLE_CHROMIUM` (default `/usr/bin/chromium`, Debian's package,
//! which `.ci/run` installs). Without it the test prints `SKIPPED (chromium unavailable)`
//! and passes, unless `WHISTLE_REQUIRE_SERVICES=1` (CI), where it fails.

use crate::both_backends;
use crate::support::{AppOptions, Backend, Client, plain, spawn_app_with, token};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;
use time::macros::{datetime, format_description};
use time::{Duration, OffsetDateTime, UtcOffset};
use whistle_api::{Clock, ManualClock};
use whistle_proto::v1 as pb;
use whistle_store::Store;

both_backends!(dashboard_page_shows_reported_cases_and_their_clocks);

const T0: OffsetDateTime = datetime!(2026-11-22 09:00:00 +08:00);
/// Chromium gets this long per run before it is killed and the test fails.
const CHROMIUM_TIMEOUT: StdDuration = StdDuration::from_secs(60);

async fn dashboard_page_shows_reported_cases_and_their_clocks(b: Backend) {
    let (backend, shot_name) = match b {
        Backend::Sqlite(_) => ("sqlite", "dashboard.png"),
        Backend::Postgres(_) => ("postgres", "dashboard-postgres.png"),
    };
    let test = format!(
        "{}::dashboard_page_shows_reported_cases_and_their_clocks::{backend}",
        module_path!()
    );
    let Some(chromium) = chromium_binary(&test) else {
        return;
    };
    let clock = ManualClock::new(T0);
    let app = spawn_app_with(
        &b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            scheduler: true,
            tls: None,
        },
    )
    .await;

    // The page and its assets: embedded, typed, same-origin only.
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard", "text/html"),
        ("/assets/dashboard.js", "text/javascript"),
        ("/assets/dashboard.css", "text/css"),
    ] {
        let (status, head, body) = http_get_with_head(app.http, path, None).await;
        assert_eq!(status, 200, "GET {path}: {head}");
        assert!(
            header(&head, "content-type").is_some_and(|v| v.starts_with(content_type)),
            "GET {path}: {head}"
        );
        assert!(
            header(&head, "content-security-policy")
                .is_some_and(|v| v.starts_with("default-src 'self'")),
            "GET {path}: {head}"
        );
        assert!(!body.is_empty(), "GET {path}");
    }

    let gw = app.client("gw-lin").await;
    let wang = app.client("h-wang").await;
    let sup = app.client("sup-dongfeng").await;

    // Settled within minutes: signed for, on site, resolved, confirmed as satisfied — so
    // all three rates have something to count.
    let settled = gw
        .report_ok("leak_from_above", "hongqi-jiayuan-b1-u1")
        .await;
    wang.ack(&settled).await.expect("sign for");
    wang.handling()
        .arrive_on_site(wang.req(plain(&settled)))
        .await
        .expect("on site");
    wang.resolve(&settled).await.expect("resolve");
    gw.intake()
        .confirm_resolution(gw.req(pb::ConfirmResolutionRequest {
            case_id: settled.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            satisfaction: 5,
            comment: "fixed the same morning".into(),
        }))
        .await
        .expect("confirm");
    // An emergency takes the fast channel to the gas company, which signs for it, goes on
    // site and resolves it (the resident has not confirmed yet): the department ranking.
    let gas = app.client("dept-gas").await;
    let leak = gw.report_ok("gas_smell", "hongqi-jiayuan-b1").await;
    gas.ack(&leak).await.expect("gas company signs for it");
    gas.handling()
        .arrive_on_site(gas.req(plain(&leak)))
        .await
        .expect("on site");
    gas.resolve(&leak).await.expect("resolve");
    // Signed for at once, but nobody goes on site: that clock (30 min) breaches.
    let late = gw
        .report_ok("leak_from_above", "hongqi-jiayuan-b2-u1")
        .await;
    wang.ack(&late).await.expect("sign for");

    // 24 minutes later two more arrive that nobody signs for.
    advance_to(&clock, &app.store, T0 + Duration::minutes(24)).await;
    let waiting = [
        gw.report_ok("neighbour_noise", "hongqi-jiayuan-b3-u1")
            .await,
        gw.report_ok("corridor_clutter", "hongqi-jiayuan-b4-u2")
            .await,
    ];

    // At 09:31 the late case is a minute past its on-site deadline (09:30) and the two
    // waiting ones are past their respond warning (75 %, 09:30) with a minute left.
    advance_to(&clock, &app.store, T0 + Duration::minutes(31)).await;
    let late_clock = clock_deadline(&sup, &late, "on_site", "breached").await;
    let waiting_clocks = [
        clock_deadline(&sup, &waiting[0], "respond", "warned").await,
        clock_deadline(&sup, &waiting[1], "respond", "warned").await,
    ];

    // The JSON is read from projections that follow the log: wait until they caught up,
    // so that what the browser is asked to show is there to show.
    projections_show(app.http, &waiting, &late).await;

    let url = format!("http://{}/#token={}", app.http, token("sup-dongfeng"));
    let dom = chromium_dump_dom(&chromium, &url).await;

    assert!(
        dom.contains(r#"data-state="live""#),
        "the page did not load the dashboard JSON: {}",
        status_line(&dom)
    );
    let auth = element_start(&dom, r#"data-testid="auth-message""#);
    assert!(auth.contains("hidden"), "token refused: {auth}");

    let at_risk = section(&dom, r#"data-testid="at-risk-list""#);
    for (id, deadline) in waiting.iter().zip(&waiting_clocks) {
        let row = case_row(at_risk, id)
            .unwrap_or_else(|| panic!("case {id} is not in the at-risk list:\n{at_risk}"));
        assert!(row.contains(r#"data-milestone="respond""#), "{row}");
        assert!(row.contains(&beijing_short(*deadline)), "deadline: {row}");
        assert!(row.contains(" left"), "time left: {row}");
    }
    let breached = section(&dom, r#"data-testid="breached-list""#);
    let row = case_row(breached, &late)
        .unwrap_or_else(|| panic!("case {late} is not in the breached list:\n{breached}"));
    assert!(row.contains(r#"data-milestone="on_site""#), "{row}");
    assert!(row.contains(&beijing_short(late_clock)), "deadline: {row}");
    assert!(row.contains(" overdue"), "overdue: {row}");

    // The tiles: every rate has a figure, and the counts are ours.
    for rate in ["response_rate", "resolution_rate", "satisfaction_rate"] {
        let v = tile(&dom, rate);
        assert!(v.ends_with('%'), "{rate} tile shows {v:?}");
    }
    assert_eq!(tile(&dom, "cases"), "5", "cases tile");
    let ranking = section(&dom, r#"data-testid="department-ranking""#);
    assert!(ranking.contains(r#"data-testid="department-"#), "{ranking}");
    for count in ["open", "at_risk", "breaches"] {
        let v = tile(&dom, count);
        assert!(
            v.parse::<u64>().is_ok_and(|n| n > 0),
            "{count} tile shows {v:?}"
        );
    }

    // For people: what the supervisor sees.
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    let shot = dir.join(shot_name);
    let _ = std::fs::remove_file(&shot);
    chromium_screenshot(&chromium, &url, &shot).await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", shot.display());
    let _ = writeln!(
        std::io::stderr(),
        "dashboard screenshot: {}",
        shot.display()
    );

    // Without a token the page asks for one instead of showing anything.
    let dom = chromium_dump_dom(&chromium, &format!("http://{}/dashboard", app.http)).await;
    let auth = element_start(&dom, r#"data-testid="auth-message""#);
    assert!(!auth.contains("hidden"), "no token, no prompt: {auth}");
    assert!(!dom.contains(r#"data-testid="case-"#), "{dom}");
    // A token the server refuses (401) gets the same prompt, saying so.
    let dom = chromium_dump_dom(&chromium, &format!("http://{}/#token=forged", app.http)).await;
    let auth = element_start(&dom, r#"data-testid="auth-message""#);
    assert!(!auth.contains("hidden"), "refused token, no prompt: {auth}");
    assert!(dom.contains("(401)"), "{dom}");
    assert!(!dom.contains(r#"data-testid="case-"#), "{dom}");

    app.stop().await;
}

/// Set the virtual clock and wait (bounded) until the scheduler fired everything due.
async fn advance_to(clock: &ManualClock, store: &Store, at: OffsetDateTime) {
    clock.set(at);
    let now = clock.now();
    for _ in 0..600 {
        let (_, next) = store.deadline_summary().await.expect("deadline summary");
        if next.is_none_or(|n| n > now) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("deadlines due at {now} were not fired within 30 s");
}

/// Wait (bounded) until `/api/dashboard` lists `at_risk` as at risk and `breached` as
/// breached.
async fn projections_show(http: SocketAddr, at_risk: &[String], breached: &str) {
    let mut last = String::new();
    for _ in 0..300 {
        let (status, _, body) = http_get_with_head(
            http,
            "/api/dashboard?window=24h",
            Some(&token("sup-dongfeng")),
        )
        .await;
        if status == 200 {
            let json: serde_json::Value = serde_json::from_str(&body).expect("dashboard JSON");
            let ids = |list: &str| -> Vec<String> {
                json[list]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i["case_id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if at_risk.iter().all(|id| ids("at_risk").contains(id))
                && ids("breached").iter().any(|id| id == breached)
            {
                return;
            }
        }
        last = format!("{status} {body}");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("/api/dashboard did not list the cases within 30 s: {last}");
}

/// The deadline of the case's latest `milestone` clock, which must be in `state`.
async fn clock_deadline(
    client: &Client,
    case_id: &str,
    milestone: &str,
    state: &str,
) -> OffsetDateTime {
    let view = client.get(case_id).await.expect("get case");
    let m = view
        .milestones
        .iter()
        .rev()
        .find(|m| m.milestone == milestone)
        .unwrap_or_else(|| panic!("case {case_id} has no {milestone} clock: {view:?}"));
    assert_eq!(m.state, state, "{milestone} of {case_id}: {m:?}");
    let d = m.deadline.expect("deadline");
    OffsetDateTime::from_unix_timestamp(d.seconds).expect("deadline in range")
        + Duration::nanoseconds(d.nanos.into())
}

/// How the page shows a deadline: UTC+8, `MM-DD HH:MM:SS`.
fn beijing_short(t: OffsetDateTime) -> String {
    let offset = UtcOffset::from_hms(8, 0, 0).expect("UTC+8");
    t.to_offset(offset)
        .format(format_description!(
            "[month]-[day] [hour]:[minute]:[second]"
        ))
        .expect("format")
}

// ── Chromium ────────────────────────────────────────────────────────────────

fn chromium_binary(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("WHISTLE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if bin.is_file() {
        return Some(bin);
    }
    if whistle_store::testing::services_required() {
        panic!(
            "chromium is required (WHISTLE_REQUIRE_SERVICES=1) but {} does not exist",
            bin.display()
        );
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED (chromium unavailable): {test}");
    None
}

/// The page's DOM after ten seconds of virtual time (a few polls and countdown ticks).
async fn chromium_dump_dom(chromium: &Path, url: &str) -> String {
    run_chromium(
        chromium,
        vec!["--virtual-time-budget=10000".into(), "--dump-dom".into()],
        url,
    )
    .await
}

async fn chromium_screenshot(chromium: &Path, url: &str, out: &Path) {
    run_chromium(
        chromium,
        vec![
            "--virtual-time-budget=10000".into(),
            "--window-size=1400,1000".into(),
            "--hide-scrollbars".into(),
            format!("--screenshot={}", out.display()),
        ],
        url,
    )
    .await;
}

/// [`run_chromium_blocking`] off the runtime's workers, which serve the page meanwhile.
async fn run_chromium(chromium: &Path, args: Vec<String>, url: &str) -> String {
    let (chromium, url) = (chromium.to_path_buf(), url.to_string());
    tokio::task::spawn_blocking(move || run_chromium_blocking(&chromium, &args, &url))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Run headless Chromium once with a throwaway profile; its stdout. Output goes to files,
/// not pipes, so a large DOM cannot block it; it is killed after [`CHROMIUM_TIMEOUT`].
fn run_chromium_blocking(chromium: &Path, args: &[String], url: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "whistle-chromium-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).expect("chromium profile dir");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        // Containers often have a tiny /dev/shm.
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out_path).expect("chromium stdout file"))
    .stderr(std::fs::File::create(&err_path).expect("chromium stderr file"));
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // If this test process dies, the browser must not outlive it.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let printable = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {printable}: {e}"));
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for chromium") {
            Some(status) => break status,
            None if started.elapsed() > CHROMIUM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&err_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("chromium hung for {CHROMIUM_TIMEOUT:?}, killed: {printable}\n{err}");
            }
            None => std::thread::sleep(StdDuration::from_millis(100)),
        }
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{printable}: {status}\n{err}");
    out
}

/// `<target>/e2e-artifacts`: the test binary is `<target>/<profile>/deps/e2e-…`.
fn artifacts_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("e2e-artifacts")
}

// ── reading the dumped DOM ──────────────────────────────────────────────────

/// From the element carrying `marker` to the end of its table body (or of the DOM).
fn section<'a>(dom: &'a str, marker: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</tbody>").unwrap_or(rest.len())]
}

/// The `<tr>` of a case in a list, if it is there.
fn case_row<'a>(list: &'a str, case_id: &str) -> Option<&'a str> {
    let start = list.find(&format!(r#"data-testid="case-{case_id}""#))?;
    let rest = &list[start..];
    Some(&rest[..rest.find("</tr>").unwrap_or(rest.len())])
}

/// The opening tag of the element carrying `marker`.
fn element_start<'a>(dom: &'a str, marker: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find('>').unwrap_or(rest.len())]
}

/// The text of a tile's value (`data-field="<field>">TEXT<`).
fn tile(dom: &str, field: &str) -> String {
    let marker = format!(r#"data-field="{field}">"#);
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no tile {field} in the page"))
        + marker.len();
    let rest = &dom[start..];
    rest[..rest.find('<').unwrap_or(rest.len())]
        .trim()
        .to_string()
}

fn status_line(dom: &str) -> &str {
    let marker = r#"data-testid="status""#;
    match dom.find(marker) {
        Some(i) => {
            let rest = &dom[i..];
            &rest[..rest.find("</span>").unwrap_or(rest.len())]
        }
        None => dom,
    }
}

/// `GET path` over HTTP/1.1, with a bearer token if given: (status, head, body).
async fn http_get_with_head(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect HTTP");
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: whistle\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (status, head.to_string(), body.to_string())
}

/// A response header's value (names are case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
