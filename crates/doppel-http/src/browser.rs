//! What one listener lets web browsers do: the hosts it answers for ([`AllowedHosts`], against
//! DNS rebinding) and the origins whose pages may call it (CORS, none unless configured).
//! Together with the refusal of bodies not declared as JSON (`media_type`), this keeps a web
//! page a user happens to visit from driving a hub (or edge agent) on that user's machine or
//! network. See docs/SECURITY.md, "Browsers".

use crate::host::AllowedHosts;
use crate::problem::ApiError;
use axum::Router;
use axum::http::header::{HOST, ORIGIN, UPGRADE};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response};
use axum::response::IntoResponse;
use futures_util::future::{Either, Ready, ready};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer: long enough to spare most requests a
/// second round trip, short enough that a removed origin loses access soon. Browsers cap it
/// anyway (Chromium at 2 h).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The methods of the API's routes.
const CORS_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The request headers routes read beyond the CORS-safelisted ones.
const CORS_REQUEST_HEADERS: [&str; 5] = [
    "content-type",
    "if-match",
    "doppel-change-reason",
    "traceparent",
    "last-event-id",
];

/// The answer headers a page may read beyond the CORS-safelisted ones.
const CORS_EXPOSED_HEADERS: [&str; 2] = ["etag", "location"];

/// An `http.cors_origins` entry that is not an origin.
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is not an origin: {reason}")]
pub struct InvalidOrigin {
    pub entry: String,
    pub reason: &'static str,
}

/// What a listener answers browsers. Built once before serving; checking a request allocates
/// nothing.
#[derive(Clone, Debug)]
pub struct BrowserPolicy {
    checks: Arc<Checks>,
    /// `None`: no CORS headers at all, so no other origin's page can read an answer or send a
    /// preflighted request.
    cors: Option<CorsLayer>,
}

impl BrowserPolicy {
    /// `hosts`, and CORS for `origins` (`scheme://host[:port]`, as browsers send them in
    /// `Origin`); no origins means no CORS.
    pub fn new(hosts: AllowedHosts, origins: &[String]) -> Result<Self, InvalidOrigin> {
        let origins = cors_origins(origins)?;
        let cors = (!origins.is_empty()).then(|| {
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins.clone()))
                .allow_methods(CORS_METHODS)
                .allow_headers(CORS_REQUEST_HEADERS.map(HeaderName::from_static))
                .expose_headers(CORS_EXPOSED_HEADERS.map(HeaderName::from_static))
                .max_age(PREFLIGHT_MAX_AGE)
            // No `allow_credentials`: the API authenticates no request by cookie (see
            // docs/SECURITY.md), so a page never needs to send one.
        });
        Ok(Self {
            checks: Arc::new(Checks { hosts, origins }),
            cors,
        })
    }

    /// The defaults of a listener bound to `bind`: its hosts, no CORS.
    pub fn defaults(bind: IpAddr) -> Self {
        Self {
            checks: Arc::new(Checks {
                hosts: AllowedHosts::defaults(bind),
                origins: Vec::new(),
            }),
            cors: None,
        }
    }

    /// `router` behind this policy: the host check first, before routing, then CORS.
    pub(crate) fn guard(&self, router: Router) -> Guarded {
        let router = match &self.cors {
            Some(cors) => router.layer(cors.clone()),
            None => router,
        };
        Guarded {
            router,
            checks: self.checks.clone(),
        }
    }
}

/// What is checked before a request is routed.
#[derive(Debug)]
struct Checks {
    hosts: AllowedHosts,
    /// The configured CORS origins, which may also open WebSockets.
    origins: Vec<HeaderValue>,
}

impl Checks {
    fn check<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        self.hosts.check(request)?;
        self.check_websocket_origin(request)
    }

    /// Browsers open WebSockets to any site without CORS, sending the page's `Origin`: a
    /// foreign page could read the change stream through one. A WebSocket handshake that
    /// carries an `Origin` must come from the listener's own origin (its `Host`) or a
    /// configured one. Clients other than browsers send no `Origin` and are not affected.
    fn check_websocket_origin<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        let headers = request.headers();
        let (Some(origin), true) = (headers.get(ORIGIN), headers.contains_key(UPGRADE)) else {
            return Ok(());
        };
        if self.origins.contains(origin) {
            return Ok(());
        }
        let own = origin
            .to_str()
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .zip(headers.get(HOST).and_then(|host| host.to_str().ok()))
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host));
        if own {
            return Ok(());
        }
        let quoted = String::from_utf8_lossy(origin.as_bytes());
        Err(ApiError::OriginNotAllowed(
            quoted.chars().take(MAX_QUOTED_ORIGIN_LEN).collect(),
        ))
    }
}

/// Longest `Origin` quoted back in a refusal, as for hosts.
const MAX_QUOTED_ORIGIN_LEN: usize = 100;

/// Checks and normalises the configured origins: browsers send `Origin` in lower case, without
/// a path or a default port, and CORS compares it byte for byte.
fn cors_origins(entries: &[String]) -> Result<Vec<HeaderValue>, InvalidOrigin> {
    entries
        .iter()
        .map(|entry| {
            let invalid = |reason| InvalidOrigin {
                entry: entry.clone(),
                reason,
            };
            let origin = entry.trim().to_ascii_lowercase();
            if origin == "*" || origin == "null" {
                return Err(invalid(
                    "list each origin; any origin (and sandboxed pages' \"null\") could drive the hub, which authenticates no HTTP request yet",
                ));
            }
            let (scheme, rest) = origin
                .split_once("://")
                .ok_or_else(|| invalid("expected scheme://host[:port], e.g. https://app.example"))?;
            let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            if !scheme_ok || rest.is_empty() {
                return Err(invalid("expected scheme://host[:port], e.g. https://app.example"));
            }
            if rest.contains(['/', '?', '#', '@']) {
                return Err(invalid("an origin has no path, query or user; drop everything after the host and port"));
            }
            HeaderValue::from_str(&origin).map_err(|_| invalid("not a header value"))
        })
        .collect()
}

/// The router behind the checks: a request for a host the listener does not answer for, or a
/// WebSocket handshake from a foreign page, is refused before anything routes it, so no
/// handler (and no CORS answer) ever sees it.
#[derive(Clone)]
pub(crate) struct Guarded {
    router: Router,
    checks: Arc<Checks>,
}

impl<B> Service<Request<B>> for Guarded
where
    Router: Service<Request<B>, Response = Response<axum::body::Body>, Error = Infallible>,
{
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future =
        Either<Ready<Result<Self::Response, Infallible>>, <Router as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.checks.check(&request) {
            Ok(()) => Either::Right(self.router.call(request)),
            Err(err) => Either::Left(ready(Ok(err.into_response()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        let ok = cors_origins(&["HTTPS://App.Example".into(), "http://localhost:3000".into()])
            .expect("valid origins");
        assert_eq!(ok, ["https://app.example", "http://localhost:3000"]);
        for entry in [
            "*",
            "null",
            "app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "1ttp://app.example",
        ] {
            assert!(cors_origins(&[entry.into()]).is_err(), "{entry:?}");
        }
    }
}
