//! The local HTTP API: the hub's routes, reached without the tenant segment, so an application
//! moves between hub and edge by changing the base URL and nothing else.

use crate::availability::Availability;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_http::AppState;
use doppel_model::TenantId;
use std::sync::Arc;
use tower::ServiceExt;

/// Where paths the edge does not serve are sent: the hub router's "no such route" answer.
const NOT_ON_THE_EDGE: &str = "/v1/not-on-the-edge";

pub(crate) fn router(
    state: AppState,
    tenant: &TenantId,
    availability: Arc<Availability>,
) -> Router {
    let prefix = format!("/v1/tenants/{tenant}");
    let hub_api = doppel_http::router(state).map_request(move |mut request: Request| {
        rewrite(&mut request, &prefix);
        request
    });
    Router::new()
        .route("/v1/edge/status", get(status))
        .fallback_service(hub_api)
        .layer(axum::middleware::from_fn_with_state(
            availability.clone(),
            count,
        ))
        .with_state(availability)
}

/// `/v1/twins/...` becomes `/v1/tenants/{tenant}/twins/...`; health and metrics stay; anything
/// else (other tenants, credentials) is not served here.
fn rewrite(request: &mut Request, prefix: &str) {
    let path = request.uri().path();
    let local = if path == "/v1/twins" || path.starts_with("/v1/twins/") {
        format!("{prefix}{}", &path["/v1".len()..])
    } else if matches!(path, "/healthz" | "/readyz" | "/metrics") {
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

async fn status(State(availability): State<Arc<Availability>>) -> Response {
    axum::Json(availability.report()).into_response()
}

/// Counts each twin request as served or not, and whether the hub was out of reach while it
/// ran.
async fn count(
    State(availability): State<Arc<Availability>>,
    request: Request,
    next: Next,
) -> Response {
    let counted = request.uri().path().starts_with("/v1/twins");
    let partitioned = availability.partitioned();
    let response = next.run(request).await;
    if counted {
        let during_partition = partitioned || availability.partitioned();
        availability.record(during_partition, !response.status().is_server_error());
    }
    response
}
