//! The outbox relay: follows the event log from a durable checkpoint and
//! publishes every event to JetStream, `Nats-Msg-Id` = event id.
//!
//! # Guarantees
//!
//! * **Nothing missed.** The checkpoint (`checkpoints` row, default name
//!   `relay:<stream>`) advances only past events whose publish JetStream
//!   acknowledged. After any failure (NATS down, ack timeout, store error,
//!   lease lost) the relay backs off and starts again from the checkpoint.
//! * **Nothing missed when the stream loses messages.** An ack only means "in
//!   the server's memory" (nats-server flushes to disk later), and an operator
//!   may delete or recreate the stream. The checkpoint also remembers the stream
//!   sequence of the last acknowledged message (`aux`), and the relay compares:
//!   - at session start, after provisioning (which recreates a deleted stream),
//!     a stream whose last sequence is below the remembered one lost messages;
//!   - while publishing, a *new* (non-duplicate) message acknowledged at or below
//!     the highest sequence already acknowledged means the stream was recreated
//!     underneath: the session ends with [`BusError::StreamReset`];
//!   - while idle, the stream's state is read after every `stream_check` without
//!     a batch: gone ([`BusError::StreamMissing`]: the next session provisions it)
//!     or behind the highest acknowledged sequence (`StreamReset`).
//!
//!   Each detection is logged (`warn`, both sequences and the stream), counted
//!   ([`RelayStatus::stream_resets`]) and answered by moving the checkpoint back
//!   to position 0 / sequence 0 under the lease — recorded before the session
//!   ends, so a crash cannot forget it — and re-publishing the whole log. The
//!   start is the conservative choice: which messages were lost is unknown (a
//!   lost tail, a restored snapshot), and no header of a surviving message bounds
//!   it safely (after a restart from the checkpoint or a lease take-over, stream
//!   order and log order differ). JetStream drops the repeats of messages still
//!   within its duplicate window; older survivors are stored again and
//!   departments drop them by event id (within the consumer's id memory; beyond
//!   it, handlers must be idempotent, as the example's idempotency keys make it). A stream *purged* on purpose keeps its
//!   sequence and is not refilled.
//!   The check compares sequences of the whole stream, so it assumes this relay is the
//!   stream's only publisher: districts sharing one NATS account should each have their
//!   own stream (`[nats] stream`), or another district's publishes can hide a loss.
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
//! * **A stop finishes the batch.** [`Relay::stop`] cuts short only waiting (for
//!   the lease, the connection, the next batch, a backoff, the idle stream
//!   check); a batch already read is published and checkpointed before the task
//!   ends (bounded by the ack timeout: a publish not acknowledged in time fails
//!   the batch, whose events the next start publishes again). [`Relay::abort`]
//!   kills the task wherever it is.
//!
//! Lag (`Relay::lag`) is the committed head this process knows of minus the
//! checkpoint, logged with the progress.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    context::{GetStreamErrorKind, PublishAckFuture},
    message::PublishMessage,
};
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
    /// How long the relay may sit idle (nothing to publish) before it reads the
    /// stream's state, so a stream deleted or recreated while nothing is written
    /// is noticed and refilled. Publishing notices it by itself.
    pub stream_check: Duration,
}

impl RelayConfig {
    /// Defaults: 256 acks in flight, 1024 events per batch, 500 ms poll,
    /// backoff 200 ms doubling to 5 s, 5 s ack timeout, stream checked after 5 s
    /// idle.
    pub fn new(nats_url: impl Into<String>, stream: StreamSettings) -> RelayConfig {
        RelayConfig {
            nats_url: nats_url.into(),
            stream,
            max_in_flight: 256,
            read_batch: 1024,
            poll: crate::follow::DEFAULT_POLL,
            backoff: (Duration::from_millis(200), Duration::from_secs(5)),
            ack_timeout: Duration::from_secs(5),
            stream_check: Duration::from_secs(5),
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
    stream_resets: AtomicU64,
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
    /// Times the stream was found to have lost messages it had acknowledged
    /// (deleted, recreated empty, restored from an older state), each followed
    /// by re-publishing the log from the start.
    pub fn stream_resets(&self) -> u64 {
        self.0.stream_resets.load(Ordering::Relaxed)
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

    /// Stops and waits for the task; the lease is released. Only waiting is cut
    /// short (for the lease, the next batch, a backoff, the idle stream check): a
    /// batch already read is published and checkpointed first, which a NATS that
    /// stopped answering bounds by the ack timeout (the batch then fails and the
    /// next start resumes from the checkpoint).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// [`Relay::stop`], given up at `deadline`: the task is then aborted, so no relay
    /// outlives its owner (the batch in flight is published again from the checkpoint
    /// by whoever relays next). Whether it stopped in time.
    pub async fn stop_by(mut self, deadline: tokio::time::Instant) -> bool {
        let _ = self.stop.send(true);
        if tokio::time::timeout_at(deadline, &mut self.task)
            .await
            .is_ok()
        {
            return true;
        }
        self.task.abort();
        let _ = self.task.await;
        false
    }

    /// Kills the task wherever it is (tests: a crash mid-batch).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The stop request as the relay task sees it. A dropped [`Relay`] (its sender
/// gone) counts as a stop, as it always has.
struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether a stop was requested.
    fn now(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once a stop is requested (at once if it already was). Only
    /// ever raced against *waiting*, never against a batch in flight.
    async fn requested(&mut self) {
        // Err means the sender is gone: also a stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

async fn run(
    store: Arc<Store>,
    cfg: RelayConfig,
    status: RelayStatus,
    stopped: watch::Receiver<bool>,
) {
    let mut stop = Stop(stopped);
    let mut backoff = cfg.backoff.0;
    // The lease is kept across NATS failures (the node stays the relay while NATS is
    // away) and given up when the store fails or the lease itself is in doubt.
    let mut lease: Option<Singleton> = None;
    // A loss of stream messages that a session detected but could not yet record
    // (the checkpoint moved back to the start): the next session records it.
    let mut refill = false;
    loop {
        if stop.now() {
            break;
        }
        let outcome = session(
            &store,
            &cfg,
            &status,
            &mut lease,
            &mut refill,
            &mut backoff,
            &mut stop,
        )
        .await;
        status.0.running.store(false, Ordering::Relaxed);
        if matches!(outcome, Err(BusError::Lease(_) | BusError::Store(_)))
            && let Some(lease) = lease.take()
        {
            lease.release().await;
            // Whoever holds the lease next judges the stream afresh; a loss remembered
            // here could otherwise trigger a needless full refill when this node
            // takes the lease again, maybe hours after another node refilled.
            refill = false;
        }
        match outcome {
            Ok(()) => break,
            Err(error) if stop.now() => {
                // The last batch failed while stopping: the checkpoint stayed where
                // it was, and the next start publishes from there.
                status.0.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, lag = status.lag(), "relay failed while stopping; the next start resumes from its checkpoint");
                break;
            }
            Err(error) => {
                status.0.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, lag = status.lag(), "relay interrupted; retrying from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.requested() => break,
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

/// Waits for the lease, connects, provisions, checks the stream against the
/// checkpoint, then publishes until an error or a stop. A stop ends only the
/// waiting (lease, connection, next batch, idle stream check); a batch once read
/// is published and checkpointed first.
async fn session(
    store: &Arc<Store>,
    cfg: &RelayConfig,
    status: &RelayStatus,
    lease: &mut Option<Singleton>,
    refill: &mut bool,
    backoff: &mut Duration,
    stop: &mut Stop,
) -> Result<(), BusError> {
    let name = cfg.checkpoint_name();
    let mut waiting_logged = false;
    let held = loop {
        if let Some(held) = lease {
            break held;
        }
        let acquired = tokio::select! {
            acquired = store.try_acquire_singleton(&name) => acquired?,
            _ = stop.requested() => return Ok(()),
        };
        if let Some(l) = acquired {
            *lease = Some(l);
            continue;
        }
        if !waiting_logged {
            tracing::info!(lease = %name, "another node runs the relay; standing by");
            waiting_logged = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.requested() => return Ok(()),
        }
    };
    let setup = async {
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
        // Creates the stream when it is missing (deleted under a previous session).
        let info = ensure_stream(&js, &cfg.stream).await?;
        let cp = store.load_checkpoint(&name).await?.unwrap_or_default();
        Ok::<_, BusError>((js, info, cp))
    };
    let (js, info, mut cp) = tokio::select! {
        setup = setup => setup?,
        _ = stop.requested() => return Ok(()),
    };
    // The stream's last sequence (from the info `ensure_stream` just read) below the
    // one the checkpoint remembers: messages the relay saw acknowledged are gone.
    let remembered = u64::try_from(cp.aux).unwrap_or(0);
    if info.state.last_sequence < remembered {
        stream_lost(
            cfg,
            status,
            remembered,
            info.state.last_sequence,
            cp.position,
        );
        *refill = true;
    }
    if *refill {
        cp = refill_from_start(store, held, &name, status).await?;
        *refill = false;
    }
    status.0.checkpoint.store(cp.position, Ordering::Relaxed);
    status
        .0
        .stream_seq
        .store(u64::try_from(cp.aux).unwrap_or(0), Ordering::Relaxed);
    status.0.running.store(true, Ordering::Relaxed);
    tracing::info!(stream = %cfg.stream.name, checkpoint = cp.position, stream_seq = cp.aux, "relay publishing");
    let mut follower =
        Follower::new(Arc::clone(store), cp.position, cfg.read_batch).with_poll(cfg.poll);
    let mut router = Router::default();
    // The highest stream sequence JetStream acknowledged for a new message (from the
    // checkpoint, then raised by every ack of this session).
    let mut last_seq = u64::try_from(cp.aux).unwrap_or(0);
    let mut last_log = Instant::now();
    // Publishing notices a deleted or recreated stream by itself; a relay with
    // nothing to publish looks at the stream's state instead, once per period of
    // idleness.
    let period = cfg.stream_check.max(Duration::from_millis(10));
    let mut idle_check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            biased;
            _ = stop.requested() => return Ok(()),
            batch = follower.next_batch() => batch?,
            _ = idle_check.tick() => {
                let checked = tokio::select! {
                    checked = check_stream(&js, &cfg.stream.name, last_seq) => checked,
                    _ = stop.requested() => return Ok(()),
                };
                if let Err(BusError::StreamReset { acknowledged, found, .. }) = &checked {
                    stream_lost(cfg, status, *acknowledged, *found, status.checkpoint());
                    *refill = true;
                    refill_from_start(store, held, &name, status).await?;
                    *refill = false;
                }
                checked?;
                continue;
            }
        };
        // From here on the batch is finished even when a stop is requested:
        // abandoning it would leave its events published but not checkpointed.
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
        let published = publish_batch(&js, cfg, &routed, status, &mut last_seq).await;
        if let Err(BusError::StreamReset {
            acknowledged,
            found,
            ..
        }) = &published
        {
            stream_lost(cfg, status, *acknowledged, *found, status.checkpoint());
            *refill = true;
            refill_from_start(store, held, &name, status).await?;
            *refill = false;
        }
        published?;
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
        idle_check.reset();
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

/// Logs and counts a detected loss of stream messages.
fn stream_lost(
    cfg: &RelayConfig,
    status: &RelayStatus,
    acknowledged: u64,
    found: u64,
    checkpoint: i64,
) {
    status.0.stream_resets.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        stream = %cfg.stream.name,
        acknowledged_seq = acknowledged,
        stream_seq = found,
        checkpoint,
        "the stream lost messages JetStream had acknowledged (deleted, recreated or restored from an older state); re-publishing the log from the start"
    );
}

/// Moves the checkpoint back to the start (position 0, stream sequence 0) under
/// the lease, so this session's successor — or the next process, after a crash —
/// re-publishes the whole log.
async fn refill_from_start(
    store: &Store,
    held: &mut Singleton,
    name: &str,
    status: &RelayStatus,
) -> Result<Checkpoint, BusError> {
    held.check()
        .await
        .map_err(|e| BusError::Lease(e.to_string()))?;
    let start = Checkpoint::default();
    store.save_checkpoint(name, start).await?;
    status.0.checkpoint.store(start.position, Ordering::Relaxed);
    status.0.stream_seq.store(0, Ordering::Relaxed);
    Ok(start)
}

/// Reads the stream's state: gone is [`BusError::StreamMissing`], a last sequence
/// below `acknowledged` (the highest this relay saw acknowledged) is
/// [`BusError::StreamReset`].
async fn check_stream(
    js: &jetstream::Context,
    stream: &str,
    acknowledged: u64,
) -> Result<(), BusError> {
    let info = js.get_stream(stream).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(err)
            if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            BusError::StreamMissing {
                stream: stream.to_owned(),
            }
        }
        _ => BusError::Provision(format!("stream {stream} info: {e}")),
    })?;
    let found = info.cached_info().state.last_sequence;
    if found < acknowledged {
        return Err(BusError::StreamReset {
            stream: stream.to_owned(),
            acknowledged,
            found,
        });
    }
    tracing::trace!(stream, stream_seq = found, "stream checked");
    Ok(())
}

/// Publishes a batch's routed events in groups (see the module docs), raising
/// `last_seq` with every new message's ack.
async fn publish_batch(
    js: &jetstream::Context,
    cfg: &RelayConfig,
    routed: &[Routed],
    status: &RelayStatus,
    last_seq: &mut u64,
) -> Result<(), BusError> {
    let mut group: Vec<&Routed> = Vec::with_capacity(cfg.max_in_flight);
    let mut cases: HashSet<&StreamId> = HashSet::new();
    for r in routed {
        if group.len() >= cfg.max_in_flight.max(1) || cases.contains(&r.record.stream) {
            publish_group(js, &cfg.stream, &group, status, last_seq).await?;
            group.clear();
            cases.clear();
        }
        cases.insert(&r.record.stream);
        group.push(r);
    }
    if !group.is_empty() {
        publish_group(js, &cfg.stream, &group, status, last_seq).await?;
    }
    Ok(())
}

/// Publishes a group (distinct cases) with pipelined acks, awaited in order.
/// Raises `last_seq` to each new message's stream sequence; a new message
/// acknowledged at or below it means the stream was recreated underneath
/// ([`BusError::StreamReset`]). Duplicates carry the original's sequence and are
/// not compared.
async fn publish_group(
    js: &jetstream::Context,
    stream: &StreamSettings,
    group: &[&Routed],
    status: &RelayStatus,
    last_seq: &mut u64,
) -> Result<(), BusError> {
    let mut pending: Vec<(&Routed, PublishAckFuture)> = Vec::with_capacity(group.len());
    for r in group {
        let (subject, message) = message(&stream.district, r);
        let ack = js
            .send_publish(subject, message)
            .await
            .map_err(|e| publish_error(r, e))?;
        pending.push((r, ack));
    }
    for (r, ack) in pending {
        let ack = ack.await.map_err(|e| publish_error(r, e))?;
        if ack.duplicate {
            status.0.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        status.0.published.fetch_add(1, Ordering::Relaxed);
        if ack.sequence <= *last_seq {
            return Err(BusError::StreamReset {
                stream: stream.name.clone(),
                acknowledged: *last_seq,
                found: ack.sequence,
            });
        }
        *last_seq = ack.sequence;
    }
    Ok(())
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
