//! `deploy/nats/whistle.conf` against a real nats-server: the relay user provisions
//! the stream and publishes, each department consumes its own events through
//! `DepartmentConsumer`, and the fire brigade's NATS user is refused every way to
//! another department's events: a live subscription, another department's inbox,
//! creating or re-filtering a consumer, pulling from the gas company's consumer,
//! reading stored messages by sequence; nor may it publish an event.
//!
//! A refusal is asserted by what the server says: a `Permissions Violation` naming
//! the subject, or a JetStream error, and by the consumer's filter left as it was.
//! "Received nothing" is asserted after a round trip to the server that follows the
//! relay's acknowledged publishes (anything delivered would be queued before the
//! PONG), not after a sleep.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use async_nats::{Client, Event};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;
use whistle_bus::testing::NatsServer;
use whistle_bus::{StreamSettings, ensure_stream, subject};
use whistle_department::{ConsumerConfig, DepartmentConsumer, DepartmentError, inbox_prefix};

use super::{DISTRICT, Recorder, publish};

/// The deployed configuration, as operators get it.
const CONFIG: &str = include_str!("../../../../deploy/nats/whistle.conf");

const STREAM: &str = "WHISTLE_CASES";

struct Users {
    relay: String,
    fire: String,
    gas: String,
}

impl Users {
    fn new() -> Users {
        let pw = || Uuid::now_v7().simple().to_string();
        Users {
            relay: pw(),
            fire: pw(),
            gas: pw(),
        }
    }

    fn url(nats: &NatsServer, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", nats.port())
    }
}

/// A raw connection as the fire brigade's user, with the inbox prefix its
/// permissions allow, reporting the server's errors (permission violations).
async fn fire_client(
    nats: &NatsServer,
    users: &Users,
) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let servers = whistle_bus::parse_servers(&Users::url(nats, "fire", &users.fire)).expect("url");
    let client = whistle_bus::with_credentials(async_nats::ConnectOptions::new(), &servers)
        .custom_inbox_prefix(inbox_prefix("dept-fire"))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(servers)
        .await
        .expect("fire connects");
    (client, rx)
}

/// Waits for the server's permissions violation naming `subject` (errors come in
/// order, so earlier unrelated ones are skipped).
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, errors.recv()).await {
            Ok(Some(e))
                if e.to_lowercase().contains("permissions violation")
                    && e.contains(&format!("\"{subject}\"")) =>
            {
                return;
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no permissions violation for {subject}"),
        }
    }
}

async fn filter_of(js: &jetstream::Context, durable: &str) -> String {
    let info: serde_json::Value = js
        .request(
            format!("CONSUMER.INFO.{STREAM}.{durable}"),
            &serde_json::json!({}),
        )
        .await
        .expect("consumer info");
    info["config"]["filter_subject"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the consumer has no message awaiting an ack. The deadline is below
/// the consumer's 30 s `ack_wait`, so a refused ack cannot hide behind a redelivery.
async fn all_acked(js: &jetstream::Context, durable: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: serde_json::Value = js
            .request(
                format!("CONSUMER.INFO.{STREAM}.{durable}"),
                &serde_json::json!({}),
            )
            .await
            .expect("consumer info");
        if info["num_ack_pending"].as_u64() == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{durable}'s acks did not land: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_cannot_read_another_departments_subjects() {
    let users = Users::new();
    let Some(nats) = NatsServer::start_with_config(
        "department::permissions::a_department_cannot_read_another_departments_subjects",
        CONFIG,
        &[
            ("WHISTLE_NATS_RELAY_PASSWORD", &users.relay),
            ("WHISTLE_NATS_FIRE_PASSWORD", &users.fire),
            ("WHISTLE_NATS_GAS_PASSWORD", &users.gas),
        ],
    ) else {
        return;
    };
    eprintln!("{}", whistle_bus::testing::version());

    // whistle (the relay user) provisions both streams and publishes.
    let relay_servers =
        whistle_bus::parse_servers(&Users::url(&nats, "whistle", &users.relay)).expect("url");
    let relay = whistle_bus::with_credentials(async_nats::ConnectOptions::new(), &relay_servers)
        .connect(relay_servers)
        .await
        .expect("relay connects");
    let js = jetstream::new(relay);
    let settings = StreamSettings::new(DISTRICT);
    assert_eq!(
        settings.name, STREAM,
        "the configuration names the default stream"
    );
    ensure_stream(&js, &settings)
        .await
        .expect("relay provisions the stream");
    whistle_bus::advisories::ensure_advisory_stream(&js, &settings)
        .await
        .expect("relay provisions the advisory stream");
    let (fire_case, gas_case) = (Uuid::now_v7(), Uuid::now_v7());
    let mut position = 0;
    for v in 1..=3 {
        position += 1;
        publish(&js, "fire", fire_case, v, position).await;
        position += 1;
        publish(&js, "gas", gas_case, v, position).await;
    }

    // Without credentials nobody gets in.
    let anonymous = DepartmentConsumer::connect(ConsumerConfig::new(nats.url(), DISTRICT, "fire"));
    assert!(
        matches!(anonymous.await, Err(DepartmentError::Connect(_))),
        "a connection without credentials is refused"
    );

    // Each department consumes its own events with the library, under these permissions.
    let mut fire_handler = Recorder::default();
    let mut fire = DepartmentConsumer::connect(ConsumerConfig::new(
        Users::url(&nats, "fire", &users.fire),
        DISTRICT,
        "fire",
    ))
    .await
    .expect("fire's consumer");
    super::poll_until(&mut fire, &mut fire_handler, |c| c.stats().handled == 3).await;
    assert_eq!(
        *fire_handler.handled.lock().expect("lock"),
        vec![(fire_case, 1), (fire_case, 2), (fire_case, 3)]
    );
    let mut gas_handler = Recorder::default();
    let mut gas = DepartmentConsumer::connect(ConsumerConfig::new(
        Users::url(&nats, "gas", &users.gas),
        DISTRICT,
        "gas",
    ))
    .await
    .expect("gas's consumer");
    super::poll_until(&mut gas, &mut gas_handler, |c| c.stats().handled == 3).await;
    // Their acknowledgements are allowed too (a refused ack would stay pending).
    all_acked(&js, "dept-fire").await;
    all_acked(&js, "dept-gas").await;

    // The fire brigade's user tries every way to the gas company's events.
    let (client, mut errors) = fire_client(&nats, &users).await;
    let fire_js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let gas_filter = subject::department_filter(DISTRICT, "gas");

    // Live events, the gas company's inbox, and every inbox.
    let mut live = client.subscribe("whistle.*.*.gas.>").await.expect("sub");
    refused(&mut errors, "whistle.*.*.gas.>").await;
    let mut gas_inbox = client
        .subscribe(format!("{}.>", inbox_prefix("dept-gas")))
        .await
        .expect("sub");
    refused(&mut errors, "_INBOX.dept-gas.>").await;
    let mut all_inboxes = client.subscribe("_INBOX.>").await.expect("sub");
    refused(&mut errors, "_INBOX.>").await;

    // A consumer of its own filtered to gas, under gas's name or its own, or ephemeral.
    let attempt = fire_js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("dept-gas".into()),
                filter_subject: gas_filter.clone(),
                ..Default::default()
            },
            STREAM,
        )
        .await;
    assert!(attempt.is_err(), "creating dept-gas was not refused");
    refused(
        &mut errors,
        &format!("$JS.API.CONSUMER.CREATE.{STREAM}.dept-gas.{gas_filter}"),
    )
    .await;
    let attempt = fire_js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("dept-fire".into()),
                filter_subject: gas_filter.clone(),
                ..Default::default()
            },
            STREAM,
        )
        .await;
    assert!(
        attempt.is_err(),
        "re-filtering dept-fire to gas was not refused"
    );
    refused(
        &mut errors,
        &format!("$JS.API.CONSUMER.CREATE.{STREAM}.dept-fire.{gas_filter}"),
    )
    .await;
    let ephemeral = fire_js
        .create_consumer_on_stream(
            consumer::pull::Config {
                filter_subject: gas_filter.clone(),
                ..Default::default()
            },
            STREAM,
        )
        .await;
    assert!(ephemeral.is_err(), "an ephemeral consumer was not refused");
    refused(&mut errors, &format!("$JS.API.CONSUMER.CREATE.{STREAM}")).await;
    // The legacy create subject carries no filter to check: not granted.
    let legacy = serde_json::json!({"stream_name": STREAM, "config": {
        "durable_name": "dept-fire", "filter_subject": gas_filter, "ack_policy": "explicit"}});
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.dept-fire"),
            client.new_inbox(),
            legacy.to_string().into(),
        )
        .await
        .expect("publish");
    refused(
        &mut errors,
        &format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.dept-fire"),
    )
    .await;

    // The one create subject fire may use, with gas's filter in the body: JetStream
    // refuses a body that contradicts the subject, and dept-fire keeps its filter.
    let fire_filter = subject::department_filter(DISTRICT, "fire");
    let smuggled: serde_json::Value = fire_js
        .request(
            format!("CONSUMER.CREATE.{STREAM}.dept-fire.{fire_filter}"),
            &serde_json::json!({"stream_name": STREAM, "config": {
                "durable_name": "dept-fire", "filter_subject": gas_filter,
                "ack_policy": "explicit", "deliver_policy": "all"}}),
        )
        .await
        .expect("JetStream answers the allowed subject");
    // 10131: "Consumer create request did not match filtered subject from create
    // subject" (2.9.10 and 2.15.1 alike).
    assert_eq!(
        smuggled["error"]["err_code"].as_u64(),
        Some(10131),
        "a create whose body names gas's filter was not refused as such: {smuggled}"
    );
    // Nor may the body name another consumer than the subject.
    let renamed: serde_json::Value = fire_js
        .request(
            format!("CONSUMER.CREATE.{STREAM}.dept-fire.{fire_filter}"),
            &serde_json::json!({"stream_name": STREAM, "config": {
                "durable_name": "dept-gas", "filter_subject": fire_filter,
                "ack_policy": "explicit", "deliver_policy": "all"}}),
        )
        .await
        .expect("JetStream answers the allowed subject");
    // 10017: "consumer name in subject does not match durable name in request".
    assert_eq!(
        renamed["error"]["err_code"].as_u64(),
        Some(10017),
        "a create whose body names dept-gas was not refused as such: {renamed}"
    );
    assert_eq!(filter_of(&js, "dept-fire").await, fire_filter);
    assert_eq!(filter_of(&js, "dept-gas").await, gas_filter);

    // Pulling from the gas company's consumer, reading stored messages, forging events.
    let reply = client.new_inbox();
    let mut replies = client.subscribe(reply.clone()).await.expect("own inbox");
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.dept-gas"),
            reply.clone(),
            r#"{"batch":10,"expires":1000000000}"#.into(),
        )
        .await
        .expect("publish");
    refused(
        &mut errors,
        &format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.dept-gas"),
    )
    .await;
    client
        .publish_with_reply(
            format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
            reply.clone(),
            r#"{"seq":2}"#.into(),
        )
        .await
        .expect("publish");
    refused(&mut errors, &format!("$JS.API.STREAM.MSG.GET.{STREAM}")).await;
    let forged = subject::event_subject(DISTRICT, "hongqi-jiayuan", Some("gas"), "CaseResolved");
    client
        .publish(forged.clone(), "{}".into())
        .await
        .expect("publish");
    refused(&mut errors, &forged).await;

    // More gas events, acknowledged by JetStream (so delivered to any subscriber
    // first); then a round trip on fire's connection: nothing reached fire.
    for v in 4..=5 {
        position += 1;
        publish(&js, "gas", gas_case, v, position).await;
    }
    client.flush().await.expect("flush");
    assert!(
        live.next().now_or_never().is_none(),
        "fire saw a live gas event"
    );
    assert!(
        gas_inbox.next().now_or_never().is_none(),
        "fire read gas's inbox"
    );
    assert!(
        all_inboxes.next().now_or_never().is_none(),
        "fire read an inbox"
    );
    assert!(
        replies.next().now_or_never().is_none(),
        "fire pulled or read gas's messages"
    );
    assert_eq!(
        fire.poll(&mut fire_handler, Duration::from_millis(500))
            .await
            .expect("fire polls"),
        0,
        "fire's consumer delivers no gas event"
    );
    assert!(
        fire_handler
            .handled
            .lock()
            .expect("lock")
            .iter()
            .all(|(case, _)| *case == fire_case)
    );

    // And the gas company still gets all of its events: nothing was taken from it.
    super::poll_until(&mut gas, &mut gas_handler, |c| c.stats().handled == 5).await;
    all_acked(&js, "dept-gas").await;
    assert_eq!(
        *gas_handler.handled.lock().expect("lock"),
        (1..=5).map(|v| (gas_case, v)).collect::<Vec<_>>()
    );
}

/// The relay user's block covers the rest of whistle's side: when a department's
/// consumer gives up on an event, the delivery-failure watcher (as `whistle`)
/// provisions the advisory stream, consumes it, looks the event up by sequence and
/// acknowledges the advisory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_user_records_a_departments_delivery_failure() {
    let users = Users::new();
    let Some(nats) = NatsServer::start_with_config(
        "department::permissions::the_relay_user_records_a_departments_delivery_failure",
        CONFIG,
        &[
            ("WHISTLE_NATS_RELAY_PASSWORD", &users.relay),
            ("WHISTLE_NATS_FIRE_PASSWORD", &users.fire),
            ("WHISTLE_NATS_GAS_PASSWORD", &users.gas),
        ],
    ) else {
        return;
    };
    let relay_url = Users::url(&nats, "whistle", &users.relay);
    let servers = whistle_bus::parse_servers(&relay_url).expect("url");
    let js = jetstream::new(
        whistle_bus::with_credentials(async_nats::ConnectOptions::new(), &servers)
            .connect(servers)
            .await
            .expect("relay connects"),
    );
    let settings = StreamSettings::new(DISTRICT);
    ensure_stream(&js, &settings).await.expect("stream");
    // Provisioned before any consumer can give up (the watcher would create it too,
    // but an advisory published before it exists is lost).
    whistle_bus::advisories::ensure_advisory_stream(&js, &settings)
        .await
        .expect("advisory stream");
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(whistle_bus::advisories::run_delivery_failures(
        relay_url,
        settings,
        move |f| {
            let _ = failures_tx.send(f);
            async { whistle_bus::advisories::Recorded::Done }
        },
        async {
            let _ = stopped.await;
        },
    ));

    let case = Uuid::now_v7();
    let bad = publish(&js, "fire", case, 1, 1).await;
    let mut cfg = ConsumerConfig::new(Users::url(&nats, "fire", &users.fire), DISTRICT, "fire");
    cfg.max_deliver = 2;
    cfg.retry_delay = Duration::from_millis(100);
    let mut fire = DepartmentConsumer::connect(cfg)
        .await
        .expect("fire's consumer");
    let mut handler = Recorder::default();
    handler.fail.lock().expect("lock").insert(bad, u32::MAX);
    let deadline = Instant::now() + Duration::from_secs(60);
    // JetStream notices the exhausted message on the consumer's next pull.
    let failure = loop {
        assert!(Instant::now() < deadline, "no delivery failure recorded");
        fire.poll(&mut handler, Duration::from_millis(200))
            .await
            .expect("poll");
        if let Ok(f) = failures.try_recv() {
            break f;
        }
    };
    assert_eq!(failure.event_id, bad.to_string());
    assert_eq!(failure.case_id, case);
    assert_eq!(failure.department, "fire");
    let _ = stop.send(());
    watcher.await.expect("watcher");
}
