//! Twin routes under `/v1/tenants/{tenant}/twins`.

use crate::AppState;
use crate::auth::Caller;
use crate::body::{JsonBody, MergePatchBody};
use crate::params::{page_limit, query};
use crate::problem::ApiError;
use crate::render;
use crate::trace::traceparent;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_engine::{Outcome, TwinAt};
use doppel_model::{
    Change, DeviceId, HistoryKind, MetaPatch, Millis, ModelError, TenantId, Twin, TwinKey,
    UpdateRequest,
};
use doppel_store::HistoryQuery;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Longest `Doppel-Change-Reason` kept in history.
const MAX_REASON_LEN: usize = 256;

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    // A named shadow is a twin of its own, addressed under its device's path.
    for twin in [
        "/v1/tenants/{tenant}/twins/{device}",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}",
    ] {
        router = router
            .route(twin, get(get_twin).patch(patch_meta).delete(delete))
            .route(
                &format!("{twin}/desired"),
                axum::routing::patch(patch_desired).put(put_desired),
            )
            .route(
                &format!("{twin}/reported"),
                axum::routing::patch(patch_reported),
            )
            .route(&format!("{twin}/delta"), get(get_delta))
            .route(&format!("{twin}/history"), get(history))
            .route(&format!("{twin}/history/causality"), get(causality));
    }
    router
}

/// The path parameters of a twin route: `tenant`, `device` and, for a named shadow, `shadow`.
type TwinPath = Result<Path<HashMap<String, String>>, PathRejection>;

fn twin_key(path: TwinPath) -> Result<TwinKey, ApiError> {
    let Path(mut params) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
    let mut param = |name: &str| params.remove(name).unwrap_or_default();
    let tenant = TenantId::new(param("tenant"))?;
    let device = DeviceId::new(param("device"))?;
    let shadow = param("shadow");
    let device = if shadow.is_empty() {
        device
    } else {
        device.named_shadow(&shadow)?
    };
    Ok(TwinKey::new(tenant, device))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn twin_response(status: StatusCode, key: &TwinKey, twin: &Twin) -> Response {
    (
        status,
        [(header::ETAG, etag(twin.version))],
        axum::Json(render::twin(key, twin)),
    )
        .into_response()
}

/// Parses `If-Match: "7"`. Only a single strong version tag is meaningful for a twin.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidHeader(format!(
                "If-Match must be one quoted twin version such as \"7\", got {text:?}"
            ))
        })
}

fn change_reason(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("doppel-change-reason") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if !text.is_empty() && text.len() <= MAX_REASON_LEN => Ok(Some(text.to_owned())),
        _ => Err(ApiError::InvalidHeader(format!(
            "Doppel-Change-Reason must be 1 to {MAX_REASON_LEN} visible ASCII characters"
        ))),
    }
}

fn instant_param(name: &str, value: Option<&str>) -> Result<Option<Millis>, ApiError> {
    value
        .map(|text| {
            Millis::parse_rfc3339(text)
                .map_err(|err| ApiError::InvalidQuery(format!("{name}: {err}")))
        })
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtQuery {
    at: Option<String>,
}

async fn get_twin(
    State(state): State<AppState>,
    path: TwinPath,
    params: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = twin_key(path)?;
    let params = query(params)?;
    let engine = state.engine()?;
    match instant_param("at", params.at.as_deref())? {
        None => {
            let twin = engine
                .get(&key)?
                .ok_or(ApiError::Model(ModelError::TwinNotFound))?;
            Ok(twin_response(StatusCode::OK, &key, &twin))
        }
        Some(at) => match engine.get_at(&key, at).await? {
            TwinAt::Existed(twin) => Ok(twin_response(StatusCode::OK, &key, &twin)),
            TwinAt::NotYetCreated { created_at } => {
                Err(ApiError::TwinNotYetCreated { at, created_at })
            }
            TwinAt::Absent => Err(ApiError::Model(ModelError::TwinNotFound)),
        },
    }
}

async fn get_delta(State(state): State<AppState>, path: TwinPath) -> Result<Response, ApiError> {
    let key = twin_key(path)?;
    let twin = state
        .engine()?
        .get(&key)?
        .ok_or(ApiError::Model(ModelError::TwinNotFound))?;
    let body = json!({ "version": twin.version, "delta": twin.delta() });
    Ok(([(header::ETAG, etag(twin.version))], axum::Json(body)).into_response())
}

/// What an application's write to a twin carries besides its body: the caller, the twin's
/// path and the headers (`If-Match`, the change reason, the trace context). The path is checked
/// when the write is made, after the body has been read, as before this extractor existed.
struct AppWrite {
    state: AppState,
    caller: Caller,
    path: TwinPath,
    headers: HeaderMap,
}

impl FromRequestParts<AppState> for AppWrite {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let caller = Caller::of(parts, state).await?;
        let path = Path::from_request_parts(parts, state).await;
        Ok(Self {
            state: state.clone(),
            caller,
            path,
            headers: parts.headers.clone(),
        })
    }
}

impl AppWrite {
    /// The twin and the engine request for the change `change` makes once the twin is known.
    fn request(
        self,
        change: impl FnOnce() -> Result<Change, ApiError>,
    ) -> Result<(AppState, TwinKey, UpdateRequest), ApiError> {
        let key = twin_key(self.path)?;
        let request = UpdateRequest {
            change: change()?,
            expected_version: if_match(&self.headers)?,
            changed_by: self.caller.changed_by(),
            change_reason: change_reason(&self.headers)?,
            client_token: None,
            trace: traceparent(&self.headers),
        };
        Ok((self.state, key, request))
    }

    /// Sends the change to the engine and answers with the twin after it.
    async fn apply(
        self,
        change: impl FnOnce() -> Result<Change, ApiError>,
    ) -> Result<Response, ApiError> {
        let (state, key, request) = self.request(change)?;
        match state.engine()?.update(key.clone(), request).await? {
            Outcome::Changed(twin) => Ok(twin_response(StatusCode::OK, &key, &twin)),
            // Only reports can be stale, and this is not a report.
            Outcome::Stale(_) => Err(ApiError::Internal(
                "an application write was treated as a stale report",
            )),
        }
    }
}

async fn patch_desired(
    write: AppWrite,
    MergePatchBody(patch): MergePatchBody,
) -> Result<Response, ApiError> {
    write.apply(|| Ok(Change::DesiredPatch(patch))).await
}

async fn put_desired(write: AppWrite, JsonBody(desired): JsonBody) -> Result<Response, ApiError> {
    write.apply(|| Ok(Change::DesiredReplace(desired))).await
}

async fn patch_meta(
    write: AppWrite,
    MergePatchBody(body): MergePatchBody,
) -> Result<Response, ApiError> {
    write
        .apply(|| Ok(Change::Meta(MetaPatch::from_json(&body)?)))
        .await
}

async fn delete(write: AppWrite) -> Result<Response, ApiError> {
    let (state, key, request) = write.request(|| Ok(Change::Delete))?;
    state.engine()?.update(key, request).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"state": {...}, "version": N}`: a device's report.
fn parse_report(body: &Value) -> Result<(Value, Option<u64>), ApiError> {
    let object = doppel_model::patch::as_object(doppel_model::Subject::RequestBody, body)?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "state" | "version"))
    {
        return Err(ApiError::Model(doppel_model::ModelError::InvalidField {
            field: "body",
            reason: format!(
                "unknown field {unknown:?}; a report is {{\"state\": {{...}}, \"version\": N}}"
            ),
        }));
    }
    let state =
        object
            .get("state")
            .cloned()
            .ok_or_else(|| doppel_model::ModelError::InvalidField {
                field: "state",
                reason: "a report needs a \"state\" object".into(),
            })?;
    let version = match object.get("version") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(
                value
                    .as_u64()
                    .ok_or_else(|| doppel_model::ModelError::InvalidField {
                        field: "version",
                        reason: "must be a non-negative integer".into(),
                    })?,
            )
        }
    };
    Ok((state, version))
}

async fn patch_reported(
    State(state): State<AppState>,
    path: TwinPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = twin_key(path)?;
    let (patch, device_version) = parse_report(&body)?;
    let request = UpdateRequest {
        change: Change::Reported {
            patch,
            device_version,
        },
        expected_version: None,
        changed_by: key.device.to_string(),
        change_reason: change_reason(&headers)?,
        client_token: None,
        trace: traceparent(&headers),
    };
    let (applied, twin) = match state.engine()?.update(key.clone(), request).await? {
        Outcome::Changed(twin) => (true, twin),
        Outcome::Stale(twin) => (false, twin),
    };
    let mut body = json!({
        "applied": applied,
        "twin": render::twin(&key, &twin),
    });
    if !applied {
        body["reason"] = json!("stale");
    }
    Ok(([(header::ETAG, etag(twin.version))], axum::Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    path: TwinPath,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = twin_key(path)?;
    let params = query(params)?;
    let kind = params
        .kind
        .map(|text| {
            HistoryKind::parse(&text).ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "kind must be REPORTED, DESIRED, META or DELETED, got {text:?}"
                ))
            })
        })
        .transpose()?;
    let after_version = params
        .cursor
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                ApiError::InvalidQuery(format!("cursor {text:?} is not one this API returned"))
            })
        })
        .transpose()?;
    let limit = page_limit(params.limit)?;
    let history_query = HistoryQuery {
        kind,
        from: instant_param("from", params.from.as_deref())?,
        to: instant_param("to", params.to.as_deref())?,
        after_version,
        limit,
    };
    let entries = state
        .engine()?
        .history(&key, history_query)
        .await?
        .ok_or(ApiError::Model(ModelError::TwinNotFound))?;
    let next_cursor = (entries.len() == limit)
        .then(|| entries.last().map(|entry| entry.version.to_string()))
        .flatten();
    let items: Vec<Value> = entries.iter().map(render::history_entry).collect();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CausalityParams {
    a: Option<String>,
    b: Option<String>,
}

/// Whether the changes that produced versions `a` and `b` were causally ordered (one replica
/// had seen the other's change) or concurrent, by their vector clocks.
async fn causality(
    State(state): State<AppState>,
    path: TwinPath,
    params: Result<Query<CausalityParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = twin_key(path)?;
    let params = query(params)?;
    let version = |name: &str, text: Option<String>| {
        let text = text.ok_or_else(|| {
            ApiError::InvalidQuery(format!("{name} must name a history entry's version"))
        })?;
        text.parse::<u64>()
            .map_err(|_| ApiError::InvalidQuery(format!("{name} {text:?} is not a version number")))
    };
    let (a, b) = (version("a", params.a)?, version("b", params.b)?);
    let engine = state.engine()?;
    let mut changes = Vec::with_capacity(2);
    for wanted in [a, b] {
        let history_query = HistoryQuery {
            kind: None,
            from: None,
            to: None,
            after_version: wanted.checked_sub(1),
            limit: 1,
        };
        let entry = engine
            .history(&key, history_query)
            .await?
            .ok_or(ApiError::Model(ModelError::TwinNotFound))?
            .into_iter()
            .find(|entry| entry.version == wanted)
            .and_then(|entry| entry.replica)
            .ok_or(ApiError::HistoryEntryNotFound(wanted))?;
        changes.push(entry);
    }
    let relation = changes[0].clock.compare(&changes[1].clock);
    let side = |version: u64, change: &doppel_model::replica::ReplicaDelta| json!({"version": version, "origin": change.origin, "clock": change.clock});
    Ok(axum::Json(json!({
        "a": side(a, &changes[0]),
        "b": side(b, &changes[1]),
        "relation": relation,
    }))
    .into_response())
}
