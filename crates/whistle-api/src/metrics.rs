//! What whistle counts, through the `metrics` facade (the binary installs the Prometheus
//! recorder and serves `/metrics`). Label values are bounded: method names only for
//! whistle's own and the standard gRPC services, refusal reasons from a fixed set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A refused request, by reason (`unauthenticated`, `role`, `not_holder`, `rate_limited`).
pub fn denied(reason: &'static str) {
    metrics::counter!("whistle_denied_total", "reason" => reason).increment(1);
}

/// gRPC requests by method and status, and their latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

/// The method label: the gRPC path for whistle's and the standard services, `other` for
/// anything else a client may send (unbounded paths must not become label values).
fn method_label(path: &str) -> String {
    if path.starts_with("/whistle.v1.") || path.starts_with("/grpc.") {
        path.to_string()
    } else {
        "other".to_string()
    }
}

fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            // Refusals are trailers-only responses: the status is in the headers. A
            // unary success carries it in the trailers, which are not seen here.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "TRANSPORT_ERROR",
            };
            metrics::counter!("whistle_rpc_requests_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("whistle_rpc_duration_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            res
        })
    }
}
