//! Departments end to end (小区吹哨、部门报到): the example department service signs
//! for, reports on site and resolves a case dispatched to it —
//!
//! * in the embedded mode (no NATS), following gRPC `WatchAssignments` of an
//!   in-process server, on both backends, with the service's scoping (a department
//!   sees and acts on its own cases only);
//! * against the real `whistle serve --nats-url …` binary, consuming its durable
//!   JetStream consumer from a nats-server spawned for the test.

use crate::both_backends;
use crate::support::{Backend, Client, Served, spawn_app, token};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use whistle_bus::testing::NatsServer;
use whistle_department::{ConsumerConfig, ExampleHandler, run_grpc, run_nats};
use whistle_proto::v1 as pb;
use whistle_proto::v1::department_service_client::DepartmentServiceClient;

both_backends!(example_department_resolves_an_escalated_case_over_watch_assignments);

/// Waits (bounded) until the case is resolved; returns its view.
async fn wait_resolved(client: &Client, case_id: &str) -> pb::CaseView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = client.get(case_id).await.expect("get case");
        if view.status == "resolved" {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "case not resolved in time: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dept_client(client: &Client) -> DepartmentServiceClient<tonic::transport::Channel> {
    client.departments()
}

async fn example_department_resolves_an_escalated_case_over_watch_assignments(b: Backend) {
    let app = spawn_app(&b).await;
    let server = format!("http://{}", app.addr);
    let gw = app.client("gw-lin").await;
    let gas = app.client("dept-gas").await;

    // The example service for the fire brigade, following WatchAssignments from 0.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn({
        let server = server.clone();
        async move {
            let mut handler =
                ExampleHandler::new(&server, &token("dept-fire"), "fire").expect("handler");
            let last = run_grpc(&mut handler, 0, async {
                let _ = stopped.await;
            })
            .await;
            (handler.resolved, last)
        }
    });

    // A fire hazard in a compound paired with the fire brigade: routing dispatches it.
    let case_id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b2").await;
    let view = wait_resolved(&gw, &case_id).await;
    assert_eq!(
        view.handler,
        crate::support::department("fire"),
        "resolved by the fire brigade"
    );
    let timeline = gw.timeline(&case_id).await;
    let types: Vec<_> = timeline
        .entries
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    for t in ["CaseAcknowledged", "ArrivedOnSite", "CaseResolved"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }

    // Scoping: the gas company sees none of it and cannot act on it.
    let mut watch = dept_client(&gas)
        .watch_assignments(gas.req(pb::WatchAssignmentsRequest { after_position: 0 }))
        .await
        .expect("gas may watch")
        .into_inner();
    let none = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(none.is_err(), "gas received {none:?}");
    let refused = dept_client(&gas)
        .add_note(gas.req(pb::AddNoteRequest {
            case_id: case_id.clone(),
            expected_version: None,
            idempotency_key: String::new(),
            text: "not ours".into(),
            evidence: vec![],
        }))
        .await
        .expect_err("not its case");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    // Only departments may use the service.
    let denied = dept_client(&gw)
        .watch_assignments(gw.req(pb::WatchAssignmentsRequest { after_position: 0 }))
        .await
        .expect_err("grid workers may not watch");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // The fire brigade's stream resumes from a cursor: after the last position it
    // handled, nothing old comes back.
    let _ = stop.send(());
    let (resolved, last) = service.await.expect("service");
    assert_eq!(resolved, 1);
    let fire = app.client("dept-fire").await;
    let mut resumed = dept_client(&fire)
        .watch_assignments(fire.req(pb::WatchAssignmentsRequest {
            after_position: last,
        }))
        .await
        .expect("resume")
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_millis(500), resumed.next()).await;
    assert!(nothing.is_err(), "nothing after the cursor: {nothing:?}");
    let mut from_zero = dept_client(&fire)
        .watch_assignments(fire.req(pb::WatchAssignmentsRequest { after_position: 0 }))
        .await
        .expect("from zero")
        .into_inner();
    let first = from_zero.next().await.expect("an assignment").expect("ok");
    assert_eq!(first.case_id, case_id);
    assert_eq!(first.event_type, "CaseAssigned");
    assert_eq!(first.department, "fire");
    assert_eq!(
        first.subject,
        "whistle.qinghe.hongqi-jiayuan.fire.CaseAssigned"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_department_resolves_an_escalated_case_from_nats_against_whistle_serve() {
    let test = "departments::example_department_from_nats";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let b = Backend::sqlite();
    let data_dir = b.data_dir();
    let served = Served::start(&data_dir, &b.url(), &["--nats-url", &nats.url()]);
    let demo = |id: &str| whistle_server::demo::token_for(&data_dir, id).expect("demo token");
    let gw = Client::connect(served.addr, &demo("gw-lin")).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn({
        let server = format!("http://{}", served.addr);
        let token = demo("dept-fire");
        let nats = nats.url();
        async move {
            let mut handler = ExampleHandler::new(&server, &token, "fire").expect("handler");
            run_nats(
                ConsumerConfig::new(nats, "qinghe", "fire"),
                &mut handler,
                async {
                    let _ = stopped.await;
                },
            )
            .await;
            handler.resolved
        }
    });

    // The demo's grid workers are scoped to their streets: gw-zhao works 西湖街道.
    let zhao = Client::connect(served.addr, &demo("gw-zhao")).await;
    let first = gw.report_ok("fire_hazard", "hongqi-jiayuan-b1").await;
    let second = zhao.report_ok("ebike_charging", "liuyin-huayuan-b3").await;
    for (reporter, case_id) in [(&gw, &first), (&zhao, &second)] {
        let view = wait_resolved(reporter, case_id).await;
        assert_eq!(view.handler, crate::support::department("fire"));
    }
    let _ = stop.send(());
    assert_eq!(service.await.expect("service"), 2);
    drop(served);
}

/// A department integration that cannot take anything.
struct Broken;

impl whistle_department::Handler for Broken {
    async fn handle(
        &mut self,
        _: &whistle_department::Delivery,
    ) -> Result<(), whistle_department::HandleError> {
        Err(whistle_department::HandleError::Transient(
            "the duty desk's system is down".into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_failing_past_max_deliver_produces_a_delivery_failed_event() {
    let test = "departments::delivery_failed";
    let Some(nats) = NatsServer::start(test) else {
        return;
    };
    let b = Backend::sqlite();
    let data_dir = b.data_dir();
    let served = Served::start(&data_dir, &b.url(), &["--nats-url", &nats.url()]);
    let demo = |id: &str| whistle_server::demo::token_for(&data_dir, id).expect("demo token");
    let gw = Client::connect(served.addr, &demo("gw-lin")).await;
    let case_id = gw.report_ok("fire_hazard", "hongqi-jiayuan-b3").await;

    // The fire brigade's integration fails every delivery; JetStream gives up after 2.
    let mut cfg = ConsumerConfig::new(nats.url(), "qinghe", "fire");
    cfg.max_deliver = 2;
    cfg.retry_delay = Duration::from_millis(100);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumer = loop {
        match whistle_department::DepartmentConsumer::connect(cfg.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no consumer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut broken = Broken;
    loop {
        assert!(Instant::now() < deadline, "no DeliveryFailed recorded");
        consumer
            .poll(&mut broken, Duration::from_millis(200))
            .await
            .expect("poll");
        let timeline = gw.timeline(&case_id).await;
        if let Some(e) = timeline
            .entries
            .iter()
            .find(|e| e.event_type == "DeliveryFailed")
        {
            let payload: serde_json::Value =
                serde_json::from_str(&e.payload_json).expect("payload");
            assert_eq!(payload["department"], "fire");
            assert_eq!(payload["deliveries"], 2);
            assert_eq!(e.actor.as_ref().map(|a| a.role.as_str()), Some("system"));
            break;
        }
    }
    assert!(consumer.stats().gave_up >= 1, "{:?}", consumer.stats());
    drop(served);
}
