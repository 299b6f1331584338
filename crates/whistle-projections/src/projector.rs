//! The asynchronous SLA projector: follows the log from its checkpoint and, per batch,
//! replaces the SLA rows (clocks, holds) of every case the batch touched and advances
//! the checkpoint in the same transaction (`Store::apply_sla_rows`, a compare-and-set on
//! the checkpoint: a batch is applied exactly once whatever node runs it).
//!
//! Runs in every `whistle serve`; a singleton lease (`projector:sla`) keeps the other
//! nodes on standby so they do not do the same work, and a node that dies releases it
//! (its database session ends), so another takes over within the lease poll (1 s).
//!
//! For `/readyz`, [`ProjectorStatus::caught_up`] says whether this node's projector has
//! reached the log head it read when it started, or stands by because another node
//! holds the lease (standby nodes serve too, so they must become ready). It is set once
//! and never cleared: events committed later are ordinary lag (on `/metrics`), not a
//! reason to take the node out of the load balancer.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use whistle_bus::{Follower, RouteError, Router};
use whistle_store::{
    CaseSlaRows, EventStore, RecordedEvent, Singleton, Store, StoreError, StreamId,
};

use crate::rows::{EncodeError, sla_rows};

/// Checkpoint (and lease) name of the SLA projection.
pub const SLA_PROJECTION: &str = "projection:sla";

/// Why projecting stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The checkpoint is not where this projector left it: another process projected (or
    /// a rebuild reset it). The caller reloads the checkpoint and goes on from there.
    #[error("projection {name}: checkpoint moved (expected {expected})")]
    CheckpointMoved { name: String, expected: i64 },
    /// The singleton lease was lost.
    #[error("projection lease lost: {0}")]
    Lease(String),
}

/// Settings of the projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Events read per batch (one transaction per batch).
    pub batch: u32,
    /// Fallback poll when no commit notification arrives.
    pub poll: Duration,
    /// Pause after a failure before starting again from the checkpoint.
    pub backoff: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            batch: 2_000,
            poll: Duration::from_millis(500),
            backoff: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Default)]
struct StatusInner {
    checkpoint: AtomicI64,
    head: AtomicI64,
    running: AtomicBool,
    /// The log head read when the projector started.
    start_head: AtomicI64,
    caught_up: AtomicBool,
}

/// Progress of a projector, for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct ProjectorStatus(Arc<StatusInner>);

impl ProjectorStatus {
    /// Position the projection has reached.
    pub fn checkpoint(&self) -> i64 {
        self.0.checkpoint.load(Ordering::Relaxed)
    }
    /// Events committed but not yet projected (as far as this node knows).
    pub fn lag(&self) -> i64 {
        (self.0.head.load(Ordering::Relaxed) - self.checkpoint()).max(0)
    }
    /// Whether this node holds the lease and projects.
    pub fn running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }
    /// The log head read when the projector started (0 until it has been read).
    pub fn start_head(&self) -> i64 {
        self.0.start_head.load(Ordering::Relaxed)
    }
    /// Whether the projector has reached [`ProjectorStatus::start_head`], or stood by
    /// because another node holds the lease. Set once, never cleared (module docs).
    pub fn caught_up(&self) -> bool {
        self.0.caught_up.load(Ordering::Relaxed)
    }

    fn reached(&self, position: i64) {
        if position >= self.start_head() {
            self.mark_caught_up();
        }
    }

    fn mark_caught_up(&self) {
        if !self.0.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                checkpoint = self.checkpoint(),
                start_head = self.start_head(),
                "SLA projector caught up (or standing by)"
            );
        }
    }
}

/// Projects one batch read after `after`: routes (folds) every event, computes the SLA
/// rows of the touched cases and applies them with the checkpoint move. Returns the new
/// checkpoint.
pub async fn project_batch(
    store: &Store,
    router: &mut Router,
    after: i64,
    batch: Vec<RecordedEvent>,
) -> Result<i64, ProjectionError> {
    let Some(upto) = batch.last().map(|r| r.position) else {
        return Ok(after);
    };
    let mut touched: Vec<StreamId> = Vec::new();
    let mut seen: HashSet<StreamId> = HashSet::new();
    for rec in batch {
        let stream = rec.stream.clone();
        if router.route(store, rec).await?.is_some() && seen.insert(stream.clone()) {
            touched.push(stream);
        }
    }
    let rows: Vec<CaseSlaRows> = touched
        .iter()
        .filter_map(|s| router.case(s))
        .map(sla_rows)
        .collect();
    if store
        .apply_sla_rows(SLA_PROJECTION, after, upto, &rows)
        .await?
    {
        Ok(upto)
    } else {
        Err(ProjectionError::CheckpointMoved {
            name: SLA_PROJECTION.to_string(),
            expected: after,
        })
    }
}

/// Projects from the stored checkpoint up to the head of the log as it is now, without
/// a lease (rebuilds, tests). `progress(checkpoint, head)` is called after each batch.
pub async fn catch_up(
    store: &Arc<Store>,
    batch: u32,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<i64, ProjectionError> {
    let head = store.head_position().await?;
    let mut cursor = store
        .load_checkpoint(SLA_PROJECTION)
        .await?
        .unwrap_or_default()
        .position;
    let mut router = Router::default();
    while cursor < head {
        let events = store.read_all(cursor, batch.max(1)).await?;
        if events.is_empty() {
            break;
        }
        cursor = project_batch(store, &mut router, cursor, events).await?;
        progress(cursor, head);
    }
    Ok(cursor)
}

/// A running projector task.
#[derive(Debug)]
pub struct Projector {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    status: ProjectorStatus,
}

impl Projector {
    /// Starts projecting in the background (standing by while another node holds the lease).
    pub fn spawn(store: Arc<Store>, cfg: ProjectorConfig) -> Projector {
        Projector::spawn_with(store, cfg, ProjectorStatus::default())
    }

    /// Like [`Projector::spawn`], reporting into `status` (a handle the caller made
    /// earlier, e.g. for a readiness check that exists before the projector starts).
    pub fn spawn_with(
        store: Arc<Store>,
        cfg: ProjectorConfig,
        status: ProjectorStatus,
    ) -> Projector {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, cfg, status.clone(), stopped));
        Projector { stop, task, status }
    }

    pub fn status(&self) -> ProjectorStatus {
        self.status.clone()
    }

    /// Stops after the batch in flight (its transaction either committed or not).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<Store>,
    cfg: ProjectorConfig,
    status: ProjectorStatus,
    mut stopped: watch::Receiver<bool>,
) {
    // What "caught up" means for readiness: the head now. Read before anything else, so
    // a node that stands by at once has still seen the log answer.
    loop {
        let error = match store.head_position().await {
            Ok(head) => {
                status.0.start_head.store(head, Ordering::Relaxed);
                break;
            }
            Err(error) => error,
        };
        tracing::warn!(%error, "SLA projector cannot read the log head; retrying");
        tokio::select! {
            _ = tokio::time::sleep(cfg.backoff) => {}
            _ = stopped.changed() => {
                tracing::info!("SLA projector stopped before it started");
                return;
            }
        }
    }
    let mut lease: Option<Singleton> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        let outcome = tokio::select! {
            r = session(&store, &cfg, &status, &mut lease) => r,
            _ = stopped.changed() => Ok(()),
        };
        status.0.running.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) => break,
            Err(ProjectionError::CheckpointMoved { .. }) => {
                tracing::info!("projection checkpoint moved (rebuild or another node); reloading");
            }
            Err(error) => {
                if matches!(error, ProjectionError::Store(_) | ProjectionError::Lease(_))
                    && let Some(l) = lease.take()
                {
                    l.release().await;
                }
                tracing::warn!(%error, "SLA projector interrupted; resuming from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(cfg.backoff) => {}
                    _ = stopped.changed() => break,
                }
            }
        }
    }
    if let Some(l) = lease.take() {
        l.release().await;
    }
    tracing::info!(checkpoint = status.checkpoint(), "SLA projector stopped");
}

async fn session(
    store: &Arc<Store>,
    cfg: &ProjectorConfig,
    status: &ProjectorStatus,
    lease: &mut Option<Singleton>,
) -> Result<(), ProjectionError> {
    let mut logged = false;
    let held = loop {
        if let Some(held) = lease {
            break held;
        }
        if let Some(l) = store.try_acquire_singleton(SLA_PROJECTION).await? {
            *lease = Some(l);
            continue;
        }
        if !logged {
            tracing::info!(
                lease = SLA_PROJECTION,
                "another node runs the SLA projector; standing by"
            );
            logged = true;
        }
        // The holder keeps the projection current; this node has nothing to catch up.
        status.mark_caught_up();
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut cursor = store
        .load_checkpoint(SLA_PROJECTION)
        .await?
        .unwrap_or_default()
        .position;
    status.0.checkpoint.store(cursor, Ordering::Relaxed);
    status.0.running.store(true, Ordering::Relaxed);
    status.reached(cursor);
    tracing::info!(checkpoint = cursor, "SLA projector running");
    let mut follower = Follower::new(Arc::clone(store), cursor, cfg.batch).with_poll(cfg.poll);
    let mut router = Router::default();
    loop {
        let batch = follower.next_batch().await?;
        let Some(last) = batch.last().map(|r| r.position) else {
            continue;
        };
        status
            .0
            .head
            .store(follower.notified_head().max(last), Ordering::Relaxed);
        held.check()
            .await
            .map_err(|e| ProjectionError::Lease(e.to_string()))?;
        cursor = project_batch(store, &mut router, cursor, batch).await?;
        status.0.checkpoint.store(cursor, Ordering::Relaxed);
        status.reached(cursor);
        metrics::gauge!("whistle_projection_lag_events", "projection" => "sla")
            .set(status.lag() as f64);
    }
}
