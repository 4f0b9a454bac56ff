//! The local HTTP API: the hub's routes, reached without the tenant segment, so an application
//! moves between hub and edge by changing the base URL and nothing else.
//!
//! Who may call what is the hub's rule too: the hub's router checks the token of every
//! rewritten twin route against the hub's table (`doppel_http::auth::ROUTES`), and the agent's
//! own routes are checked against [`EDGE_ROUTES`] by the same middleware. The tokens are the
//! agent's own (its store, its `/v1/tokens`), not the hub's.

use crate::availability::Availability;
use crate::config::DeviceCredential;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_http::AppState;
use doppel_http::auth::{READ, RouteAccess};
use doppel_http::problem::ApiError;
use doppel_model::TenantId;
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt;

/// Where paths the edge does not serve are sent: the hub router's "no such route" answer.
const NOT_ON_THE_EDGE: &str = "/v1/not-on-the-edge";

/// The agent's own routes and what each needs, as `doppel_http::auth::ROUTES` lists the
/// hub's (whose twin and token routes the agent serves too, by the hub's rules).
pub const EDGE_ROUTES: &[RouteAccess] = &[("GET", "/v1/edge/status", READ)];

/// What the HTTP layer needs of the agent.
#[derive(Clone)]
struct Local {
    /// Who may call: a stranger is told nothing, not even which devices are held here.
    state: AppState,
    availability: Arc<Availability>,
    /// The devices the agent holds; requests for others are refused.
    devices: Arc<BTreeSet<String>>,
}

pub(crate) fn router(
    state: AppState,
    tenant: &TenantId,
    availability: Arc<Availability>,
    devices: &[DeviceCredential],
) -> Router {
    let local = Local {
        state: state.clone(),
        availability,
        devices: Arc::new(
            devices
                .iter()
                .map(|credential| credential.device.as_str().to_owned())
                .collect(),
        ),
    };
    let prefix = format!("/v1/tenants/{tenant}");
    let hub_api = doppel_http::router(state.clone()).map_request(move |mut request: Request| {
        rewrite(&mut request, &prefix);
        request
    });
    let own = Router::new().route("/v1/edge/status", get(status));
    doppel_http::auth::guard(own, state, EDGE_ROUTES)
        .fallback_service(hub_api)
        .layer(axum::middleware::from_fn_with_state(local.clone(), count))
        .with_state(local)
}

/// `/v1/twins/...` becomes `/v1/tenants/{tenant}/twins/...`; health, metrics and the agent's
/// own tokens (`/v1/tokens`) stay; anything else (other tenants, credentials) is not served
/// here.
fn rewrite(request: &mut Request, prefix: &str) {
    let path = request.uri().path();
    let local = if path == "/v1/twins" || path.starts_with("/v1/twins/") {
        format!("{prefix}{}", &path["/v1".len()..])
    } else if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/v1/tokens")
        || path.starts_with("/v1/tokens/")
    {
        return;
    } else {
        NOT_ON_THE_EDGE.to_owned()
    };
    let with_query = match request.uri().query() {
        Some(query) => format!("{local}?{query}"),
        None => local,
    };
    if let Ok(uri) = with_query.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
}

async fn status(State(local): State<Local>) -> Response {
    axum::Json(local.availability.report()).into_response()
}

/// Refuses devices the agent does not hold, and counts each twin request as served or not and
/// whether the hub was out of reach while it ran.
async fn count(State(local): State<Local>, request: Request, next: Next) -> Response {
    let device = request
        .uri()
        .path()
        .strip_prefix("/v1/twins/")
        .and_then(|rest| rest.split('/').next())
        .filter(|device| !device.is_empty() && *device != "count");
    if let Some(device) = device
        && !local.devices.contains(device)
    {
        // The token check of the route would come after this answer: make it first.
        if let Err(refused) = doppel_http::auth::authenticated(&local.state, &request) {
            return refused.into_response();
        }
        return ApiError::DeviceNotOnThisEdge(device.to_owned()).into_response();
    }
    let availability = &local.availability;
    let counted = request.uri().path().starts_with("/v1/twins");
    let partitioned = availability.partitioned();
    let response = next.run(request).await;
    if counted {
        let during_partition = partitioned || availability.partitioned();
        availability.record(during_partition, !response.status().is_server_error());
    }
    response
}
