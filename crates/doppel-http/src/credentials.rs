//! Credential routes: the MQTT passwords of devices (`/v1/tenants/{tenant}/devices/{device}/
//! credentials`) and applications (`/v1/tenants/{tenant}/apps/{app}/credentials`).
//!
//! A password is answered once, by the create; listing shows ids and instants only.

use crate::AppState;
use crate::problem::ApiError;
use crate::{body, media_type};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use doppel_auth::{AppName, CreatedCredential, CredentialInfo, Principal, Registry};
use doppel_engine::Clock;
use doppel_model::{DeviceId, ModelError, TenantId};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What the credential routes need once the store is open.
pub(crate) struct Credentials {
    /// The credentials, in memory and written through to the store.
    pub registry: Registry,
    /// Stamps `created_at` on new credentials.
    pub clock: Arc<dyn Clock>,
}

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for owner in [
        "/v1/tenants/{tenant}/devices/{device}",
        "/v1/tenants/{tenant}/apps/{app}",
    ] {
        router = router
            .route(&format!("{owner}/credentials"), get(list).post(create))
            .route(
                &format!("{owner}/credentials/{{credential_id}}"),
                delete(remove),
            );
    }
    router
}

/// The path parameters: `tenant`, then `device` or `app`, and `credential_id` when deleting.
type CredentialPath = Result<Path<HashMap<String, String>>, PathRejection>;

/// The principal the path names, and the credential id if it names one.
fn principal(path: CredentialPath) -> Result<(Principal, String), ApiError> {
    let Path(mut params) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
    let tenant = TenantId::new(params.remove("tenant").unwrap_or_default())?;
    let principal = match (params.remove("device"), params.remove("app")) {
        (Some(device), None) => Principal::device(tenant, DeviceId::new(device)?)?,
        (None, Some(app)) => Principal::app(tenant, AppName::new(app)?),
        _ => {
            return Err(ApiError::Internal(
                "a credential route names neither a device nor an app",
            ));
        }
    };
    let credential_id = params.remove("credential_id").unwrap_or_default();
    Ok((principal, credential_id))
}

/// The optional body of a create: nothing at all, or `{"password": "..."}`.
struct CreateBody {
    /// `None` asks the hub to generate a password.
    password: Option<String>,
}

impl FromRequest<AppState> for CreateBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        // Declared and read exactly as every other JSON body is, with the same errors.
        let bytes = body::read(request, state, media_type::JSON_ONLY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { password: None });
        }
        parse_create(&body::parse(&bytes, &state.limits)?)
    }
}

fn parse_create(body: &Value) -> Result<CreateBody, ApiError> {
    let object = doppel_model::patch::as_object(doppel_model::Subject::RequestBody, body)?;
    if let Some(unknown) = object.keys().find(|key| key.as_str() != "password") {
        return Err(ApiError::Model(ModelError::InvalidField {
            field: "body",
            reason: format!(
                "unknown field {unknown:?}; the body is empty or {{\"password\": \"...\"}}"
            ),
        }));
    }
    let password = match object.get("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(password)) => Some(password.clone()),
        Some(_) => {
            return Err(ApiError::Model(ModelError::InvalidField {
                field: "password",
                reason: "must be a string, or left out to have one generated".into(),
            }));
        }
    };
    Ok(CreateBody { password })
}

fn created(credential: &CreatedCredential) -> Value {
    json!({
        "credential_id": credential.credential_id,
        "username": credential.username,
        "password": credential.password,
        "created_at": credential.created_at.to_rfc3339(),
    })
}

fn listed(credential: &CredentialInfo) -> Value {
    json!({
        "credential_id": credential.credential_id,
        "username": credential.username,
        "created_at": credential.created_at.to_rfc3339(),
    })
}

async fn create(
    State(state): State<AppState>,
    path: CredentialPath,
    body: CreateBody,
) -> Result<Response, ApiError> {
    let (principal, _) = principal(path)?;
    let credentials = state.credentials()?;
    let credential = credentials
        .registry
        .create(principal, body.password, credentials.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        // The answer holds a password: no cache on the way may keep it.
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(created(&credential)),
    )
        .into_response())
}

async fn list(State(state): State<AppState>, path: CredentialPath) -> Result<Response, ApiError> {
    let (principal, _) = principal(path)?;
    let items: Vec<Value> = state
        .credentials()?
        .registry
        .list(&principal)
        .iter()
        .map(listed)
        .collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

async fn remove(State(state): State<AppState>, path: CredentialPath) -> Result<Response, ApiError> {
    let (principal, credential_id) = principal(path)?;
    if state
        .credentials()?
        .registry
        .delete(&principal, &credential_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::CredentialNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_body_holds_at_most_a_password() {
        let password = |body: Value| parse_create(&body).map(|parsed| parsed.password);
        assert_eq!(
            password(json!({"password": "p"})).ok(),
            Some(Some("p".into()))
        );
        assert_eq!(password(json!({})).ok(), Some(None));
        assert_eq!(password(json!({"password": null})).ok(), Some(None));
        for bad in [json!({"password": 7}), json!({"pass": "p"}), json!("p")] {
            assert!(
                matches!(password(bad.clone()), Err(ApiError::Model(_))),
                "{bad}"
            );
        }
    }
}
