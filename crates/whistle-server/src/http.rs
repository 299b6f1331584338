//! The HTTP side of `whistle serve`: `/healthz` (the process is alive), `/readyz` (it
//! should get traffic), `/metrics` (Prometheus text) and `/api/dashboard` (the web
//! dashboard's JSON, bearer token of a supervisor or admin).
//! Counters and histograms are recorded where things happen (RPCs, appends, refusals,
//! deadline fires); gauges that describe state (log head, pending deadlines, relay
//! progress, store batches) are read when scraped.
//!
//! `/readyz` is 200 only when all of these hold, else 503 naming each one missing:
//! the store answers (migrations ran before the port opened); with `--nats-url`, this
//! node has provisioned or verified the JetStream stream itself (whether or not it holds
//! the relay's lease, so standby nodes become ready too); the SLA projector has caught
//! up with the log head it saw at start, or stands by because another node projects;
//! and the node is not draining (from SIGTERM on it is 503 "draining", so the load
//! balancer stops sending work while in-flight requests finish). The NATS and catch-up
//! conditions are start-up conditions, never withdrawn: NATS going away later leaves
//! the node ready, because intake keeps working through the outbox and the relay
//! catches up when NATS is back; pulling every node out of the load balancer because
//! NATS blinked would turn a delivery delay into an outage.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use whistle_api::ApiError;
use whistle_api::AppState;
use whistle_bus::RelayStatus;
use whistle_projections::ProjectorStatus;
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

/// What `/readyz` waits for besides the store answering (module docs). Cheap to clone;
/// flags only go one way (provisioned, draining), so a probe never flaps on them.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<ReadinessInner>);

#[derive(Debug)]
struct ReadinessInner {
    /// `None` in embedded mode (no NATS to wait for).
    stream: Option<StreamReadiness>,
    projector: ProjectorStatus,
    draining: AtomicBool,
}

#[derive(Debug)]
struct StreamReadiness {
    name: String,
    provisioned: AtomicBool,
    /// Why the last attempt failed, for the 503 body.
    last_error: Mutex<Option<String>>,
}

impl Readiness {
    /// `stream`: the JetStream stream this node must provision first (`--nats-url`).
    pub fn new(stream: Option<&str>, projector: ProjectorStatus) -> Readiness {
        Readiness(Arc::new(ReadinessInner {
            stream: stream.map(|name| StreamReadiness {
                name: name.to_string(),
                provisioned: AtomicBool::new(false),
                last_error: Mutex::new(None),
            }),
            projector,
            draining: AtomicBool::new(false),
        }))
    }

    /// The stream exists with this node's settings (never cleared: module docs).
    pub fn set_stream_provisioned(&self) {
        if let Some(s) = &self.0.stream {
            s.provisioned.store(true, Ordering::Relaxed);
        }
    }

    /// Why provisioning has not succeeded yet.
    pub fn set_stream_error(&self, error: String) {
        if let Some(s) = &self.0.stream {
            *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        }
    }

    /// From now on `/readyz` is 503 "draining".
    pub fn set_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// What is missing apart from the store (asked per probe): empty when ready.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.is_draining() {
            missing.push("draining: the server is shutting down".to_string());
        }
        if let Some(s) = &self.0.stream
            && !s.provisioned.load(Ordering::Relaxed)
        {
            let error = s.last_error.lock().unwrap_or_else(|p| p.into_inner());
            missing.push(match error.as_deref() {
                Some(e) => format!(
                    "the NATS stream {} is not provisioned yet (last attempt: {e})",
                    s.name
                ),
                None => format!("the NATS stream {} is not provisioned yet", s.name),
            });
        }
        let p = &self.0.projector;
        if !p.caught_up() {
            missing.push(format!(
                "the SLA projector is catching up (position {} of log head {} at start)",
                p.checkpoint(),
                p.start_head()
            ));
        }
        missing
    }

    /// Whether nothing but the store's answer stands between this node and traffic.
    pub fn is_ready(&self) -> bool {
        self.missing().is_empty()
    }
}

#[derive(Clone)]
pub struct Http {
    pub state: AppState,
    pub relay: Option<RelayStatus>,
    /// The SLA projector's progress (lag on /metrics).
    pub projector: ProjectorStatus,
    pub readiness: Readiness,
    pub prometheus: PrometheusHandle,
}

pub fn router(http: Http) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/dashboard", get(dashboard_json))
        .merge(crate::web::routes())
        .with_state(http)
}

async fn readyz(State(h): State<Http>) -> (StatusCode, String) {
    // Draining answers at once, without the store: the point is to leave the load
    // balancer quickly, whatever the database is doing.
    if h.readiness.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: draining: the server is shutting down\n".to_string(),
        );
    }
    let mut missing = Vec::new();
    let head = match h.state.store.head_position().await {
        Ok(head) => Some(head),
        Err(e) => {
            missing.push(format!("the store does not answer: {e}"));
            None
        }
    };
    missing.extend(h.readiness.missing());
    match head {
        Some(head) if missing.is_empty() => (StatusCode::OK, format!("ready: log head {head}\n")),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
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
        metrics::counter!("whistle_relay_stream_resets_total").absolute(r.stream_resets());
        // Which node holds the relay's singleton lease: operators (and the fault suite)
        // see where singleton work runs and that it failed over.
        metrics::gauge!("whistle_relay_running").set(if r.is_running() { 1.0 } else { 0.0 });
    }
    metrics::gauge!("whistle_projection_lag_events", "projection" => "sla")
        .set(h.projector.lag() as f64);
    match store.open_cases_by_level().await {
        Ok(levels) => {
            for level in whistle_domain::Level::ALL {
                let n = levels
                    .iter()
                    .find(|(l, _)| l == level.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("whistle_open_cases", "level" => level.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count open cases"),
    }
    h.prometheus.render()
}

/// Query of `/api/dashboard`: `window=1h|24h|7d|30d` (default 24h; it ends at the end of
/// the current hour, so trend buckets are whole clock hours) or `from`/`to` in RFC 3339.
#[derive(Debug, serde::Deserialize)]
pub struct DashboardQuery {
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn json_error(status: StatusCode, field: Option<&str>, message: String) -> Response {
    let body = serde_json::json!({ "error": message, "field": field });
    (status, axum::Json(body)).into_response()
}

fn api_error(e: ApiError) -> Response {
    let status = tonic::Status::from(e);
    let code = match status.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let field = status
        .metadata()
        .get("whistle-field")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    json_error(code, field.as_deref(), status.message().to_string())
}

fn parse_time(field: &'static str, s: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| ApiError::bad(field, "not an RFC 3339 time"))
}

fn window_of(
    q: &DashboardQuery,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    match (&q.from, &q.to) {
        (Some(from), Some(to)) => Ok((parse_time("from", from)?, parse_time("to", to)?)),
        (None, None) => {
            let span = match q.window.as_deref().unwrap_or("24h") {
                "1h" => Duration::hours(1),
                "24h" => Duration::hours(24),
                "7d" => Duration::days(7),
                "30d" => Duration::days(30),
                _ => return Err(ApiError::bad("window", "one of 1h, 24h, 7d, 30d")),
            };
            let hour = now
                .replace_minute(0)
                .and_then(|t| t.replace_second(0))
                .and_then(|t| t.replace_nanosecond(0))
                .unwrap_or(now);
            let end = hour + Duration::hours(1);
            Ok((end - span, end))
        }
        (None, Some(_)) => Err(ApiError::bad("from", "required with to")),
        (Some(_), None) => Err(ApiError::bad("to", "required with from")),
    }
}

async fn dashboard_json(
    State(h): State<Http>,
    headers: HeaderMap,
    Query(q): Query<DashboardQuery>,
) -> Response {
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    let actor = match h.state.auth.authenticate(&metadata, "Dashboard") {
        Ok(a) => a,
        Err(status) => {
            let code = match status.code() {
                tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            return json_error(code, None, status.message().to_string());
        }
    };
    if let Err(e) = whistle_api::dashboard::authorize(&actor, "Dashboard") {
        return api_error(e);
    }
    let now = h.state.clock.now();
    let result = async {
        let (from, to) = window_of(&q, now)?;
        whistle_api::dashboard::overview(&h.state, &actor, from, to).await
    }
    .await;
    match result {
        Ok(o) => {
            let mut resp = axum::Json(o).into_response();
            resp.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => api_error(e),
    }
}
