//! W3C trace context on HTTP: the `traceparent` header of a request names the trace its work
//! joins, and each request's span records that trace's id so logs of one trace can be found
//! together.

use axum::http::{HeaderMap, Request};
use doppel_model::TraceParent;
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
