//! The group-commit writer, shared by both backends.
//!
//! Each store has exactly one writer task fed by a bounded channel of
//! `(unit, reply)` jobs. The writer takes one job, then drains whatever else is
//! already queued (up to `max_batch`) and commits all of it in ONE transaction.
//! While that commit is in flight new jobs queue up, so the next batch is
//! larger: the batch size adapts to the load with no fixed linger, and a lone
//! caller pays no extra latency. Every caller gets its reply only after COMMIT
//! returned, i.e. after its events are durable.
//!
//! How a batch is decided (conflicts, duplicates, all-or-nothing units) is in
//! [`crate::plan`]; the backend-specific transaction is behind
//! [`BatchCommitter`]. If the batch transaction as a whole fails, every unit of
//! the batch gets that error and the writer carries on with the next batch;
//! if it failed with a plain database error (not a connection problem) and
//! held several units, the units are retried one per transaction so that a
//! single poisonous unit cannot fail its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::config::GroupCommitConfig;
use crate::error::StoreError;
use crate::plan::{UnitReply, validate_unit};
use crate::types::{AppendRequest, StoreStats};

/// What a backend's batch transaction produced.
pub(crate) struct Committed {
    /// One reply per unit, in batch order.
    pub replies: Vec<UnitReply>,
    /// Events written.
    pub events: u64,
}

/// A backend's batch transaction.
pub(crate) trait BatchCommitter: Send + 'static {
    /// Backend name for logs and spans.
    const BACKEND: &'static str;

    /// Decides and commits one batch in one transaction. `Err` means the
    /// transaction as a whole failed and nothing of it is known to be committed.
    fn commit_batch(
        &mut self,
        units: &[Vec<AppendRequest>],
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send;
}

struct Job {
    unit: Vec<AppendRequest>,
    reply: oneshot::Sender<UnitReply>,
}

enum Msg {
    Append(Job),
    /// Finish what is queued before this message, refuse the rest, stop.
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Stats {
    batches: AtomicU64,
    units: AtomicU64,
    events: AtomicU64,
    failed_batches: AtomicU64,
}

/// Handle to a running writer task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
    /// Last position committed by this writer (0 until the first commit); see
    /// [`Writer::subscribe_commits`].
    commits: watch::Sender<i64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Append(job) => write!(f, "Append({} requests)", job.unit.len()),
            Msg::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl Writer {
    /// Spawns the writer task on the current tokio runtime.
    pub(crate) fn spawn<C: BatchCommitter>(committer: C, cfg: GroupCommitConfig) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
        let stats = Arc::new(Stats::default());
        let commits = watch::Sender::new(0);
        tokio::spawn(run(
            committer,
            rx,
            cfg.max_batch.max(1),
            Arc::clone(&stats),
            commits.clone(),
        ));
        Writer { tx, stats, commits }
    }

    /// Validates the unit, queues it and waits for the committed result.
    pub(crate) async fn append(&self, unit: Vec<AppendRequest>) -> UnitReply {
        validate_unit(&unit)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Append(Job { unit, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the writer finish the batches queued so far and stop; later
    /// appends fail with `Closed`. Idempotent.
    pub(crate) async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// Wakes followers (relay, `WatchAssignments`): the value is the last
    /// position this writer committed, sent after every COMMIT that wrote
    /// events. A receiver only learns "something new is committed up to
    /// here"; it still reads the log itself.
    pub(crate) fn subscribe_commits(&self) -> watch::Receiver<i64> {
        self.commits.subscribe()
    }

    /// The sender side, for a backend that learns of other processes'
    /// commits (PostgreSQL LISTEN) and wakes the same followers.
    pub(crate) fn commits(&self) -> &watch::Sender<i64> {
        &self.commits
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            units: self.stats.units.load(Ordering::Relaxed),
            events: self.stats.events.load(Ordering::Relaxed),
            failed_batches: self.stats.failed_batches.load(Ordering::Relaxed),
        }
    }
}

async fn run<C: BatchCommitter>(
    mut committer: C,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    stats: Arc<Stats>,
    commits: watch::Sender<i64>,
) {
    while let Some(msg) = rx.recv().await {
        let mut jobs = Vec::new();
        let mut shutdown = None;
        let mut take = |msg: Msg, jobs: &mut Vec<Job>| match msg {
            Msg::Append(job) => jobs.push(job),
            Msg::Shutdown(done) => shutdown = Some(done),
        };
        take(msg, &mut jobs);
        // Adaptive batching: whatever queued up while the previous batch was
        // committing goes into this one.
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(msg @ Msg::Append(_)) => take(msg, &mut jobs),
                Ok(msg @ Msg::Shutdown(_)) => {
                    take(msg, &mut jobs);
                    break;
                }
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            commit(&mut committer, jobs, &stats, &commits).await;
        }
        if let Some(done) = shutdown {
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Append(job) => {
                        let _ = job.reply.send(Err(StoreError::Closed));
                    }
                    Msg::Shutdown(other) => {
                        let _ = other.send(());
                    }
                }
            }
            let _ = done.send(());
            break;
        }
    }
    tracing::debug!(backend = C::BACKEND, "event store writer stopped");
}

async fn commit<C: BatchCommitter>(
    committer: &mut C,
    jobs: Vec<Job>,
    stats: &Stats,
    commits: &watch::Sender<i64>,
) {
    let (units, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.unit, j.reply)).unzip();
    let requests: usize = units.iter().map(Vec::len).sum();
    let events: usize = units.iter().flatten().map(|r| r.events.len()).sum();
    let span = tracing::debug_span!(
        "store_batch",
        backend = C::BACKEND,
        units = units.len(),
        requests,
        events,
        written = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = async {
        match commit_counted(committer, &units, stats).await {
            Err(StoreError::Backend(error)) if units.len() > 1 => {
                tracing::warn!(%error, units = units.len(), "batch failed; retrying its units one per transaction");
                let mut out = Committed {
                    replies: Vec::with_capacity(units.len()),
                    events: 0,
                };
                for unit in units.chunks(1) {
                    match commit_counted(committer, unit, stats).await {
                        Ok(c) => {
                            out.events += c.events;
                            out.replies.extend(c.replies);
                        }
                        Err(e) => out.replies.push(Err(e)),
                    }
                }
                Ok(out)
            }
            other => other,
        }
    }
    .instrument(span.clone())
    .await;

    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("duration_us", duration_us);
    match result {
        Ok(committed) => {
            span.record("written", committed.events);
            span.in_scope(|| tracing::debug!("batch committed"));
            if committed.events > 0 {
                notify_commit(commits, &committed.replies);
            }
            for (reply, answer) in replies.into_iter().zip(committed.replies) {
                let _ = reply.send(answer);
            }
        }
        Err(error) => {
            span.in_scope(|| tracing::debug!(%error, "batch failed"));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Raises the commit watermark to the highest position the batch wrote. A
/// cheap scan of the replies already in hand; never blocks the writer.
fn notify_commit(commits: &watch::Sender<i64>, replies: &[UnitReply]) {
    let last = replies
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .filter(|o| !o.is_duplicate())
        .map(|o| o.appended().last_position)
        .max();
    if let Some(last) = last {
        commits.send_if_modified(|seen| {
            let newer = last > *seen;
            if newer {
                *seen = last;
            }
            newer
        });
    }
}

async fn commit_counted<C: BatchCommitter>(
    committer: &mut C,
    units: &[Vec<AppendRequest>],
    stats: &Stats,
) -> Result<Committed, StoreError> {
    let result = committer.commit_batch(units).await;
    match &result {
        Ok(c) => {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.units.fetch_add(units.len() as u64, Ordering::Relaxed);
            stats.events.fetch_add(c.events, Ordering::Relaxed);
        }
        Err(_) => {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
    }
    result
}
