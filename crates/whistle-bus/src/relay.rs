//! The outbox relay: follows the event log from a durable checkpoint and
//! publishes every event to JetStream, `Nats-Msg-Id` = event id.
//!
//! # Guarantees
//!
//! * **Nothing missed.** The checkpoint (`checkpoints` row, default name
//!   `relay:<stream>`) advances only past events whose publish JetStream
//!   acknowledged. After any failure (NATS down, ack timeout, store error,
//!   lease lost) the relay backs off and starts again from the checkpoint.
//! * **Nothing doubled** (after JetStream de-duplication): re-publishing from
//!   the checkpoint after a crash repeats at most one read batch, and JetStream
//!   drops the repeats by `Nats-Msg-Id` within the stream's duplicate window.
//! * **Per-case order.** Acks are pipelined in *groups* of up to
//!   `max_in_flight` publishes, and a group never holds two events of one case:
//!   the group is cut before an event whose case is already in it. An event is
//!   therefore published only after the previous event of its case was
//!   acknowledged, so even when a publish in the middle of a group fails and a
//!   later one succeeds (a reconnect, a leader election), the retry cannot put a
//!   case's events out of order in the stream. Two relays running at once (a
//!   lease lost and taken over) keep the same property.
//! * **Singleton.** Only the holder of the store's singleton lease `relay:<stream>`
//!   publishes (a PostgreSQL session advisory lock; other nodes wait and take
//!   over when it dies). The lease is re-checked before every checkpoint save.
//!
//! Lag (`Relay::lag`) is the committed head this process knows of minus the
//! checkpoint, logged with the progress.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use whistle_store::{Checkpoint, Singleton, Store, StreamId};

use crate::error::BusError;
use crate::follow::Follower;
use crate::message::{self as header, rfc3339};
use crate::provision::{StreamSettings, ensure_stream};
use crate::route::{CASE_STREAM_PREFIX, Routed, Router};
use crate::subject;

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `nats://host:port` (several comma-separated for a cluster).
    pub nats_url: String,
    /// The stream to provision and publish to.
    pub stream: StreamSettings,
    /// Most publishes awaiting their ack at once.
    pub max_in_flight: usize,
    /// Events read from the log per batch (the checkpoint is saved per batch).
    pub read_batch: u32,
    /// Poll interval when no commit notification comes.
    pub poll: Duration,
    /// First and longest pause between attempts after a failure.
    pub backoff: (Duration, Duration),
    /// How long a publish waits for its ack.
    pub ack_timeout: Duration,
}

impl RelayConfig {
    /// Defaults: 256 acks in flight, 1024 events per batch, 500 ms poll,
    /// backoff 200 ms doubling to 5 s, 5 s ack timeout.
    pub fn new(nats_url: impl Into<String>, stream: StreamSettings) -> RelayConfig {
        RelayConfig {
            nats_url: nats_url.into(),
            stream,
            max_in_flight: 256,
            read_batch: 1024,
            poll: crate::follow::DEFAULT_POLL,
            backoff: (Duration::from_millis(200), Duration::from_secs(5)),
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// Name of the checkpoint and of the singleton lease: `relay:<stream>`.
    pub fn checkpoint_name(&self) -> String {
        format!("relay:{}", self.stream.name)
    }
}

#[derive(Debug, Default)]
struct Counters {
    checkpoint: AtomicI64,
    head: AtomicI64,
    published: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
    stream_seq: AtomicU64,
    running: AtomicBool,
}

/// A live view of the relay's progress; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelayStatus(Arc<Counters>);

impl RelayStatus {
    /// Last position published, acknowledged and checkpointed.
    pub fn checkpoint(&self) -> i64 {
        self.0.checkpoint.load(Ordering::Relaxed)
    }
    /// Committed events this process knows of that are not yet checkpointed.
    pub fn lag(&self) -> i64 {
        (self.0.head.load(Ordering::Relaxed) - self.checkpoint()).max(0)
    }
    /// Publishes JetStream stored as new.
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }
    /// Publishes JetStream recognised as duplicates (re-publishing after a restart).
    pub fn duplicates(&self) -> u64 {
        self.0.duplicates.load(Ordering::Relaxed)
    }
    /// Failed attempts so far (each followed by a backoff).
    pub fn failures(&self) -> u64 {
        self.0.failures.load(Ordering::Relaxed)
    }
    /// The stream sequence of the last acknowledged publish.
    pub fn stream_sequence(&self) -> u64 {
        self.0.stream_seq.load(Ordering::Relaxed)
    }
    /// Whether the relay holds the lease and is connected and provisioned.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }
}

/// A running relay task.
#[derive(Debug)]
pub struct Relay {
    status: RelayStatus,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts the relay on the current runtime. It never gives up: failures
    /// are logged and retried with backoff until [`Relay::stop`].
    pub fn spawn(store: Arc<Store>, cfg: RelayConfig) -> Relay {
        Relay::spawn_with(store, cfg, RelayStatus::default())
    }

    /// Like [`Relay::spawn`], reporting into `status` (a handle the caller made
    /// earlier, e.g. for a metrics endpoint that exists before the relay starts).
    pub fn spawn_with(store: Arc<Store>, cfg: RelayConfig, status: RelayStatus) -> Relay {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, cfg, status.clone(), stopped));
        Relay { status, stop, task }
    }

    /// The relay's progress.
    pub fn status(&self) -> RelayStatus {
        self.status.clone()
    }

    /// See [`RelayStatus::lag`].
    pub fn lag(&self) -> i64 {
        self.status.lag()
    }

    /// Stops between publishes and waits for the task; the lease is released.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Kills the task wherever it is (tests: a crash mid-batch).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<Store>,
    cfg: RelayConfig,
    status: RelayStatus,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = cfg.backoff.0;
    // The lease is kept across NATS failures (the node stays the relay while NATS is
    // away) and given up when the store fails or the lease itself is in doubt.
    let mut lease: Option<Singleton> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        let outcome = tokio::select! {
            r = session(&store, &cfg, &status, &mut lease, &mut backoff) => r,
            _ = stopped.changed() => Ok(()),
        };
        status.0.running.store(false, Ordering::Relaxed);
        if matches!(outcome, Err(BusError::Lease(_) | BusError::Store(_)))
            && let Some(lease) = lease.take()
        {
            lease.release().await;
        }
        match outcome {
            Ok(()) => break,
            Err(error) => {
                status.0.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, lag = status.lag(), "relay interrupted; retrying from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => break,
                }
                backoff = (backoff * 2).min(cfg.backoff.1);
            }
        }
    }
    if let Some(lease) = lease.take() {
        lease.release().await;
    }
    tracing::info!(checkpoint = status.checkpoint(), "relay stopped");
}

/// Waits for the lease, connects, provisions, then publishes until an error.
async fn session(
    store: &Arc<Store>,
    cfg: &RelayConfig,
    status: &RelayStatus,
    lease: &mut Option<Singleton>,
    backoff: &mut Duration,
) -> Result<(), BusError> {
    let name = cfg.checkpoint_name();
    let mut waiting_logged = false;
    let held = loop {
        if let Some(held) = lease {
            break held;
        }
        if let Some(l) = store.try_acquire_singleton(&name).await? {
            *lease = Some(l);
            continue;
        }
        if !waiting_logged {
            tracing::info!(lease = %name, "another node runs the relay; standing by");
            waiting_logged = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let servers = crate::servers::parse_servers(&cfg.nats_url).map_err(BusError::Connect)?;
    let client = crate::servers::with_credentials(async_nats::ConnectOptions::new(), &servers)
        .name("whistle-relay")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| BusError::Connect(e.to_string()))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(cfg.ack_timeout)
        .max_ack_inflight(cfg.max_in_flight.max(1) * 2)
        .build(client);
    ensure_stream(&js, &cfg.stream).await?;
    let cp = store.load_checkpoint(&name).await?.unwrap_or_default();
    status.0.checkpoint.store(cp.position, Ordering::Relaxed);
    status.0.running.store(true, Ordering::Relaxed);
    tracing::info!(stream = %cfg.stream.name, checkpoint = cp.position, "relay publishing");
    let mut follower =
        Follower::new(Arc::clone(store), cp.position, cfg.read_batch).with_poll(cfg.poll);
    let mut router = Router::default();
    let mut last_seq = u64::try_from(cp.aux).unwrap_or(0);
    let mut last_log = Instant::now();
    loop {
        let batch = follower.next_batch().await?;
        let Some(last_position) = batch.last().map(|r| r.position) else {
            continue;
        };
        status.0.head.store(
            follower.notified_head().max(last_position),
            Ordering::Relaxed,
        );
        let mut routed = Vec::with_capacity(batch.len());
        for rec in batch {
            if let Some(r) = router.route(&**store, rec).await? {
                routed.push(r);
            } else {
                tracing::trace!("skipping a non-case event");
            }
        }
        let mut group: Vec<&Routed> = Vec::with_capacity(cfg.max_in_flight);
        let mut cases: HashSet<&StreamId> = HashSet::new();
        for r in &routed {
            if group.len() >= cfg.max_in_flight.max(1) || cases.contains(&r.record.stream) {
                last_seq =
                    last_seq.max(publish_group(&js, &cfg.stream.district, &group, status).await?);
                group.clear();
                cases.clear();
            }
            cases.insert(&r.record.stream);
            group.push(r);
        }
        if !group.is_empty() {
            last_seq =
                last_seq.max(publish_group(&js, &cfg.stream.district, &group, status).await?);
        }
        held.check()
            .await
            .map_err(|e| BusError::Lease(e.to_string()))?;
        store
            .save_checkpoint(
                &name,
                Checkpoint {
                    position: last_position,
                    aux: i64::try_from(last_seq).unwrap_or(i64::MAX),
                },
            )
            .await?;
        status.0.checkpoint.store(last_position, Ordering::Relaxed);
        status.0.stream_seq.store(last_seq, Ordering::Relaxed);
        *backoff = cfg.backoff.0;
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                checkpoint = last_position,
                lag = status.lag(),
                published = status.published(),
                duplicates = status.duplicates(),
                stream_seq = last_seq,
                "relay progress"
            );
        } else {
            tracing::debug!(
                checkpoint = last_position,
                lag = status.lag(),
                events = routed.len(),
                "relay batch acknowledged"
            );
        }
    }
}

/// Publishes a group (distinct cases) with pipelined acks, awaited in order.
/// Returns the highest stream sequence acknowledged.
async fn publish_group(
    js: &jetstream::Context,
    district: &str,
    group: &[&Routed],
    status: &RelayStatus,
) -> Result<u64, BusError> {
    let mut pending: Vec<(&Routed, PublishAckFuture)> = Vec::with_capacity(group.len());
    for r in group {
        let (subject, message) = message(district, r);
        let ack = js
            .send_publish(subject, message)
            .await
            .map_err(|e| publish_error(r, e))?;
        pending.push((r, ack));
    }
    let mut last = 0;
    for (r, ack) in pending {
        let ack = ack.await.map_err(|e| publish_error(r, e))?;
        if ack.duplicate {
            status.0.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            status.0.published.fetch_add(1, Ordering::Relaxed);
        }
        last = last.max(ack.sequence);
    }
    Ok(last)
}

fn publish_error(r: &Routed, e: impl std::fmt::Display) -> BusError {
    BusError::Publish {
        event_id: r.record.event_id,
        position: r.record.position,
        reason: e.to_string(),
    }
}

/// The subject and message of a routed event (see [`crate::message`]).
pub fn message(district: &str, r: &Routed) -> (String, PublishMessage) {
    let rec = &r.record;
    let department = r.route.department.as_ref().map(|d| d.as_str());
    let subject = subject::event_subject(district, &r.route.compound, department, &rec.event_type);
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, rec.event_id.to_string().as_str());
    h.insert(header::POSITION, rec.position.to_string().as_str());
    h.insert(
        header::CASE_ID,
        rec.stream
            .as_str()
            .strip_prefix(CASE_STREAM_PREFIX)
            .unwrap_or(rec.stream.as_str()),
    );
    h.insert(header::VERSION, rec.version.to_string().as_str());
    h.insert(header::EVENT_TYPE, rec.event_type.as_str());
    h.insert(header::OCCURRED_AT, rfc3339(rec.occurred_at).as_str());
    h.insert(header::RECORDED_AT, rfc3339(rec.recorded_at).as_str());
    h.insert(header::ACTOR, rec.actor_id.as_str());
    h.insert(header::ACTOR_ROLE, rec.actor_role.as_str());
    h.insert(header::COMPOUND, r.route.compound.as_str());
    h.insert(
        header::DEPARTMENT,
        department.unwrap_or(subject::NO_DEPARTMENT),
    );
    let payload = Bytes::from(rec.payload.to_string());
    (subject, PublishMessage::build().payload(payload).headers(h))
}
