//! The HTTP API: JSON over axum, errors as RFC 9457 problem documents with stable codes.
//!
//! Routes are thin: they parse and validate a request into an engine call and render the result.
//! Every error maps to one status and one code in [`problem`].

pub mod auth;
mod body;
pub mod browser;
mod commands;
mod credentials;
mod events;
mod fleet;
pub mod host;
mod media_type;
mod metrics;
pub use crate::metrics::describe_metrics;
mod params;
pub mod problem;
#[cfg(test)]
mod readiness_tests;
mod render;
pub mod server;
mod tenants;
pub mod tls;
mod tokens;
mod trace;
mod twins;

use auth::Authentication;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_auth::{LoginGuard, Registry};
use doppel_engine::{Clock, Engine};
use doppel_model::Limits;
use metrics_exporter_prometheus::PrometheusHandle;
use problem::ApiError;
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Set once the engine has loaded the store; until then twin routes answer 503 `not_ready`
    /// while health checks already answer, so an orchestrator can tell "starting" from "dead".
    engine: Arc<OnceLock<Engine>>,
    /// Set once the credentials are loaded; until then credential routes answer 503 `not_ready`.
    credentials: Arc<OnceLock<credentials::Credentials>>,
    /// The installed metrics recorder, which `/metrics` renders; until it is set (an embedder
    /// that installs none) `/metrics` answers 503 `not_ready`.
    metrics: Arc<OnceLock<PrometheusHandle>>,
    limits: Limits,
    /// Who may call what (see [`auth`]).
    authentication: Authentication,
    /// Stamps new tokens and decides which have expired.
    clock: Arc<dyn Clock>,
    /// Invalid tokens per client address, and the addresses held back for them.
    auth_failures: Arc<Mutex<LoginGuard>>,
    /// Change streams and long polls open per token.
    open_streams: Arc<auth::OpenStreams>,
}

impl AppState {
    /// The API of a server that asks every caller for a token ([`Authentication::Tokens`]), or
    /// nobody ([`Authentication::Anonymous`]).
    pub fn new(limits: Limits, authentication: Authentication, clock: Arc<dyn Clock>) -> Self {
        Self {
            engine: Arc::new(OnceLock::new()),
            credentials: Arc::new(OnceLock::new()),
            metrics: Arc::new(OnceLock::new()),
            limits,
            authentication,
            clock,
            auth_failures: Arc::new(Mutex::new(LoginGuard::new(
                auth::failure_limits(auth::DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS),
                std::time::Instant::now(),
            ))),
            open_streams: Arc::new(auth::OpenStreams::new(auth::DEFAULT_MAX_STREAMS_PER_TOKEN)),
        }
    }

    /// Lets one token hold at most `max_per_token` change streams and command long polls open.
    pub fn with_stream_limit(self, max_per_token: usize) -> Self {
        Self {
            open_streams: Arc::new(auth::OpenStreams::new(max_per_token)),
            ..self
        }
    }

    /// Holds an address back after `max_per_address` invalid tokens within a minute (see
    /// [`auth::failure_limits`]); at least 1.
    pub fn with_auth_failure_limit(self, max_per_address: u32) -> Self {
        Self {
            auth_failures: Arc::new(Mutex::new(LoginGuard::new(
                auth::failure_limits(max_per_address),
                std::time::Instant::now(),
            ))),
            ..self
        }
    }

    fn now(&self) -> doppel_model::Millis {
        self.clock.now()
    }

    /// Makes the API ready. A second call is ignored.
    pub fn set_engine(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    /// Ends every long poll for commands and every change stream at once (and later ones
    /// too): the server is stopping and must not wait for them.
    pub fn end_waiting_requests(&self) {
        if let Some(engine) = self.engine.get() {
            engine.commands().end_long_polls();
            engine.streams().close();
        }
    }

    fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine.get().ok_or(ApiError::NotReady)
    }

    /// Makes the credential routes ready; `clock` stamps new credentials. A second call is
    /// ignored.
    pub fn set_registry(&self, registry: Registry, clock: Arc<dyn Clock>) {
        let _ = self
            .credentials
            .set(credentials::Credentials { registry, clock });
    }

    /// Serves `handle`'s metrics at `/metrics`. A second call is ignored.
    pub fn set_metrics(&self, handle: PrometheusHandle) {
        let _ = self.metrics.set(handle);
    }

    fn credentials(&self) -> Result<&credentials::Credentials, ApiError> {
        self.credentials.get().ok_or(ApiError::NotReady)
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .merge(fleet::routes())
        .merge(twins::routes())
        .merge(commands::routes())
        .merge(credentials::routes())
        .merge(events::routes())
        .merge(tenants::routes())
        .merge(tokens::routes());
    // Routes only, after every route is in: an unmatched path is a 404 whoever asks.
    auth::guard(routes, state.clone(), auth::ROUTES)
        .fallback(problem::route_not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        // `layer` wraps each route, so the middleware sees the pattern that matched.
        .layer(axum::middleware::from_fn(metrics::record))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(trace::request_span)
                .on_response(trace::log_response)
                .on_failure(trace::log_failure),
        )
        .with_state(state)
}

/// Liveness: the process answers.
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: the store is loaded and commits are succeeding.
async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine()?;
    let stats = engine.stats();
    if stats.failed_commits > 0 {
        return Err(ApiError::CommitsFailed(stats.failed_commits));
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "status": "ready", "twins": stats.twins })),
    )
        .into_response())
}
