//! W3C trace context on HTTP: the `traceparent` header of a request names the trace its work
//! joins, and each request's span records that trace's id so logs of one trace can be found
//! together. And the request log: one line per answered request, at a level that says whether
//! the server failed.

use axum::http::{HeaderMap, Request, Response, StatusCode};
use doppel_model::TraceParent;
use std::time::Duration;
use tower_http::classify::ServerErrorsFailureClass;
use tracing::Span;

/// The W3C trace context header.
pub(crate) use doppel_model::trace::TRACEPARENT;

/// The request's trace context. A missing or invalid header gives `None`: W3C says a receiver
/// then starts a new trace, so a bad header never fails the request.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    headers.get(TRACEPARENT)?.to_str().ok()?.trim().parse().ok()
}

/// The span of one HTTP request (tower-http's default fields, plus the W3C trace id). At info
/// level, so the id reaches every log line of the request under the default filter.
pub(crate) fn request_span<B>(request: &Request<B>) -> Span {
    let trace = traceparent(request.headers());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        trace_id = doppel_engine::trace::trace_id_field(trace),
    );
    doppel_engine::trace::join_remote_trace(&span, trace);
    span
}

/// What a problem answer tells the request log: put on the response by
/// `ApiError::into_response`, read by [`log_response`].
#[derive(Clone, Debug)]
pub(crate) struct ProblemLog {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
    /// A 5xx that reports the server's state to callers who ask for it on purpose (still
    /// loading, stopping, a readiness probe's "not ready"), not a failure of the request: an
    /// orchestrator probing a starting hub would otherwise fill the log with errors.
    pub(crate) expected: bool,
}

/// Logs the end of a request, once: at error when the server failed it (a 5xx that is not
/// [`ProblemLog::expected`]), at debug otherwise. A refused request (4xx) is the caller's
/// mistake, told to the caller in its problem document; logging it any louder would let any
/// client flood the log.
pub(crate) fn log_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let problem = response.extensions().get::<ProblemLog>();
    let status = response.status().as_u16();
    let code = problem.map(|problem| problem.code);
    let latency_ms = millis(latency);
    if server_failed(response.status(), problem) {
        let detail = problem.map(|problem| problem.detail.as_str());
        tracing::error!(
            status,
            code,
            detail,
            latency_ms,
            "request failed on the server side"
        );
    } else {
        tracing::debug!(status, code, latency_ms, "finished processing request");
    }
}

fn server_failed(status: StatusCode, problem: Option<&ProblemLog>) -> bool {
    status.is_server_error() && !problem.is_some_and(|problem| problem.expected)
}

/// Logs a response body that failed after its head went out. tower-http also calls this for
/// every 5xx status, which [`log_response`] has judged already.
pub(crate) fn log_failure(failure: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    if let ServerErrorsFailureClass::Error(error) = failure {
        tracing::error!(%error, latency_ms = millis(latency), "response failed");
    }
}

fn millis(latency: Duration) -> u64 {
    u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ApiError;
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;

    fn failed(error: ApiError) -> bool {
        let response = error.into_response();
        server_failed(response.status(), response.extensions().get::<ProblemLog>())
    }

    #[test]
    fn only_the_servers_own_failures_are_errors() {
        assert!(!failed(ApiError::Model(
            doppel_model::ModelError::TwinNotFound
        )));
        assert!(!failed(ApiError::InvalidQuery(
            "limit: not a number".into()
        )));
        assert!(!failed(ApiError::Unauthorized("no token")));
        assert!(!failed(ApiError::NotReady), "a hub still loading");
        assert!(!failed(ApiError::ShuttingDown), "a hub stopping");
        assert!(!failed(ApiError::CommitsFailed(2)), "a readiness probe");
        assert!(failed(ApiError::StorageFailed("disk full".into())));
        assert!(failed(ApiError::Internal("a bug")));
        assert!(
            server_failed(StatusCode::BAD_GATEWAY, None),
            "a 5xx without a problem document"
        );
        assert!(!server_failed(StatusCode::OK, None));
    }

    #[test]
    fn a_bad_header_is_no_trace_at_all() {
        let mut headers = HeaderMap::new();
        assert_eq!(traceparent(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-zz-zz-01"));
        assert_eq!(traceparent(&headers), None);
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT, HeaderValue::from_static(good));
        assert_eq!(
            traceparent(&headers).map(|t| t.to_string()).as_deref(),
            Some(good)
        );
    }
}
