//! [`DepartmentConsumer`]: a department's durable JetStream pull consumer.
//!
//! * durable consumer `dept-<department>` on the whistle stream, ONE
//!   `filter_subject` `whistle.<district>.*.<department>.>` (works on
//!   nats-server 2.9), explicit ack, `ack_wait`, `max_deliver`;
//! * a message is acknowledged only after the handler succeeded;
//! * idempotent by event id: ids handled are remembered (bounded), so a
//!   redelivered message (an ack lost, a restart) is acknowledged without
//!   handling it again — handlers should still be idempotent across restarts
//!   (the example uses idempotency keys derived from the event id);
//! * a transient failure naks the message with a delay so JetStream redelivers
//!   it; while it is outstanding, later messages of the SAME case are held in
//!   memory (kept alive with in-progress acks, never naked: a nak would spend one
//!   of their own `max_deliver` deliveries, and a case blocked for a while would
//!   lose its later events) and handled in order once the earlier one is; other
//!   cases carry on. Per-case order holds with one consumer instance per durable;
//!   if the blocking event is redelivered to another instance, the held events
//!   are released after `ack_wait` without seeing it again;
//! * after `max_deliver` deliveries JetStream gives up on the message and
//!   publishes a max-deliveries advisory (whistle records a delivery failure).
//!
//! It needs no more than the least permissions of `deploy/nats` (a NATS user per
//! department): credentials from the URL (`nats://fire:<password>@host:4222`);
//! replies under the inbox prefix `_INBOX.<durable>` (its own, so a department
//! allowed to subscribe only there cannot listen to another's pulled messages);
//! the consumer looked up (`CONSUMER.INFO`) and, if missing, created with the
//! filter in the request subject (`CONSUMER.CREATE.<stream>.<durable>.<filter>`)
//! — never the stream's info, which a department need not read.
//!
//! The durable consumer can vanish under a running instance: an operator deletes
//! it, or the stream itself is deleted or recreated (whistle's relay then
//! provisions the stream again and re-publishes the whole log). A pull to a
//! consumer that no longer exists is not refused, it goes unanswered, so the
//! consumer looks itself up (`CONSUMER.INFO`) after a failed fetch and after
//! 5 s without a message; when it is gone it is created again (same request as at connect, `deliver_policy` all), retried
//! with a backoff (200 ms doubling to 5 s) while the stream is missing, with a
//! warning each time. The instance keeps its memory of handled event ids, so the
//! refill's repeats are acknowledged without handling them again (up to
//! `remember` ids; beyond that handlers' own idempotency takes over).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use uuid::Uuid;
use whistle_bus::subject;

use crate::delivery::Delivery;

/// First pause before re-creating a vanished durable consumer again.
const RECREATE_BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// Longest pause between attempts to re-create a vanished durable consumer.
const RECREATE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Time without a message after which a poll checks that the durable consumer
/// still exists.
const CONSUMER_CHECK: Duration = Duration::from_secs(5);

fn subject_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, DepartmentError> {
    whistle_bus::parse_servers(urls).map_err(DepartmentError::Connect)
}

/// The inbox prefix of a consumer's connection: `_INBOX.<durable>`. JetStream
/// delivers pulled messages to the puller's inbox, so whoever may subscribe to
/// another party's inboxes reads its messages; a prefix of its own lets the NATS
/// permissions of a department allow `_INBOX.dept-<department>.>` and no more. A
/// durable name holds no `.`, and async-nats' own inboxes (`_INBOX.<nuid>`) never
/// contain `-`, so the prefix meets no other client's inboxes.
pub fn inbox_prefix(durable: &str) -> String {
    format!("_INBOX.{durable}")
}

/// What a handler's failure means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Try again later (whistle unreachable, a concurrent write): the message is
    /// naked and redelivered.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (the case moved on): the message is acknowledged and
    /// the failure logged.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A department's work on one delivered event.
pub trait Handler {
    /// Handles one event; `Ok` acknowledges it.
    fn handle(
        &mut self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Errors of the consumer itself (not of handlers).
#[derive(Debug, thiserror::Error)]
pub enum DepartmentError {
    /// Cannot reach NATS.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The whistle stream does not exist (yet): whistle provisions it at start.
    #[error("stream {stream}: {reason}")]
    Stream {
        /// Stream name.
        stream: String,
        /// What JetStream said.
        reason: String,
    },
    /// Creating or using the durable consumer failed.
    #[error("consumer {consumer}: {reason}")]
    Consumer {
        /// Consumer name.
        consumer: String,
        /// What JetStream said.
        reason: String,
    },
    /// A district or department id (or the durable name) is not a subject token.
    #[error("{0} is not a valid district or department code (or consumer name)")]
    BadCode(String),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `nats://host:4222` (comma-separated for a cluster).
    pub nats_url: String,
    /// The district code (subject token).
    pub district: String,
    /// The department code.
    pub department: String,
    /// Stream name (default `WHISTLE_CASES`).
    pub stream: String,
    /// Durable name (default `dept-<department>`).
    pub durable: String,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Deliveries before JetStream gives up on a message.
    pub max_deliver: i64,
    /// Messages per fetch.
    pub batch: usize,
    /// Delay of a nak (redelivery after a transient failure).
    pub retry_delay: Duration,
    /// Event ids remembered for de-duplication.
    pub remember: usize,
}

impl ConsumerConfig {
    /// Defaults: stream `WHISTLE_CASES`, durable `dept-<department>`, ack wait 30 s,
    /// max deliver 5, batches of 64, retry after 1 s, 100,000 ids remembered.
    pub fn new(
        nats_url: impl Into<String>,
        district: impl Into<String>,
        department: impl Into<String>,
    ) -> ConsumerConfig {
        let department = department.into();
        ConsumerConfig {
            nats_url: nats_url.into(),
            district: district.into(),
            durable: subject::department_consumer(&department),
            department,
            stream: whistle_bus::DEFAULT_STREAM.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            batch: 64,
            retry_delay: Duration::from_secs(1),
            remember: 100_000,
        }
    }
}

/// Counters since the consumer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Events handled and acknowledged.
    pub handled: u64,
    /// Redeliveries of events already handled (acknowledged without handling).
    pub duplicates: u64,
    /// Naks after a transient failure.
    pub naked: u64,
    /// Events held back behind an earlier failed event of their case (handled
    /// later, in order).
    pub held: u64,
    /// Permanent failures (acknowledged, logged).
    pub failed: u64,
    /// Transient failures on the last allowed delivery (JetStream gives up).
    pub gave_up: u64,
    /// Messages that were not whistle events (terminated).
    pub malformed: u64,
    /// Times the durable consumer was found gone and created again.
    pub recreated: u64,
}

/// Event ids already handled, bounded (oldest forgotten first).
#[derive(Debug)]
struct Remembered {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl Remembered {
    fn contains(&self, id: &Uuid) -> bool {
        self.set.contains(id)
    }
    fn insert(&mut self, id: Uuid) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// A later event of a blocked case, kept unacknowledged (in progress) until the
/// event before it is handled.
#[derive(Debug)]
struct Held {
    delivery: Delivery,
    message: jetstream::Message,
    /// When JetStream last heard about it (delivery or in-progress ack).
    touched: Instant,
}

/// A case whose event failed transiently and waits for its redelivery.
#[derive(Debug)]
struct Blocked {
    /// The failed event.
    on: Uuid,
    /// When the failed event was last delivered to this instance.
    since: Instant,
    /// Later events of the case, in arrival (stream) order.
    held: VecDeque<Held>,
}

/// What handling one event left behind.
enum Outcome {
    /// Handled, failed for good or given up by JetStream: the case may go on.
    Settled,
    /// Naked for redelivery: the case waits for it.
    Retrying,
}

/// The durable consumer is gone: when to try creating it again.
#[derive(Debug)]
struct Vanished {
    retry_at: Instant,
    backoff: Duration,
}

/// A department's durable consumer.
#[derive(Debug)]
pub struct DepartmentConsumer {
    cfg: ConsumerConfig,
    /// The stream handle (no info request behind it), to create the consumer again.
    stream: jetstream::stream::Stream<()>,
    consumer: consumer::PullConsumer,
    /// Set while the durable consumer is gone and not yet created again.
    vanished: Option<Vanished>,
    /// When JetStream last showed the durable consumer exists (a message came,
    /// or a look-up found it).
    alive: Instant,
    seen: Remembered,
    /// case → the event whose failure holds the case back, and the later events
    /// held until it is handled.
    blocked: HashMap<Uuid, Blocked>,
    stats: ConsumerStats,
}

impl DepartmentConsumer {
    /// Connects and creates (or reuses) the durable consumer. Fails with
    /// `Stream` while whistle has not provisioned the stream yet.
    pub async fn connect(cfg: ConsumerConfig) -> Result<DepartmentConsumer, DepartmentError> {
        // The durable name becomes the inbox prefix, so it must be one subject token.
        for code in [&cfg.district, &cfg.department, &cfg.durable] {
            if !subject::is_token(code) {
                return Err(DepartmentError::BadCode(code.clone()));
            }
        }
        let servers = subject_servers(&cfg.nats_url)?;
        let client = whistle_bus::with_credentials(async_nats::ConnectOptions::new(), &servers)
            .name(format!("whistle-department-{}", cfg.department))
            .custom_inbox_prefix(inbox_prefix(&cfg.durable))
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|e| DepartmentError::Connect(e.to_string()))?;
        let js = jetstream::new(client);
        // No STREAM.INFO request: a missing stream shows as the consumer request's
        // "stream not found" below.
        let stream =
            js.get_stream_no_info(&cfg.stream)
                .await
                .map_err(|e| DepartmentError::Stream {
                    stream: cfg.stream.clone(),
                    reason: e.to_string(),
                })?;
        let consumer = create_consumer(&stream, &cfg).await?;
        tracing::info!(department = %cfg.department, consumer = %cfg.durable, stream = %cfg.stream, "department consumer ready");
        Ok(DepartmentConsumer {
            seen: Remembered {
                set: HashSet::new(),
                order: VecDeque::new(),
                capacity: cfg.remember.max(1),
            },
            cfg,
            stream,
            consumer,
            vanished: None,
            alive: Instant::now(),
            blocked: HashMap::new(),
            stats: ConsumerStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> ConsumerStats {
        self.stats
    }

    /// Handles messages until `shutdown` completes.
    pub async fn run<H: Handler>(
        &mut self,
        handler: &mut H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DepartmentError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                r = self.poll(handler, Duration::from_secs(1)) => { r?; }
                _ = &mut shutdown => return Ok(()),
            }
        }
    }

    /// One fetch of up to `batch` messages (waiting at most `wait`), each handled
    /// in order. Returns how many messages came. While the durable consumer is
    /// gone (see the module docs) it tries to create it again instead, waiting at
    /// most `wait` for the next attempt, and returns 0.
    pub async fn poll<H: Handler>(
        &mut self,
        handler: &mut H,
        wait: Duration,
    ) -> Result<usize, DepartmentError> {
        if self.vanished.is_some() && !self.recreate(wait).await {
            return Ok(0);
        }
        self.tend_held(handler).await;
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(self.cfg.batch.max(1))
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.consumer_error(e))?;
        let mut n = 0;
        let mut failed = false;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "fetching from JetStream failed");
                    failed = true;
                    break;
                }
            };
            n += 1;
            self.process(handler, m).await;
        }
        if n > 0 {
            self.alive = Instant::now();
        }
        // A pull to a consumer that no longer exists gets no answer at all
        // (nats-server neither refuses it nor says "no responders") and ends on the
        // client's timer like an empty pull, or fails ("consumer deleted" for a pull
        // waiting when it went): look the consumer up rather than pulling from
        // nothing forever.
        if failed || self.alive.elapsed() >= CONSUMER_CHECK {
            self.check_consumer().await;
        }
        Ok(n)
    }

    /// Looks the durable consumer up (after a failed fetch, or a quiet
    /// `CONSUMER_CHECK`); marks it vanished when JetStream no longer knows it (or
    /// its stream).
    async fn check_consumer(&mut self) {
        match self.consumer.get_info().await {
            Ok(_) => self.alive = Instant::now(),
            Err(e)
                if matches!(
                    e.kind(),
                    ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
                ) =>
            {
                tracing::warn!(
                    department = %self.cfg.department,
                    consumer = %self.cfg.durable,
                    stream = %self.cfg.stream,
                    error = %e,
                    "the durable consumer is gone (deleted, or its stream deleted or recreated); creating it again"
                );
                self.vanished = Some(Vanished {
                    retry_at: Instant::now(),
                    backoff: RECREATE_BACKOFF_FIRST,
                });
            }
            // NATS unreachable or slow: the next fetches tell more; looked up
            // again after another idle period.
            Err(e) => {
                tracing::debug!(error = %e, "looking up the durable consumer failed");
                self.alive = Instant::now();
            }
        }
    }

    /// Tries to create the vanished durable consumer once its backoff has passed
    /// (waiting for that at most `wait`). Returns whether it exists again.
    async fn recreate(&mut self, wait: Duration) -> bool {
        let Some(vanished) = self.vanished.as_mut() else {
            return true;
        };
        let now = Instant::now();
        if vanished.retry_at > now {
            let left = vanished.retry_at - now;
            tokio::time::sleep(left.min(wait)).await;
            if left > wait {
                return false;
            }
        }
        match create_consumer(&self.stream, &self.cfg).await {
            Ok(consumer) => {
                tracing::info!(department = %self.cfg.department, consumer = %self.cfg.durable, stream = %self.cfg.stream, "durable consumer created again");
                self.consumer = consumer;
                self.vanished = None;
                self.alive = Instant::now();
                self.stats.recreated += 1;
                true
            }
            Err(error) => {
                tracing::warn!(
                    department = %self.cfg.department,
                    consumer = %self.cfg.durable,
                    %error,
                    retry_in_ms = vanished.backoff.as_millis() as u64,
                    "cannot create the durable consumer again yet (is the stream provisioned?)"
                );
                vanished.retry_at = Instant::now() + vanished.backoff;
                vanished.backoff = (vanished.backoff * 2).min(RECREATE_BACKOFF_MAX);
                false
            }
        }
    }

    fn consumer_error(&self, e: impl std::fmt::Display) -> DepartmentError {
        DepartmentError::Consumer {
            consumer: self.cfg.durable.clone(),
            reason: e.to_string(),
        }
    }

    async fn settle(m: &jetstream::Message, kind: AckKind) {
        if let Err(error) = m.ack_with(kind).await {
            // Lost acks mean a redelivery, which the id memory absorbs.
            tracing::warn!(%error, "acknowledging to JetStream failed");
        }
    }

    /// Keeps held events alive (an in-progress ack before `ack_wait` runs out) and
    /// releases cases whose failed event has not come back within `ack_wait` after
    /// its retry delay (JetStream gave it to another instance of the durable).
    async fn tend_held<H: Handler>(&mut self, handler: &mut H) {
        let now = Instant::now();
        let refresh = self.cfg.ack_wait / 3;
        let give_up_waiting = self.cfg.ack_wait + self.cfg.retry_delay;
        let mut stale = Vec::new();
        for (case, blocked) in &mut self.blocked {
            if now.duration_since(blocked.since) > give_up_waiting {
                stale.push(*case);
                continue;
            }
            for held in &mut blocked.held {
                if now.duration_since(held.touched) >= refresh {
                    if let Err(error) = held.message.ack_with(AckKind::Progress).await {
                        tracing::warn!(%error, "in-progress ack to JetStream failed");
                    }
                    held.touched = now;
                }
            }
        }
        for case in stale {
            tracing::warn!(case_id = %case, "the failed event of a case did not come back to this consumer; handling its later events");
            self.release(handler, case).await;
        }
    }

    async fn process<H: Handler>(&mut self, handler: &mut H, m: jetstream::Message) {
        let delivered = m.info().map(|i| i.delivered).unwrap_or(1);
        let d = match Delivery::from_message(&m, delivered) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, subject = %m.subject, "not a whistle event; terminating it");
                self.stats.malformed += 1;
                Self::settle(&m, AckKind::Term).await;
                return;
            }
        };
        if self.seen.contains(&d.event_id) {
            self.stats.duplicates += 1;
            Self::settle(&m, AckKind::Ack).await;
            return;
        }
        if let Some(blocked) = self.blocked.get_mut(&d.case_id) {
            if blocked.on != d.event_id {
                // An earlier event of this case waits for its redelivery: hold this
                // one (a redelivery of a held event replaces the older copy).
                Self::settle(&m, AckKind::Progress).await;
                let held = Held {
                    delivery: d,
                    message: m,
                    touched: Instant::now(),
                };
                match blocked
                    .held
                    .iter_mut()
                    .find(|h| h.delivery.event_id == held.delivery.event_id)
                {
                    Some(existing) => *existing = held,
                    None => {
                        self.stats.held += 1;
                        blocked.held.push_back(held);
                    }
                }
                return;
            }
            blocked.since = Instant::now();
        }
        if let Outcome::Settled = self.handle(handler, &d, &m).await {
            self.release(handler, d.case_id).await;
        }
    }

    /// The case's failed event is settled: handles the events held behind it, in
    /// order, until one of them fails transiently (and holds the rest again).
    async fn release<H: Handler>(&mut self, handler: &mut H, case: Uuid) {
        let Some(mut blocked) = self.blocked.remove(&case) else {
            return;
        };
        while let Some(held) = blocked.held.pop_front() {
            if self.seen.contains(&held.delivery.event_id) {
                self.stats.duplicates += 1;
                Self::settle(&held.message, AckKind::Ack).await;
                continue;
            }
            if let Outcome::Retrying = self.handle(handler, &held.delivery, &held.message).await {
                if let Some(now_blocked) = self.blocked.get_mut(&case) {
                    now_blocked.held = std::mem::take(&mut blocked.held);
                }
                return;
            }
        }
    }

    /// Runs the handler on one event and settles its message.
    async fn handle<H: Handler>(
        &mut self,
        handler: &mut H,
        d: &Delivery,
        m: &jetstream::Message,
    ) -> Outcome {
        match handler.handle(d).await {
            Ok(()) => {
                Self::settle(m, AckKind::Ack).await;
                self.seen.insert(d.event_id);
                self.stats.handled += 1;
                Outcome::Settled
            }
            Err(HandleError::Permanent(reason)) => {
                tracing::warn!(event_id = %d.event_id, case_id = %d.case_id, event_type = %d.event_type, %reason, "handler failed permanently; acknowledging");
                Self::settle(m, AckKind::Ack).await;
                self.seen.insert(d.event_id);
                self.stats.failed += 1;
                Outcome::Settled
            }
            Err(HandleError::Transient(reason)) if d.delivered >= self.cfg.max_deliver => {
                tracing::error!(event_id = %d.event_id, case_id = %d.case_id, deliveries = d.delivered, %reason, "handler failed on the last delivery; JetStream gives up on it");
                self.stats.gave_up += 1;
                Self::settle(m, AckKind::Nak(None)).await;
                Outcome::Settled
            }
            Err(HandleError::Transient(reason)) => {
                tracing::info!(event_id = %d.event_id, case_id = %d.case_id, deliveries = d.delivered, %reason, "handler failed; JetStream will redeliver");
                let blocked = self.blocked.entry(d.case_id).or_insert_with(|| Blocked {
                    on: d.event_id,
                    since: Instant::now(),
                    held: VecDeque::new(),
                });
                blocked.on = d.event_id;
                blocked.since = Instant::now();
                self.stats.naked += 1;
                Self::settle(m, AckKind::Nak(Some(self.cfg.retry_delay))).await;
                Outcome::Retrying
            }
        }
    }
}

/// Looks up the durable consumer (`CONSUMER.INFO`) and creates it when missing
/// (`CONSUMER.CREATE.<stream>.<durable>.<filter>`).
async fn create_consumer(
    stream: &jetstream::stream::Stream<()>,
    cfg: &ConsumerConfig,
) -> Result<consumer::PullConsumer, DepartmentError> {
    stream
        .get_or_create_consumer(
            &cfg.durable,
            consumer::pull::Config {
                durable_name: Some(cfg.durable.clone()),
                description: Some(format!("whistle department {}", cfg.department)),
                filter_subject: subject::department_filter(&cfg.district, &cfg.department),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: cfg.ack_wait,
                max_deliver: cfg.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e.kind() {
            ConsumerErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                DepartmentError::Stream {
                    stream: cfg.stream.clone(),
                    reason: js.to_string(),
                }
            }
            _ => DepartmentError::Consumer {
                consumer: cfg.durable.clone(),
                reason: e.to_string(),
            },
        })
}
