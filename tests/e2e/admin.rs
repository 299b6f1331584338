//! AdminService: the SLA book and the roster change at run time, every change an event,
//! new clocks use the new version while running ones keep theirs, and other nodes and
//! restarts pick the change up.

use crate::both_backends;
use crate::support::{Backend, spawn_app};
use tonic::Code;
use whistle_domain::admin::{ROUTING_STREAM, SLA_STREAM};
use whistle_proto::v1 as pb;
use whistle_store::{EventStore, StreamId};

both_backends!(admins_publish_policies_and_rosters_as_events_that_every_node_follows);

const STRICTER: &str = r#"
[[policies]]
name = "83012-routine"
version = 2

[[policies.milestones]]
name = "respond"
scope = "rung"
starts_on = "rung_entered"
stops_on = ["CaseAcknowledged"]
target_seconds = 300
on_breach = "escalate"

[[policies.milestones]]
name = "resolve"
scope = "case"
starts_on = "reported"
stops_on = ["CaseResolved"]
target_seconds = 86400
on_breach = "notify"
"#;

fn respond(v: &pb::CaseView) -> &pb::MilestoneView {
    v.milestones
        .iter()
        .find(|m| m.milestone == "respond")
        .expect("respond clock")
}

fn target(m: &pb::MilestoneView) -> i64 {
    m.target.as_ref().map_or(0, |d| d.seconds)
}

async fn admins_publish_policies_and_rosters_as_events_that_every_node_follows(b: Backend) {
    let node_a = spawn_app(&b).await;
    let node_b = spawn_app(&b).await;
    let admin = node_a.client("admin").await;
    let sup = node_a.client("sup-dongfeng").await;
    let gw_a = node_a.client("gw-lin").await;
    let gw_b = node_b.client("gw-lin").await;

    let e = sup
        .admin()
        .get_sla(sup.req(pb::GetSlaRequest {}))
        .await
        .expect_err("supervisor");
    assert_eq!(e.code(), Code::PermissionDenied);
    let doc = admin
        .admin()
        .get_sla(admin.req(pb::GetSlaRequest {}))
        .await
        .expect("get")
        .into_inner();
    assert!(doc.toml.contains("83012-routine"), "{}", doc.toml);
    assert_eq!(doc.version, 0, "still the file's book");

    let before = gw_a
        .report_ok("neighbour_noise", "heping-lijing-b1-u1")
        .await;
    let count = node_a.event_count().await;

    // Refused publications change nothing.
    for (bad, why) in [
        ("not toml [[", "syntax"),
        (
            &*STRICTER.replace("version = 2", "version = 1"),
            "rewrites v1",
        ),
        (
            &*STRICTER.replace("target_seconds = 300", "target_seconds = 0"),
            "zero target",
        ),
    ] {
        let e = admin
            .admin()
            .publish_sla(admin.req(pb::PublishSlaRequest {
                toml: bad.to_string(),
                expected_version: None,
            }))
            .await
            .expect_err(why);
        assert_eq!(e.code(), Code::InvalidArgument, "{why}: {e:?}");
        assert!(e.message().starts_with("toml:"), "{why}: {}", e.message());
    }
    assert_eq!(node_a.event_count().await, count);

    let ack = admin
        .admin()
        .publish_sla(admin.req(pb::PublishSlaRequest {
            toml: STRICTER.into(),
            expected_version: Some(0),
        }))
        .await
        .expect("publish v2")
        .into_inner();
    assert_eq!(ack.version, 1);
    assert_eq!(ack.changes, ["policy 83012-routine v2 published"]);
    let store = b.store().await;
    let log = store
        .read_stream(&StreamId::new(SLA_STREAM), 0)
        .await
        .expect("admin stream");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].event_type.as_str(), log[0].actor_id.as_str()),
        ("SlaPublished", "admin")
    );

    // New clocks use v2 on this node; the running one keeps v1.
    let after = gw_a
        .report_ok("neighbour_noise", "heping-lijing-b1-u2")
        .await;
    let a_view = gw_a.get(&after).await.expect("get");
    assert_eq!(
        (respond(&a_view).policy_version, target(respond(&a_view))),
        (2, 300)
    );
    let old = gw_a.get(&before).await.expect("get");
    assert_eq!(
        (respond(&old).policy_version, target(respond(&old))),
        (1, 480)
    );
    // A stale expected version is refused.
    let e = admin
        .admin()
        .publish_sla(admin.req(pb::PublishSlaRequest {
            toml: STRICTER.replace("version = 2", "version = 3"),
            expected_version: Some(0),
        }))
        .await
        .expect_err("stale");
    assert_eq!(e.code(), Code::Aborted);

    // The roster: heping-lijing's NEIGHBOUR cases now go to h-chen.
    let e = admin
        .admin()
        .set_roster(admin.req(pb::SetRosterRequest {
            entries: vec![pb::RosterEntry {
                level: pb::Level::Escalated.into(),
                org: "heping-lijing".into(),
                principal_id: "h-chen".into(),
                party: String::new(),
            }],
            expected_version: None,
        }))
        .await
        .expect_err("ESCALATED is for departments");
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut entries = admin
        .admin()
        .get_routing(admin.req(pb::GetRoutingRequest {}))
        .await
        .expect("routing")
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 5, "the demo roster");
    assert!(
        entries
            .iter()
            .any(|e| e.principal_id == "prop-hongqi" && e.party == "property_company")
    );
    let mut bad = entries.clone();
    bad.push(pb::RosterEntry {
        level: pb::Level::Neighbour.into(),
        org: "heping-lijing".into(),
        principal_id: "h-chen".into(),
        party: "landlord".into(),
    });
    let e = admin
        .admin()
        .set_roster(admin.req(pb::SetRosterRequest {
            entries: bad,
            expected_version: None,
        }))
        .await
        .expect_err("unknown party");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("landlord"), "{}", e.message());
    entries.push(pb::RosterEntry {
        level: pb::Level::Neighbour.into(),
        org: "heping-lijing".into(),
        principal_id: "h-chen".into(),
        party: "party_member".into(),
    });
    admin
        .admin()
        .set_roster(admin.req(pb::SetRosterRequest {
            entries,
            expected_version: Some(0),
        }))
        .await
        .expect("set roster");
    assert_eq!(
        store
            .read_stream(&StreamId::new(ROUTING_STREAM), 0)
            .await
            .expect("routing stream")
            .len(),
        1
    );
    let routed = gw_a.report_ok("neighbour_noise", "heping-lijing-b2").await;
    let handler = |v: pb::CaseView| v.handler.and_then(|h| h.kind);
    assert_eq!(
        handler(gw_a.get(&routed).await.expect("get")),
        Some(pb::handler::Kind::PrincipalId("h-chen".into()))
    );

    // The other node follows both changes by itself.
    let mut followed = false;
    for _ in 0..100 {
        let id = gw_b.report_ok("neighbour_noise", "heping-lijing-b3").await;
        let v = gw_b.get(&id).await.expect("get");
        if respond(&v).policy_version == 2
            && handler(v.clone()) == Some(pb::handler::Kind::PrincipalId("h-chen".into()))
        {
            followed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(followed, "node b picked up the published book and roster");
    node_a.stop().await;
    node_b.stop().await;

    // A restart loads the configuration from the log, not from the files.
    let node_c = spawn_app(&b).await;
    let gw_c = node_c.client("gw-lin").await;
    let id = gw_c
        .report_ok("neighbour_noise", "heping-lijing-b1-u1")
        .await;
    let v = gw_c.get(&id).await.expect("get");
    assert_eq!(respond(&v).policy_version, 2);
    assert_eq!(
        handler(v),
        Some(pb::handler::Kind::PrincipalId("h-chen".into()))
    );
    node_c.stop().await;
    store.close().await;
}
