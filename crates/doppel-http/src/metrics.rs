//! `GET /metrics` (Prometheus text format) and the middleware that measures every request.

use crate::AppState;
use crate::problem::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// The content type of Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

const REQUESTS: &str = "doppel_http_requests_total";
const REQUEST_DURATION: &str = "doppel_http_request_duration_seconds";
pub(crate) const AUTH_FAILURES: &str = "doppel_http_auth_failures_total";

/// Describes the HTTP API's metrics and creates the unlabelled ones at zero; the request
/// series are made by requests, one per route and status. Call once the process's recorder is
/// installed.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by method, route and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        "From an HTTP request reaching the router to its response head, by method and route."
    );
    metrics::describe_counter!(
        AUTH_FAILURES,
        "HTTP requests refused for an invalid, expired or revoked bearer token."
    );
    metrics::counter!(AUTH_FAILURES).increment(0);
}

/// What the recorder holds, rendered. Answers while the engine is still loading, like
/// `/healthz`, since a slow start is one of the things an operator wants to watch.
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = state.metrics.get().ok_or(ApiError::NotReady)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response())
}

/// Counts and times each request by method, route pattern and status. The route is the
/// pattern that matched (`/v1/tenants/{tenant}/twins/{device}`), never the path itself, so
/// the number of series stays bounded by the routes whatever clients ask for.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        REQUEST_DURATION,
        "method" => method,
        "route" => route.clone()
    )
    .record(started.elapsed());
    metrics::counter!(
        REQUESTS,
        "method" => method,
        "route" => route,
        "status" => status
    )
    .increment(1);
    response
}

/// Methods outside the standard set are one label, so clients cannot add series at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;
    use axum::http::Method;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("a method")),
            "other"
        );
    }
}
