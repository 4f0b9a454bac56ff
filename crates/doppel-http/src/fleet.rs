//! The fleet: `GET /v1/tenants/{tenant}/twins` lists a tenant's twins, filtered by a query
//! (`q`, see docs/QUERY.md) and ordered by a path (`order_by`) when asked; `.../twins/count`
//! counts them, per group when asked.

use crate::AppState;
use crate::params::{page_limit, query};
use crate::problem::ApiError;
use crate::render;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_model::{DeviceId, TenantId, TwinKey};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/twins", get(list))
        // A literal segment wins over `{device}`: a device named `count` is read as a twin only
        // through its other routes.
        .route("/v1/tenants/{tenant}/twins/count", get(count))
}

fn tenant(path: Result<Path<String>, PathRejection>) -> Result<TenantId, ApiError> {
    let Path(tenant) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
    Ok(TenantId::new(tenant)?)
}

/// A query parameter in the query language, parsed, with errors naming the parameter.
fn parsed<T>(
    parameter: &'static str,
    text: Option<&str>,
    parse: impl Fn(&str) -> Result<T, doppel_query::QueryError>,
) -> Result<Option<T>, ApiError> {
    text.map(|text| parse(text).map_err(|error| ApiError::QuerySyntax { parameter, error }))
        .transpose()
}

/// The query every twin matches (an empty `AND`), for requests without `q`.
fn everything() -> doppel_query::Query {
    doppel_query::Query::from(doppel_query::Expr::And(Vec::new()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    q: Option<String>,
    order_by: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET .../twins`: a page of the tenant's twins. Without `q` and `order_by`, in device-id order
/// straight from the store; with either, from the engine's fleet query.
async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant(path)?;
    let params = query(params)?;
    let limit = page_limit(params.limit)?;
    let filter = parsed("q", params.q.as_deref(), doppel_query::parse)?;
    let order = parsed(
        "order_by",
        params.order_by.as_deref(),
        doppel_query::parse_order,
    )?;
    let engine = state.engine()?;
    let (twins, next_cursor) = if filter.is_none() && order.is_none() {
        let after = params
            .cursor
            .map(DeviceId::new)
            .transpose()
            .map_err(|err| ApiError::InvalidQuery(format!("cursor: {err}")))?;
        let page = engine.list(&tenant, after, limit).await?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|(device, _)| device.to_string()))
            .flatten();
        (page, next)
    } else {
        let filter = filter.unwrap_or_else(everything);
        let (page, _) = engine
            .query(&tenant, filter, order, limit, params.cursor)
            .await?;
        (page.twins, page.next_cursor)
    };
    let items: Vec<Value> = twins
        .iter()
        .map(|(device, twin)| render::twin(&TwinKey::new(tenant.clone(), device.clone()), twin))
        .collect();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountParams {
    q: Option<String>,
    group_by: Option<String>,
}

/// `GET .../twins/count`: `{"count": n}`, and with `group_by` also
/// `{"groups": [{"value": v, "count": n}, ...]}` (a missing field groups under `null`).
async fn count(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<CountParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant(path)?;
    let params = query(params)?;
    let filter = parsed("q", params.q.as_deref(), doppel_query::parse)?.unwrap_or_else(everything);
    let group_by = parsed(
        "group_by",
        params.group_by.as_deref(),
        doppel_query::parse_path,
    )?;
    let grouped = group_by.is_some();
    let (total, groups) = state.engine()?.count(&tenant, filter, group_by).await?;
    let mut body = json!({ "count": total });
    if grouped {
        body["groups"] = groups
            .into_iter()
            .map(|(value, count)| json!({"value": value, "count": count}))
            .collect();
    }
    Ok(axum::Json(body).into_response())
}
