//! The supervisor dashboard page: `/` (and `/dashboard`) with its script and stylesheet
//! under `/assets/`. Plain HTML, CSS and JavaScript embedded in the binary with
//! `include_str!`, so `whistle serve` needs no build step, no files beside it and no CDN.
//!
//! The page holds no data and needs no token to load: it reads the supervisor's token
//! from the URL fragment and calls `GET /api/dashboard` with it, which is where access is
//! checked. Every response carries a Content-Security-Policy allowing only this origin,
//! so no inline script runs even if case text (user input) ever reached the markup.

use axum::Router;
use axum::http::header::{self, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;

const HTML: &str = include_str!("../assets/dashboard.html");
const JS: &str = include_str!("../assets/dashboard.js");
const CSS: &str = include_str!("../assets/dashboard.css");

/// Same-origin only; `frame-ancestors`, `base-uri` and `form-action` do not fall back to
/// `default-src`, so they are closed explicitly (no framing for clickjacking, no `<base>`
/// redirecting the script, no form posting the token elsewhere).
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// The page's routes, for merging into the HTTP router whatever its state type.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard", get(page))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(stylesheet))
}

async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", HTML)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The assets change with the binary: revalidate rather than keep an old script
            // after an upgrade (they are small, and there is no ETag to make this cheaper).
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
}
