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
//!   it; while it is outstanding, later messages of the SAME case are naked too,
//!   so a case's events are handled in order; other cases carry on;
//! * after `max_deliver` deliveries JetStream gives up on the message and
//!   publishes a max-deliveries advisory (whistle records a delivery failure).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use uuid::Uuid;
use whistle_bus::subject;

use crate::delivery::Delivery;

fn subject_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, DepartmentError> {
    whistle_bus::parse_servers(urls).map_err(DepartmentError::Connect)
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
    /// A district or department id is not a subject token.
    #[error("{0} is not a valid district or department code")]
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
    /// Naks after a transient failure (or to keep a case in order).
    pub naked: u64,
    /// Permanent failures (acknowledged, logged).
    pub failed: u64,
    /// Transient failures on the last allowed delivery (JetStream gives up).
    pub gave_up: u64,
    /// Messages that were not whistle events (terminated).
    pub malformed: u64,
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

/// A department's durable consumer.
#[derive(Debug)]
pub struct DepartmentConsumer {
    cfg: ConsumerConfig,
    consumer: consumer::PullConsumer,
    seen: Remembered,
    /// case → the event whose failure holds the case's later events back.
    blocked: HashMap<Uuid, Uuid>,
    stats: ConsumerStats,
}

impl DepartmentConsumer {
    /// Connects and creates (or reuses) the durable consumer. Fails with
    /// `Stream` while whistle has not provisioned the stream yet.
    pub async fn connect(cfg: ConsumerConfig) -> Result<DepartmentConsumer, DepartmentError> {
        for code in [&cfg.district, &cfg.department] {
            if !subject::is_token(code) {
                return Err(DepartmentError::BadCode(code.clone()));
            }
        }
        let client = async_nats::ConnectOptions::new()
            .name(format!("whistle-department-{}", cfg.department))
            .connection_timeout(Duration::from_secs(5))
            .connect(subject_servers(&cfg.nats_url)?)
            .await
            .map_err(|e| DepartmentError::Connect(e.to_string()))?;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(&cfg.stream)
            .await
            .map_err(|e| DepartmentError::Stream {
                stream: cfg.stream.clone(),
                reason: e.to_string(),
            })?;
        let consumer = stream
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
            .map_err(|e| DepartmentError::Consumer {
                consumer: cfg.durable.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!(department = %cfg.department, consumer = %cfg.durable, stream = %cfg.stream, "department consumer ready");
        Ok(DepartmentConsumer {
            seen: Remembered {
                set: HashSet::new(),
                order: VecDeque::new(),
                capacity: cfg.remember.max(1),
            },
            cfg,
            consumer,
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
    /// in order. Returns how many messages came.
    pub async fn poll<H: Handler>(
        &mut self,
        handler: &mut H,
        wait: Duration,
    ) -> Result<usize, DepartmentError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(self.cfg.batch.max(1))
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.consumer_error(e))?;
        let mut n = 0;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "fetching from JetStream failed");
                    break;
                }
            };
            n += 1;
            self.process(handler, m).await;
        }
        Ok(n)
    }

    fn consumer_error(&self, e: impl std::fmt::Display) -> DepartmentError {
        DepartmentError::Consumer {
            consumer: self.cfg.durable.clone(),
            reason: e.to_string(),
        }
    }

    async fn settle(&self, m: &jetstream::Message, kind: AckKind) {
        if let Err(error) = m.ack_with(kind).await {
            // Lost acks mean a redelivery, which the id memory absorbs.
            tracing::warn!(%error, "acknowledging to JetStream failed");
        }
    }

    async fn process<H: Handler>(&mut self, handler: &mut H, m: jetstream::Message) {
        let delivered = m.info().map(|i| i.delivered).unwrap_or(1);
        let d = match Delivery::from_message(&m, delivered) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, subject = %m.subject, "not a whistle event; terminating it");
                self.stats.malformed += 1;
                self.settle(&m, AckKind::Term).await;
                return;
            }
        };
        if self.seen.contains(&d.event_id) {
            self.stats.duplicates += 1;
            self.blocked.remove(&d.case_id);
            self.settle(&m, AckKind::Ack).await;
            return;
        }
        if self
            .blocked
            .get(&d.case_id)
            .is_some_and(|e| *e != d.event_id)
        {
            // An earlier event of this case is waiting for its redelivery.
            self.stats.naked += 1;
            self.settle(&m, AckKind::Nak(Some(self.cfg.retry_delay)))
                .await;
            return;
        }
        match handler.handle(&d).await {
            Ok(()) => {
                self.settle(&m, AckKind::Ack).await;
                self.seen.insert(d.event_id);
                self.blocked.remove(&d.case_id);
                self.stats.handled += 1;
            }
            Err(HandleError::Permanent(reason)) => {
                tracing::warn!(event_id = %d.event_id, case_id = %d.case_id, event_type = %d.event_type, %reason, "handler failed permanently; acknowledging");
                self.settle(&m, AckKind::Ack).await;
                self.seen.insert(d.event_id);
                self.blocked.remove(&d.case_id);
                self.stats.failed += 1;
            }
            Err(HandleError::Transient(reason)) if d.delivered >= self.cfg.max_deliver => {
                tracing::error!(event_id = %d.event_id, case_id = %d.case_id, deliveries = d.delivered, %reason, "handler failed on the last delivery; JetStream gives up on it");
                self.blocked.remove(&d.case_id);
                self.stats.gave_up += 1;
                self.settle(&m, AckKind::Nak(None)).await;
            }
            Err(HandleError::Transient(reason)) => {
                tracing::info!(event_id = %d.event_id, case_id = %d.case_id, deliveries = d.delivered, %reason, "handler failed; JetStream will redeliver");
                self.blocked.insert(d.case_id, d.event_id);
                self.stats.naked += 1;
                self.settle(&m, AckKind::Nak(Some(self.cfg.retry_delay)))
                    .await;
            }
        }
    }
}
