//! Command routes under `/v1/tenants/{tenant}/twins/{device}/commands`: applications queue, list,
//! read and cancel a device's commands; a device that speaks HTTP long-polls for the next one and
//! acknowledges it.
//!
//! Commands belong to a device, not to one of its named shadows, and need no twin: a device may
//! be told to do something before it has reported anything. A command is shown as
//! [`Command::view`] makes it, the same form MQTT devices and event followers receive.

use crate::AppState;
use crate::auth::{self, Caller};
use crate::body::JsonBody;
use crate::params::{page_limit, query};
use crate::problem::ApiError;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use doppel_engine::Queued;
use doppel_model::command::{self, Command, CommandError, CommandStatus, NewCommand};
use doppel_model::{DeviceId, ModelError, TenantId, TwinKey};
use doppel_store::CommandQuery;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// The collection of one device's commands.
const COMMANDS: &str = "/v1/tenants/{tenant}/twins/{device}/commands";
/// Longest long poll a device may ask for: below the idle timeout of common proxies and load
/// balancers (60 s), so the answer, not the proxy, ends the request.
const MAX_WAIT_SECONDS: u64 = 60;
/// Longest command id looked up. The engine makes UUIDs (36 characters); anything longer, or
/// with other characters, cannot name a command and is not sent to the store.
const MAX_COMMAND_ID_LEN: usize = 64;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(COMMANDS, get(list).post(queue))
        // A literal segment wins over a parameter, so `next` is never taken for a command id.
        .route(&format!("{COMMANDS}/next"), get(next))
        .route(
            &format!("{COMMANDS}/{{id}}"),
            get(get_command).delete(cancel),
        )
        .route(&format!("{COMMANDS}/{{id}}/ack"), post(acknowledge))
}

/// The path parameters: `tenant`, `device` and, on a single command's routes, `id`.
type CommandPath = Result<Path<HashMap<String, String>>, PathRejection>;

/// The device the path names, and the command id when it names one (empty otherwise).
fn target(path: CommandPath) -> Result<(TwinKey, String), ApiError> {
    let Path(mut params) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
    let mut param = |name: &str| params.remove(name).unwrap_or_default();
    let tenant = TenantId::new(param("tenant"))?;
    let device = DeviceId::new(param("device"))?;
    // Commands go to a device. `DeviceId` also takes a named shadow's id, which a
    // percent-encoded `/shadows/` would slip in here; a device id proper has no `/`.
    if device.shadow_name().is_some() {
        return Err(ModelError::InvalidId {
            kind: "device",
            value: device.to_string(),
        }
        .into());
    }
    Ok((TwinKey::new(tenant, device), param("id")))
}

/// Whether `text` could be an id the engine made; used for path ids and cursors alike.
fn plausible_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_COMMAND_ID_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The command id of the path; one that cannot exist is not found without asking the store.
fn command_id(id: String) -> Result<String, ApiError> {
    if plausible_id(&id) {
        Ok(id)
    } else {
        Err(CommandError::NotFound {
            id: id.chars().take(MAX_COMMAND_ID_LEN).collect(),
        }
        .into())
    }
}

fn command_response(status: StatusCode, command: &Command) -> Response {
    (status, axum::Json(command.view())).into_response()
}

/// `POST .../commands`: 201 and `Location` for a new command; 200 with the earlier command when
/// the idempotency key names one.
async fn queue(
    State(state): State<AppState>,
    path: CommandPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (key, _) = target(path)?;
    let commands = state.engine()?.commands();
    let request = NewCommand::from_json(&body, commands.limits(), &state.limits)?;
    let Queued { command, created } = commands.queue(key.clone(), request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!(
        "/v1/tenants/{}/twins/{}/commands/{}",
        key.tenant, key.device, command.id
    );
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(command.view()),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn list_query(params: ListParams) -> Result<CommandQuery, ApiError> {
    let status = params
        .status
        .map(|text| {
            CommandStatus::parse(&text).ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "status must be PENDING, DELIVERED, ACKNOWLEDGED, EXPIRED, CANCELED or FAILED, got {text:?}"
                ))
            })
        })
        .transpose()?;
    let limit = page_limit(params.limit)?;
    let after = params
        .cursor
        .map(|cursor| {
            if plausible_id(&cursor) {
                Ok(cursor)
            } else {
                Err(ApiError::InvalidQuery(format!(
                    "cursor {cursor:?} is not one this API returned"
                )))
            }
        })
        .transpose()?;
    Ok(CommandQuery {
        status,
        after,
        limit,
    })
}

/// `GET .../commands`: a page in creation order; `next_cursor` is the cursor of the following
/// page when this one is full.
async fn list(
    State(state): State<AppState>,
    path: CommandPath,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, _) = target(path)?;
    let command_query = list_query(query(params)?)?;
    let limit = command_query.limit;
    let page = state.engine()?.commands().list(&key, command_query).await?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|command| command.id.clone()))
        .flatten();
    let items: Vec<Value> = page.iter().map(Command::view).collect();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}

async fn get_command(
    State(state): State<AppState>,
    path: CommandPath,
) -> Result<Response, ApiError> {
    let (key, id) = target(path)?;
    let id = command_id(id)?;
    match state.engine()?.commands().get(&key, &id).await? {
        Some(command) => Ok(command_response(StatusCode::OK, &command)),
        None => Err(CommandError::NotFound { id }.into()),
    }
}

/// `DELETE .../commands/{id}`: the command, CANCELED; 409 once it is final.
async fn cancel(State(state): State<AppState>, path: CommandPath) -> Result<Response, ApiError> {
    let (key, id) = target(path)?;
    let id = command_id(id)?;
    let command = state.engine()?.commands().cancel(key, id).await?;
    Ok(command_response(StatusCode::OK, &command))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextParams {
    wait: Option<u64>,
}

/// `GET .../commands/next?wait=N`: the next due command, marked DELIVERED, or 204 when none came
/// within `wait` seconds. A poll abandoned after the engine handed it a command leaves that
/// command DELIVERED; it goes out again once its acknowledgement is overdue.
async fn next(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: CommandPath,
    params: Result<Query<NextParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (key, _) = target(path)?;
    let wait = query(params)?.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::InvalidQuery(format!(
            "wait must be 0 to {MAX_WAIT_SECONDS} seconds, got {wait}"
        )));
    }
    // Only a poll that waits holds anything open.
    let _permit = if wait > 0 {
        auth::hold_stream(&state, &caller)?
    } else {
        None
    };
    let engine = state.engine()?.clone();
    let waited = tokio::select! {
        waited = engine.commands().next(key, Duration::from_secs(wait)) => waited?,
        // A long poll of a token revoked meanwhile ends without a command.
        () = auth::token_ended(state.clone(), caller) => {
            return Err(ApiError::Unauthorized("the token was revoked or has expired"));
        }
    };
    Ok(match waited {
        Some(command) => command_response(StatusCode::OK, &command),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST .../commands/{id}/ack`: the command, ACKNOWLEDGED; 409 once it is final.
async fn acknowledge(
    State(state): State<AppState>,
    path: CommandPath,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (key, id) = target(path)?;
    let id = command_id(id)?;
    let (result, response) = command::parse_acknowledgement(&body)?;
    let command = state
        .engine()?
        .commands()
        .acknowledge(key, id, result, response)
        .await?;
    Ok(command_response(StatusCode::OK, &command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{DEFAULT_PAGE, MAX_PAGE};

    #[test]
    fn list_queries_are_bounded_and_cursors_checked() {
        let params = |status: Option<&str>, limit: Option<usize>, after: Option<&str>| {
            list_query(ListParams {
                status: status.map(str::to_owned),
                limit,
                cursor: after.map(str::to_owned),
            })
        };
        let defaults = params(None, None, None).expect("defaults");
        assert_eq!((defaults.status, defaults.limit), (None, DEFAULT_PAGE));
        let pending = params(Some("pending"), Some(MAX_PAGE), Some("0190-ab")).expect("valid");
        assert_eq!(pending.status, Some(CommandStatus::Pending));
        assert_eq!(pending.after.as_deref(), Some("0190-ab"));
        for (status, limit, after) in [
            (Some("DONE"), None, None),
            (None, Some(0), None),
            (None, Some(MAX_PAGE + 1), None),
            (None, None, Some("a/b")),
        ] {
            assert!(matches!(
                params(status, limit, after),
                Err(ApiError::InvalidQuery(_))
            ));
        }
    }
}
