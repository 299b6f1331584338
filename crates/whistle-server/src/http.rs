//! The HTTP side of `whistle serve`: `/healthz` (the process is alive), `/readyz` (it can
//! serve: migrations ran and the database answers) and `/metrics` (Prometheus text).
//! Counters and histograms are recorded where things happen (RPCs, appends, refusals,
//! deadline fires); gauges that describe state (log head, pending deadlines, relay
//! progress, store batches) are read when scraped.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use whistle_api::AppState;
use whistle_bus::RelayStatus;
use whistle_store::EventStore;

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder;
/// several servers in one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Latency buckets from 250 µs to 10 s: appends and RPCs sit in the low ms.
            let builder = builder
                .set_buckets(&[
                    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 10.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

#[derive(Clone)]
pub struct Http {
    pub state: AppState,
    pub relay: Option<RelayStatus>,
    pub prometheus: PrometheusHandle,
}

pub fn router(http: Http) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(http)
}

async fn readyz(State(h): State<Http>) -> (StatusCode, String) {
    match h.state.store.head_position().await {
        Ok(head) => (StatusCode::OK, format!("ready: log head {head}\n")),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store does not answer: {e}\n"),
        ),
    }
}

async fn metrics_text(State(h): State<Http>) -> String {
    let store = &h.state.store;
    let stats = store.stats();
    metrics::counter!("whistle_store_batches_total").absolute(stats.batches);
    metrics::counter!("whistle_store_units_total").absolute(stats.units);
    metrics::counter!("whistle_store_events_total").absolute(stats.events);
    metrics::counter!("whistle_store_failed_batches_total").absolute(stats.failed_batches);
    match store.head_position().await {
        Ok(head) => metrics::gauge!("whistle_log_head_position").set(head as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the log head"),
    }
    match store.deadline_summary().await {
        Ok((pending, next)) => {
            metrics::gauge!("whistle_deadlines_pending").set(pending as f64);
            let overdue = next.map_or(0.0, |n| (h.state.clock.now() - n).as_seconds_f64().max(0.0));
            metrics::gauge!("whistle_deadline_overdue_seconds").set(overdue);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the deadlines"),
    }
    if let Some(r) = &h.relay {
        metrics::gauge!("whistle_relay_lag_events").set(r.lag() as f64);
        metrics::gauge!("whistle_relay_checkpoint_position").set(r.checkpoint() as f64);
        metrics::counter!("whistle_relay_published_total").absolute(r.published());
        metrics::counter!("whistle_relay_duplicates_total").absolute(r.duplicates());
        metrics::counter!("whistle_relay_failures_total").absolute(r.failures());
    }
    h.prometheus.render()
}
