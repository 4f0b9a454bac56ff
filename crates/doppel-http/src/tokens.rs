//! API tokens over HTTP: `POST /v1/tokens` makes one (its secret is in that answer only),
//! `GET /v1/tokens` lists them without secrets, `DELETE /v1/tokens/{id}` revokes one at once.
//! Only `admin` tokens reach these routes; a tenant's admin sees and makes its tenant's tokens
//! only, and never one for every tenant.

use crate::AppState;
use crate::auth::{Authentication, Caller};
use crate::body::JsonBody;
use crate::problem::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use doppel_auth::tokens::ALL_TENANTS;
use doppel_auth::{NewToken, Role, TenantScope, TokenInfo, Tokens};
use doppel_model::{Millis, TenantId};
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest life a token may be given at creation: ten years, past which "expires" means
/// nothing; a token without `expires_in_seconds` never expires.
const MAX_LIFETIME_SECONDS: u64 = 10 * 365 * 24 * 3600;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    roles: Vec<Role>,
    /// A tenant id, or `*` for every tenant.
    tenant: String,
    expires_in_seconds: Option<u64>,
}

/// The token registry; the token routes do not exist where the API asks nobody.
fn registry(state: &AppState) -> Result<&Tokens, ApiError> {
    match &state.authentication {
        Authentication::Tokens { tokens, .. } => Ok(tokens),
        Authentication::Anonymous => Err(ApiError::Unauthorized(
            "this server does not use tokens (it was started with --http-allow-anonymous true)",
        )),
    }
}

/// The tenant the caller's bearer is limited to, if it is limited to one.
fn caller_tenant(caller: &Caller) -> Option<&TenantId> {
    match caller.tenant() {
        Some(TenantScope::Tenant(tenant)) => Some(tenant),
        _ => None,
    }
}

/// Whether the caller may see or revoke `token`.
fn visible(caller: &Caller, token: &TokenInfo) -> bool {
    caller_tenant(caller).is_none_or(|own| token.tenant == TenantScope::Tenant(own.clone()))
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let tokens = registry(&state)?;
    let body: CreateBody = serde_json::from_value(body)
        .map_err(|err| ApiError::InvalidQuery(format!("a token request: {err}")))?;
    let tenant = if body.tenant == ALL_TENANTS {
        TenantScope::All
    } else {
        TenantScope::Tenant(TenantId::new(body.tenant.as_str())?)
    };
    if let Some(own) = caller_tenant(&caller)
        && tenant != TenantScope::Tenant(own.clone())
    {
        return Err(ApiError::Forbidden {
            needed: Role::Admin,
            tenant: Some(match &tenant {
                TenantScope::All => ALL_TENANTS.to_owned(),
                TenantScope::Tenant(other) => other.to_string(),
            }),
        });
    }
    let now = state.now();
    let expires_at = match body.expires_in_seconds {
        Some(seconds) if seconds == 0 || seconds > MAX_LIFETIME_SECONDS => {
            return Err(ApiError::InvalidQuery(format!(
                "expires_in_seconds must be 1 to {MAX_LIFETIME_SECONDS}"
            )));
        }
        Some(seconds) => Some(Millis(now.0.saturating_add(
            i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        ))),
        None => None,
    };
    let created = tokens
        .create(
            NewToken {
                name: body.name,
                roles: body.roles,
                tenant,
                expires_at,
            },
            now,
        )
        .await?;
    let mut rendered = render(&created.info);
    rendered["token"] = json!(created.secret);
    let location = format!("/v1/tokens/{}", created.info.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(rendered),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let tokens = registry(&state)?;
    let items: Vec<Value> = tokens
        .list()
        .iter()
        .filter(|token| visible(&caller, token))
        .map(render)
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let tokens = registry(&state)?;
    let Path(id) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
    // Another tenant's token is as absent as an unknown one.
    let token = tokens
        .get(&id)
        .filter(|token| visible(&caller, token))
        .ok_or(ApiError::TokenNotFound)?;
    if !tokens.revoke(&token.id).await? {
        return Err(ApiError::TokenNotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A token as the API shows it: never its secret.
fn render(token: &TokenInfo) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "roles": token.roles,
        "tenant": match &token.tenant {
            TenantScope::All => ALL_TENANTS.to_owned(),
            TenantScope::Tenant(tenant) => tenant.to_string(),
        },
        "created_at": token.created_at.to_rfc3339(),
        "expires_at": token.expires_at.map(|at| at.to_rfc3339()),
    })
}
