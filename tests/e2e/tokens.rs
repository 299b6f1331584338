//! Token lifecycle (issue #6): admins issue tokens that work at once, revoke them so
//! they are refused at once (on the node that revoked, and on the others within their
//! follow interval), tokens expire by the application clock, the state survives a
//! restart through the `admin-tokens` stream, and lists never show a token or its hash.
//! Per-principal rate limits refuse a burst with RESOURCE_EXHAUSTED and write nothing.

use crate::both_backends;
use crate::support::{
    AppOptions, Backend, Client, http_get, spawn_app, spawn_app_limited, spawn_app_with,
};
use time::macros::datetime;
use tonic::Code;
use whistle_api::{RateLimits, hash_token};
use whistle_domain::admin::TOKENS_STREAM;
use whistle_proto::v1 as pb;
use whistle_store::{EventStore, StreamId};

both_backends!(
    issued_tokens_work_until_revoked_and_survive_a_restart,
    tokens_expire_by_the_application_clock,
    only_admins_manage_tokens_and_bad_requests_name_their_field,
    a_burst_beyond_the_rate_limit_is_refused_and_writes_nothing,
    the_cli_issues_lists_and_revokes_tokens,
);

fn issue_req(principal: &str, role: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        principal_id: principal.into(),
        role: role.into(),
        ..Default::default()
    }
}

async fn issue(admin: &Client, r: pb::IssueTokenRequest) -> pb::IssueTokenResponse {
    admin
        .admin()
        .issue_token(admin.req(r))
        .await
        .expect("issue token")
        .into_inner()
}

async fn list(admin: &Client, include_inactive: bool) -> pb::ListTokensResponse {
    admin
        .admin()
        .list_tokens(admin.req(pb::ListTokensRequest { include_inactive }))
        .await
        .expect("list tokens")
        .into_inner()
}

fn field(s: &tonic::Status) -> &str {
    s.metadata()
        .get("whistle-field")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn issued_tokens_work_until_revoked_and_survive_a_restart(b: Backend) {
    let node_a = spawn_app(&b).await;
    let node_b = spawn_app(&b).await;
    let admin = node_a.client("admin").await;

    let first = issue(
        &admin,
        pb::IssueTokenRequest {
            name: "林新 (new grid worker)".into(),
            ..issue_req("gw-new", "grid_worker")
        },
    )
    .await;
    let second = issue(&admin, issue_req("gw-new", "grid_worker")).await;
    let first_id = first.info.as_ref().expect("info").token_id.clone();
    let second_id = second.info.as_ref().expect("info").token_id.clone();
    assert!(
        first.token.starts_with("wst_") && first.token.len() == 68,
        "{}",
        first.token
    );
    assert_ne!(first.token, second.token);
    assert_ne!(first_id, second_id);

    // The token works at once, on the node that issued it.
    let gw_a = Client::connect(node_a.addr, &first.token).await;
    let case = gw_a
        .report_ok("leak_from_above", "hongqi-jiayuan-b1-u1")
        .await;
    let view = gw_a.get(&case).await.expect("reporter reads the case");
    assert_eq!(view.case_id, case);

    // Never the token, never its hash: not in lists, not in the log.
    let listed = list(&admin, false).await;
    assert_eq!(listed.tokens.len(), 2, "{listed:?}");
    let shown = format!("{listed:?}");
    for t in [&first.token, &second.token] {
        assert!(!shown.contains(t.as_str()), "list shows a token: {shown}");
        assert!(
            !shown.contains(&hash_token(t)),
            "list shows a hash: {shown}"
        );
    }
    let info = &listed.tokens[0];
    assert_eq!(
        (
            info.token_id.as_str(),
            info.principal_id.as_str(),
            info.role.as_str()
        ),
        (first_id.as_str(), "gw-new", "grid_worker")
    );
    assert_eq!(info.name, "林新 (new grid worker)");
    assert_eq!(info.issued_by, "admin");
    assert!(info.active && !info.revoked && info.expires_at.is_none());
    let log = node_a
        .store
        .read_stream(&StreamId::new(TOKENS_STREAM), 0)
        .await
        .expect("admin tokens stream");
    assert_eq!(log.len(), 2);
    let stored =
        serde_json::to_string(&log.iter().map(|r| &r.payload).collect::<Vec<_>>()).expect("json");
    assert!(
        !stored.contains(&first.token),
        "the token is stored: {stored}"
    );
    assert!(stored.contains(&hash_token(&first.token)), "{stored}");

    // Revoked: refused at once on this node, and nothing written by the refused call.
    let ack = admin
        .admin()
        .revoke_token(admin.req(pb::RevokeTokenRequest {
            token_id: first_id.clone(),
        }))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(ack.version, 3);
    let before = node_a.event_count().await;
    let e = gw_a
        .report(
            "leak_from_above",
            "hongqi-jiayuan-b1-u1",
            "another leak",
            "",
        )
        .await
        .expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert_eq!(
        gw_a.get(&case).await.expect_err("revoked").code(),
        Code::Unauthenticated
    );
    assert_eq!(
        node_a.event_count().await,
        before,
        "a refused call writes nothing"
    );
    // Revoking again changes nothing; an unknown id is NOT_FOUND.
    let again = admin
        .admin()
        .revoke_token(admin.req(pb::RevokeTokenRequest {
            token_id: first_id.clone(),
        }))
        .await
        .expect("revoke again")
        .into_inner();
    assert_eq!(again.version, 3, "{again:?}");
    let e = admin
        .admin()
        .revoke_token(admin.req(pb::RevokeTokenRequest {
            token_id: "tok-unknown".into(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(node_a.event_count().await, before);

    // The other token of the same principal still works.
    let gw_second = Client::connect(node_a.addr, &second.token).await;
    gw_second.get(&case).await.expect("second token works");

    // The other node follows within its follow interval (2 s; a bounded wait, no
    // timing assertion): once it applied the revocation, the revoked token is refused
    // there too and the live one accepted.
    let mut followed = false;
    for _ in 0..200 {
        if whistle_api::tokens::applied_version(&node_b.state).await >= 3 {
            followed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(followed, "node b never applied the admin tokens stream");
    let e = Client::connect(node_b.addr, &first.token)
        .await
        .get(&case)
        .await
        .expect_err("revoked on node b too");
    assert_eq!(e.code(), Code::Unauthenticated);
    Client::connect(node_b.addr, &second.token)
        .await
        .get(&case)
        .await
        .expect("node b accepts the live token");

    let listed = list(&admin, false).await;
    assert_eq!(listed.tokens.len(), 1, "inactive tokens hidden by default");
    let all = list(&admin, true).await;
    assert_eq!(all.tokens.len(), 2);
    let revoked = all
        .tokens
        .iter()
        .find(|t| t.token_id == first_id)
        .expect("revoked token listed");
    assert!(revoked.revoked && !revoked.active && revoked.revoked_at.is_some());

    // A restart keeps both: the revoked token stays refused, the live one works.
    node_a.stop().await;
    node_b.stop().await;
    let node_c = spawn_app(&b).await;
    let e = Client::connect(node_c.addr, &first.token)
        .await
        .get(&case)
        .await
        .expect_err("still revoked after a restart");
    assert_eq!(e.code(), Code::Unauthenticated);
    Client::connect(node_c.addr, &second.token)
        .await
        .get(&case)
        .await
        .expect("still valid after a restart");
    let admin_c = node_c.client("admin").await;
    let all = list(&admin_c, true).await;
    assert_eq!(all.version, 3);
    assert_eq!(
        all.tokens
            .iter()
            .map(|t| (t.token_id.as_str(), t.revoked))
            .collect::<Vec<_>>(),
        vec![(first_id.as_str(), true), (second_id.as_str(), false)]
    );
    // Configured principals keep working beside issued tokens.
    node_c
        .client("gw-lin")
        .await
        .get(&case)
        .await
        .expect("config token");
    node_c.stop().await;
}

async fn tokens_expire_by_the_application_clock(b: Backend) {
    let clock = whistle_api::ManualClock::new(datetime!(2025-03-03 09:00 UTC));
    let app = spawn_app_with(
        &b,
        &b.url(),
        AppOptions {
            clock: Some(clock.clone()),
            ..Default::default()
        },
    )
    .await;
    let admin = app.client("admin").await;
    let issued = issue(
        &admin,
        pb::IssueTokenRequest {
            ttl_seconds: Some(3600),
            ..issue_req("sup-temp", "supervisor")
        },
    )
    .await;
    let info = issued.info.expect("info");
    assert_eq!(
        info.expires_at.as_ref().map(|t| t.seconds),
        Some(datetime!(2025-03-03 10:00 UTC).unix_timestamp())
    );
    let sup = Client::connect(app.addr, &issued.token).await;
    // A case nobody reported: NOT_FOUND to an authenticated caller.
    let nowhere = uuid::Uuid::now_v7().to_string();
    let e = sup.get(&nowhere).await.expect_err("no such case");
    assert_eq!(e.code(), Code::NotFound, "valid before its expiry: {e:?}");
    clock.advance(time::Duration::minutes(59));
    let e = sup.get(&nowhere).await.expect_err("no such case");
    assert_eq!(
        e.code(),
        Code::NotFound,
        "valid a minute before its expiry: {e:?}"
    );
    clock.advance(time::Duration::minutes(1));
    let e = sup.get(&nowhere).await.expect_err("expired");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("expired"), "{e:?}");

    let listed = list(&admin, false).await;
    assert!(listed.tokens.is_empty(), "{listed:?}");
    let all = list(&admin, true).await;
    assert_eq!(all.tokens.len(), 1);
    assert!(!all.tokens[0].active && !all.tokens[0].revoked);

    // An expiry already past is a mistake, refused by name.
    let before = app.event_count().await;
    let e = admin
        .admin()
        .issue_token(admin.req(pb::IssueTokenRequest {
            expires_at: Some(prost_types::Timestamp {
                seconds: datetime!(2025-03-03 09:30 UTC).unix_timestamp(),
                nanos: 0,
            }),
            ..issue_req("sup-temp", "supervisor")
        }))
        .await
        .expect_err("expiry in the past");
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "expires_at"));
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

async fn only_admins_manage_tokens_and_bad_requests_name_their_field(b: Backend) {
    let app = spawn_app(&b).await;
    let admin = app.client("admin").await;
    let before = app.event_count().await;
    for who in [
        "sup-dongfeng",
        "dept-fire",
        "gw-lin",
        "resident-zhang",
        "h-wang",
    ] {
        let c = app.client(who).await;
        let e = c
            .admin()
            .issue_token(c.req(issue_req("x-admin", "admin")))
            .await
            .expect_err("not an admin");
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        let e = c
            .admin()
            .revoke_token(c.req(pb::RevokeTokenRequest {
                token_id: "tok-x".into(),
            }))
            .await
            .expect_err("not an admin");
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        let e = c
            .admin()
            .list_tokens(c.req(pb::ListTokensRequest::default()))
            .await
            .expect_err("not an admin");
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
    }
    let anonymous = admin.anonymous();
    let e = anonymous
        .admin()
        .list_tokens(anonymous.req(pb::ListTokensRequest::default()))
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), Code::Unauthenticated);

    let bad: Vec<(pb::IssueTokenRequest, &str)> = vec![
        (issue_req("", "handler"), "principal_id"),
        (issue_req("has space", "handler"), "principal_id"),
        (issue_req("system", "admin"), "principal_id"),
        (issue_req("x1", "system"), "role"),
        (issue_req("x1", "mayor"), "role"),
        (issue_req("x1", "department"), "department"),
        (
            pb::IssueTokenRequest {
                department: "no-such-dept".into(),
                ..issue_req("x1", "department")
            },
            "department",
        ),
        (
            pb::IssueTokenRequest {
                department: "fire".into(),
                ..issue_req("x1", "handler")
            },
            "department",
        ),
        (
            pb::IssueTokenRequest {
                scope: "nowhere".into(),
                ..issue_req("x1", "supervisor")
            },
            "scope",
        ),
        (
            pb::IssueTokenRequest {
                scope: "dongfeng-hongqi".into(),
                ..issue_req("x1", "resident")
            },
            "scope",
        ),
        (
            pb::IssueTokenRequest {
                grids: vec!["g-nowhere".into()],
                ..issue_req("x1", "grid_worker")
            },
            "grids",
        ),
        (
            pb::IssueTokenRequest {
                scope: "dongfeng-hongqi".into(),
                grids: vec!["g-hongqi".into()],
                ..issue_req("x1", "grid_worker")
            },
            "grids",
        ),
        (
            pb::IssueTokenRequest {
                ttl_seconds: Some(0),
                ..issue_req("x1", "handler")
            },
            "ttl_seconds",
        ),
        (
            pb::IssueTokenRequest {
                name: "x".repeat(201),
                ..issue_req("x1", "handler")
            },
            "name",
        ),
        // A configured principal keeps its role.
        (issue_req("gw-lin", "admin"), "role"),
    ];
    for (r, expected) in bad {
        let shown = format!("{r:?}");
        let e = admin
            .admin()
            .issue_token(admin.req(r))
            .await
            .expect_err(&shown);
        assert_eq!(
            (e.code(), field(&e)),
            (Code::InvalidArgument, expected),
            "{shown}: {e:?}"
        );
    }
    let e = admin
        .admin()
        .revoke_token(admin.req(pb::RevokeTokenRequest::default()))
        .await
        .expect_err("no id");
    assert_eq!((e.code(), field(&e)), (Code::InvalidArgument, "token_id"));
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    // A scoped grid worker and a department account issue fine.
    let gw = issue(
        &admin,
        pb::IssueTokenRequest {
            grids: vec!["g-hongqi".into()],
            ttl_seconds: Some(30 * 86_400),
            ..issue_req("gw-hongqi-2", "grid_worker")
        },
    )
    .await;
    assert_eq!(gw.info.expect("info").grids, vec!["g-hongqi".to_string()]);
    let dept = issue(
        &admin,
        pb::IssueTokenRequest {
            department: "fire".into(),
            ..issue_req("dept-fire-2", "department")
        },
    )
    .await;
    let fire = Client::connect(app.addr, &dept.token).await;
    fire.departments()
        .acknowledge_case(fire.req(pb::CaseCommandRequest {
            case_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .or_else(|e| {
            if e.code() == Code::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .expect("the department token authenticates (the case does not exist)");
    app.stop().await;
}

async fn a_burst_beyond_the_rate_limit_is_refused_and_writes_nothing(b: Backend) {
    // No refill: the burst is a fixed budget, so the test needs no timing.
    let app = spawn_app_limited(
        &b,
        &b.url(),
        AppOptions::default(),
        RateLimits {
            per_second: 0.0,
            burst: 4,
        },
    )
    .await;
    let denied = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.starts_with("whistle_denied_total{") && l.contains("reason=\"rate_limited\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let metrics_before = denied(&http_get(app.http, "/metrics").await.1);
    let gw = app.client("gw-lin").await;
    for i in 0..4 {
        gw.report(
            "sanitation",
            "binhe-mingju",
            "overflowing bins",
            &format!("k{i}"),
        )
        .await
        .expect("within the burst");
    }
    let before = app.event_count().await;
    for i in 4..7 {
        let e = gw
            .report(
                "sanitation",
                "binhe-mingju",
                "overflowing bins",
                &format!("k{i}"),
            )
            .await
            .expect_err("beyond the burst");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    }
    assert_eq!(
        app.event_count().await,
        before,
        "refused calls write nothing"
    );
    // Other principals have their own buckets.
    let other = app.client("resident-zhang").await;
    other
        .report("sanitation", "binhe-mingju", "overflowing bins", "other")
        .await
        .expect("another principal is unaffected");
    assert!(app.event_count().await > before);
    let (status, text) = http_get(app.http, "/metrics").await;
    assert_eq!(status, 200);
    // The recorder is shared by every test in this process: at least our three.
    assert!(denied(&text) - metrics_before >= 3.0, "{text}");
    app.stop().await;
}

/// `whistle admin token-…` against a running server; `(stdout, stderr)`, panics on a
/// non-zero exit.
async fn cli(addr: std::net::SocketAddr, args: &[&str]) -> (String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_whistle"));
    cmd.arg("admin")
        .args(args)
        .arg("--server")
        .arg(format!("http://{addr}"))
        .arg("--token")
        .arg(crate::support::token("admin"));
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run whistle");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{shown}: {stdout}{stderr}");
    (stdout, stderr)
}

async fn the_cli_issues_lists_and_revokes_tokens(b: Backend) {
    let app = spawn_app(&b).await;
    let (token, info) = cli(
        app.addr,
        &[
            "token-issue",
            "--principal",
            "h-cli",
            "--role",
            "handler",
            "--scope",
            "heping-lijing",
            "--ttl",
            "30d",
        ],
    )
    .await;
    let token = token.trim().to_string();
    assert!(
        token.starts_with("wst_"),
        "stdout is the token alone: {token:?}"
    );
    assert!(info.contains("shown once"), "{info}");
    let handler = Client::connect(app.addr, &token).await;
    let e = handler
        .get(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("no such case");
    assert_eq!(
        e.code(),
        Code::NotFound,
        "the issued token authenticates: {e:?}"
    );

    let (listed, _) = cli(app.addr, &["token-list"]).await;
    assert!(
        listed.contains("h-cli") && listed.contains("heping-lijing"),
        "{listed}"
    );
    assert!(
        !listed.contains(&token) && !listed.contains(&hash_token(&token)),
        "{listed}"
    );
    let token_id = listed
        .split_whitespace()
        .find(|w| w.starts_with("tok-"))
        .expect("token id listed")
        .to_string();

    let (revoked, _) = cli(app.addr, &["token-revoke", &token_id]).await;
    assert!(revoked.contains("revoked"), "{revoked}");
    let e = handler
        .get(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated);
    let (listed, _) = cli(app.addr, &["token-list"]).await;
    assert!(
        !listed.contains(&token_id),
        "revoked tokens hidden: {listed}"
    );
    let (all, _) = cli(app.addr, &["token-list", "--all"]).await;
    assert!(all.contains(&token_id) && all.contains("revoked"), "{all}");
    app.stop().await;
}
