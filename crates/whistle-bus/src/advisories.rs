//! Delivery failures: when a department's consumer fails a message `max_deliver`
//! times, JetStream gives up on it and publishes a max-deliveries advisory. whistle
//! turns each into a domain event (`DeliveryFailed`) on the case, which the SLA
//! machinery acts on and dashboards show.
//!
//! Advisories are plain NATS messages, lost if nobody listens at that instant, so
//! whistle captures them durably: a second stream `<stream>_ADVISORIES` on
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.*`, provisioned beside the
//! case stream, read by the durable consumer `whistle-delivery-failures`. For each
//! advisory the original message is looked up by its stream sequence (its headers
//! name the event, the case and the department) and handed to a sink; the advisory
//! is acknowledged only after the sink recorded it (or said it never can), so
//! nothing is lost while whistle or its database is down. Several whistle nodes may
//! run this: the durable consumer hands each advisory to one of them, and the sink
//! is idempotent (the server records it with an idempotency key).

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;

use crate::error::BusError;
use crate::message as h;
use crate::provision::{Storage, StreamSettings};
use crate::servers::{parse_servers, with_credentials};

/// Durable consumer of the advisory stream.
pub const FAILURES_CONSUMER: &str = "whistle-delivery-failures";

/// One message JetStream gave up delivering to a department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The event (`Nats-Msg-Id`).
    pub event_id: String,
    /// The case.
    pub case_id: uuid::Uuid,
    /// The undelivered event's type.
    pub event_type: String,
    /// The department whose consumer failed (from `dept-<department>`, else the
    /// message's department header).
    pub department: String,
    /// The consumer that gave up.
    pub consumer: String,
    /// Deliveries attempted.
    pub deliveries: u64,
    /// The message's sequence in the case stream.
    pub stream_seq: u64,
}

/// What the sink made of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded (or recorded before): acknowledge the advisory.
    Done,
    /// Cannot ever be recorded (logged by the sink): acknowledge the advisory.
    Skip,
    /// Try again later (e.g. the database is down): redeliver the advisory.
    Retry,
}

/// The advisory stream's name for a case stream.
pub fn advisory_stream(case_stream: &str) -> String {
    format!("{case_stream}_ADVISORIES")
}

/// Creates the advisory stream if missing (same storage and replicas as the case
/// stream, kept 7 days).
pub async fn ensure_advisory_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, BusError> {
    let name = advisory_stream(&settings.name);
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            settings.name
        )],
        storage: match settings.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: settings.replicas.max(1),
        max_age: Duration::from_secs(7 * 24 * 3600),
        description: Some("max-deliveries advisories of whistle's department consumers".into()),
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::Provision(format!("stream {name}: {e}")))
}

/// Follows delivery failures until `shutdown`, reconnecting with backoff.
pub async fn run_delivery_failures<S, F>(
    nats_url: String,
    settings: StreamSettings,
    mut sink: S,
    shutdown: impl Future<Output = ()>,
) where
    S: FnMut(DeliveryFailure) -> F,
    F: Future<Output = Recorded>,
{
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            r = follow(&nats_url, &settings, &mut sink, &mut backoff) => r,
            _ = &mut shutdown => return,
        };
        if let Err(error) = result {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "delivery-failure watcher interrupted");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow<S, F>(
    nats_url: &str,
    settings: &StreamSettings,
    sink: &mut S,
    backoff: &mut Duration,
) -> Result<(), BusError>
where
    S: FnMut(DeliveryFailure) -> F,
    F: Future<Output = Recorded>,
{
    let servers = parse_servers(nats_url).map_err(BusError::Connect)?;
    let client = with_credentials(async_nats::ConnectOptions::new(), &servers)
        .name("whistle-delivery-failures")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| BusError::Connect(e.to_string()))?;
    let js = jetstream::new(client);
    let advisories = ensure_advisory_stream(&js, settings).await?;
    let cases = js
        .get_stream(&settings.name)
        .await
        .map_err(|e| BusError::Provision(format!("stream {}: {e}", settings.name)))?;
    let consumer: consumer::PullConsumer = advisories
        .get_or_create_consumer(
            FAILURES_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(FAILURES_CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::Provision(format!("consumer {FAILURES_CONSUMER}: {e}")))?;
    tracing::info!(stream = %advisory_stream(&settings.name), "watching department delivery failures");
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(64)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| BusError::Provision(format!("fetching advisories: {e}")))?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| BusError::Provision(format!("fetching advisories: {e}")))?;
            let verdict = match failure(&cases, &m.payload).await {
                Ok(f) => {
                    tracing::warn!(event_id = %f.event_id, case_id = %f.case_id, department = %f.department, deliveries = f.deliveries, "a department failed an event past max-deliver");
                    sink(f).await
                }
                Err(reason) => {
                    tracing::error!(%reason, "cannot read a max-deliveries advisory; dropping it");
                    Recorded::Skip
                }
            };
            let kind = match verdict {
                Recorded::Done | Recorded::Skip => AckKind::Ack,
                Recorded::Retry => AckKind::Nak(Some(Duration::from_secs(1))),
            };
            if let Err(error) = m.ack_with(kind).await {
                tracing::warn!(%error, "acknowledging an advisory failed; it will come again");
            }
            *backoff = Duration::from_millis(200);
        }
    }
}

/// Reads an advisory and the message it names.
async fn failure(cases: &stream::Stream, payload: &[u8]) -> Result<DeliveryFailure, String> {
    let advisory: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("advisory is not JSON: {e}"))?;
    let stream_seq = advisory["stream_seq"]
        .as_u64()
        .ok_or("advisory without stream_seq")?;
    let deliveries = advisory["deliveries"].as_u64().unwrap_or(0);
    let consumer = advisory["consumer"].as_str().unwrap_or_default().to_owned();
    let message = cases
        .get_raw_message(stream_seq)
        .await
        .map_err(|e| format!("message {stream_seq} of the case stream: {e}"))?;
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| format!("message {stream_seq} has no {name} header"))
    };
    let department = match consumer.strip_prefix("dept-") {
        Some(d) if crate::subject::is_token(d) => d.to_owned(),
        _ => header(h::DEPARTMENT)?,
    };
    Ok(DeliveryFailure {
        event_id: header(h::MSG_ID)?,
        case_id: header(h::CASE_ID)?
            .parse()
            .map_err(|e| format!("case id of message {stream_seq}: {e}"))?,
        department,
        consumer,
        deliveries,
        stream_seq,
        event_type: header(h::EVENT_TYPE).unwrap_or_default(),
    })
}
