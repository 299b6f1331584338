//! The deadline scheduler: claims due rows of the store's deadline table and fires each
//! as a `FireDeadline` command through the ordinary pipeline, as the system actor.
//!
//! Exactly once: the events a fire produces (warned, breached, escalated, taken over)
//! are appended with the case's expected version, and the domain refuses to breach a
//! clock that is no longer running, so two schedulers (or a restarted one) firing the
//! same row append its events once; the row itself is removed in the same transaction.
//! Rows claimed by a node that dies come back when their lease ends. Deadlines that fell
//! due while whistle was down are simply due at start and fire then.

use crate::error::ApiError;
use crate::pipeline;
use crate::server::AppState;
use std::future::Future;
use std::time::Duration;
use whistle_domain::sla::parse_deadline_key;
use whistle_domain::{Actor, CaseId, Command};
use whistle_store::{DueDeadline, StoreError};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often to look for due deadlines when there were none.
    pub poll: Duration,
    /// Most rows claimed at once.
    pub batch: u32,
    /// How long a claim hides a row from other nodes.
    pub lease: time::Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            poll: Duration::from_millis(250),
            batch: 256,
            lease: time::Duration::seconds(30),
        }
    }
}

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    /// Fires that appended events.
    pub fired: usize,
    /// Fires that found nothing to do (the clock ended or moved meanwhile).
    pub stale: usize,
    pub failed: usize,
}

/// Run until `shutdown` completes.
pub async fn run(state: AppState, cfg: SchedulerConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut backoff = cfg.poll;
    loop {
        let pause = match run_once(&state, &cfg).await {
            Ok(p) if p.claimed as u32 >= cfg.batch => Duration::ZERO,
            Ok(_) => {
                backoff = cfg.poll;
                cfg.poll
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: cannot claim deadlines; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(10));
                backoff
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Claim and fire whatever is due now.
pub async fn run_once(state: &AppState, cfg: &SchedulerConfig) -> Result<Pass, StoreError> {
    let now = state.clock.now();
    let due = state
        .store
        .claim_due_deadlines(now, cfg.batch, cfg.lease)
        .await?;
    let mut pass = Pass {
        claimed: due.len(),
        ..Pass::default()
    };
    for d in due {
        match fire(state, &d).await {
            Ok(true) => pass.fired += 1,
            Ok(false) => pass.stale += 1,
            Err(e) => {
                pass.failed += 1;
                tracing::warn!(stream = %d.stream, key = %d.key, error = %e, "scheduler: fire failed; retried after the lease");
            }
        }
    }
    metrics::counter!("whistle_deadlines_fired_total").increment(pass.fired as u64);
    metrics::counter!("whistle_deadlines_stale_total").increment(pass.stale as u64);
    metrics::counter!("whistle_deadline_fire_failures_total").increment(pass.failed as u64);
    if pass.claimed > 0 {
        tracing::info!(
            claimed = pass.claimed,
            fired = pass.fired,
            stale = pass.stale,
            failed = pass.failed,
            "scheduler pass"
        );
    }
    Ok(pass)
}

/// Fire one row; `Ok(true)` when it appended events.
async fn fire(state: &AppState, d: &DueDeadline) -> Result<bool, ApiError> {
    let parsed = d
        .stream
        .as_str()
        .strip_prefix("case-")
        .and_then(|u| uuid::Uuid::parse_str(u).ok())
        .map(CaseId)
        .zip(parse_deadline_key(&d.key));
    let Some((case_id, (clock, kind))) = parsed else {
        tracing::error!(stream = %d.stream, key = %d.key, "scheduler: unknown deadline row; removed");
        state.store.delete_deadline(&d.stream, &d.key).await?;
        return Ok(false);
    };
    let cmd = Command::FireDeadline {
        clock: clock.to_string(),
        kind,
    };
    // A concurrent command on the same case wins the version race: decide again on
    // what it wrote (the fire may have become stale).
    for _ in 0..5 {
        match pipeline::execute(state, &Actor::system(), case_id, None, None, cmd.clone()).await {
            Ok(outcome) if outcome.appended => return Ok(true),
            Ok(_) => {
                state.store.delete_deadline(&d.stream, &d.key).await?;
                return Ok(false);
            }
            Err(ApiError::Store(StoreError::Conflict { .. }) | ApiError::StaleVersion { .. }) => {
                continue;
            }
            Err(ApiError::Domain(e)) => {
                tracing::info!(stream = %d.stream, key = %d.key, reason = %e, "scheduler: deadline no longer applies; removed");
                state.store.delete_deadline(&d.stream, &d.key).await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
