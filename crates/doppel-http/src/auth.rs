//! Who may call what. Applications and operators send `Authorization: Bearer <token>`; a token
//! has roles and a tenant scope ([`doppel_auth::Tokens`]). Every route needs one permission,
//! named in [`ROUTES`]; a route missing there needs `admin`, so a new route is closed until
//! someone decides. A tenant route also needs the token to cover the tenant in its path.

use crate::AppState;
use crate::problem::ApiError;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use doppel_auth::{GuardConfig, LoginGuard, Role, TokenInfo, Tokens};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a caller must be allowed, weakest first: each role grants its own and those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Twins, history, queries, streams, commands as they are.
    Read,
    /// Desired state and meta, queueing and cancelling commands.
    Write,
    /// The fleet's device side: reports, deletes, command delivery and acknowledgements over
    /// HTTP, device credentials.
    Operate,
    /// Everything, including tokens and application credentials.
    Admin,
}

impl Permission {
    /// The weakest role that has this permission, as the docs and problem documents name it.
    pub fn role(self) -> Role {
        match self {
            Permission::Read => Role::AppRead,
            Permission::Write => Role::AppWrite,
            Permission::Operate => Role::Operator,
            Permission::Admin => Role::Admin,
        }
    }

    /// The permission `role` grants (with every weaker one).
    fn of(role: Role) -> Permission {
        match role {
            Role::AppRead => Permission::Read,
            Role::AppWrite => Permission::Write,
            Role::Operator => Permission::Operate,
            Role::Admin => Permission::Admin,
        }
    }
}

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks).
    Open,
    /// Anyone on the hub's own machine; others need a valid token (of any role).
    Loopback,
    /// A token with this permission (and, on a tenant route, covering the tenant).
    Needs(Permission),
}

/// Every route by method and pattern, and what it needs. docs/API.md shows this table; the
/// end-to-end tests call every row without a token, with a wrong, a revoked and another
/// tenant's token, and with a token one role too weak.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/metrics", Access::Loopback),
    ("GET", "/v1/tenants/{tenant}/twins", READ),
    ("GET", "/v1/tenants/{tenant}/twins/count", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}", READ),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}", WRITE),
    ("DELETE", "/v1/tenants/{tenant}/twins/{device}", OPERATE),
    (
        "PATCH",
        "/v1/tenants/{tenant}/twins/{device}/desired",
        WRITE,
    ),
    ("PUT", "/v1/tenants/{tenant}/twins/{device}/desired", WRITE),
    (
        "PATCH",
        "/v1/tenants/{tenant}/twins/{device}/reported",
        OPERATE,
    ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/delta", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/history", READ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/history/causality",
        READ,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}",
        READ,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}",
        WRITE,
    ),
    (
        "DELETE",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}",
        OPERATE,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/desired",
        WRITE,
    ),
    (
        "PUT",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/desired",
        WRITE,
    ),
    (
        "PATCH",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/reported",
        OPERATE,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/delta",
        READ,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/history",
        READ,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/history/causality",
        READ,
    ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/commands", READ),
    (
        "POST",
        "/v1/tenants/{tenant}/twins/{device}/commands",
        WRITE,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/commands/next",
        OPERATE,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/twins/{device}/commands/{id}",
        READ,
    ),
    (
        "DELETE",
        "/v1/tenants/{tenant}/twins/{device}/commands/{id}",
        WRITE,
    ),
    (
        "POST",
        "/v1/tenants/{tenant}/twins/{device}/commands/{id}/ack",
        OPERATE,
    ),
    (
        "GET",
        "/v1/tenants/{tenant}/devices/{device}/credentials",
        OPERATE,
    ),
    (
        "POST",
        "/v1/tenants/{tenant}/devices/{device}/credentials",
        OPERATE,
    ),
    (
        "DELETE",
        "/v1/tenants/{tenant}/devices/{device}/credentials/{credential_id}",
        OPERATE,
    ),
    ("GET", "/v1/tenants/{tenant}/apps/{app}/credentials", ADMIN),
    ("POST", "/v1/tenants/{tenant}/apps/{app}/credentials", ADMIN),
    (
        "DELETE",
        "/v1/tenants/{tenant}/apps/{app}/credentials/{credential_id}",
        ADMIN,
    ),
    ("GET", "/v1/tenants/{tenant}/events", READ),
    ("GET", "/v1/tenants/{tenant}/events/ws", READ),
    ("GET", "/v1/tokens", ADMIN),
    ("POST", "/v1/tokens", ADMIN),
    ("DELETE", "/v1/tokens/{id}", ADMIN),
];

const READ: Access = Access::Needs(Permission::Read);
const WRITE: Access = Access::Needs(Permission::Write);
const OPERATE: Access = Access::Needs(Permission::Operate);
const ADMIN: Access = Access::Needs(Permission::Admin);

/// What `method` on the route `pattern` needs: its row in [`ROUTES`], or `admin`.
pub fn required(method: &Method, pattern: &str) -> Access {
    ROUTES
        .iter()
        .find(|(m, p, _)| *p == pattern && *m == method.as_str())
        .map_or(ADMIN, |(_, _, access)| *access)
}

/// How the API authenticates.
#[derive(Clone)]
pub enum Authentication {
    /// Bearer tokens.
    Tokens(Tokens),
    /// Nobody is asked (`--http-allow-anonymous true`, for development; and the edge agent's
    /// local API, which listens on loopback).
    Anonymous,
}

/// Who made a request, for the handlers: what history records as `changed_by`, and the token
/// whose revocation ends the request's stream.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token, or `None` when the API asks nobody.
    pub token: Option<Arc<TokenInfo>>,
}

impl Caller {
    /// What a write by this caller records as its author: `token:{name}`, or `anonymous`.
    pub fn changed_by(&self) -> String {
        match &self.token {
            Some(token) => format!("token:{}", token.name),
            None => "anonymous".to_owned(),
        }
    }
}

/// The middleware: finds the route's permission, checks the bearer token against it and the
/// path's tenant, and hands the handler its [`Caller`].
pub(crate) async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    raw_params: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let pattern = matched.as_ref().map_or("", MatchedPath::as_str);
    let access = required(request.method(), pattern);
    let caller = match (&state.authentication, access) {
        (_, Access::Open) | (Authentication::Anonymous, _) => Caller { token: None },
        (Authentication::Tokens(tokens), Access::Loopback) => {
            if from_loopback(&request) {
                Caller { token: None }
            } else {
                let token = bearer(&state, tokens, &request)?;
                Caller { token: Some(token) }
            }
        }
        (Authentication::Tokens(tokens), Access::Needs(permission)) => {
            let token = bearer(&state, tokens, &request)?;
            let granted = token.roles.iter().map(|role| Permission::of(*role)).max();
            if granted.is_none_or(|granted| granted < permission) {
                return Err(ApiError::Forbidden {
                    needed: permission.role(),
                    tenant: None,
                });
            }
            if let Some(tenant) = path_tenant(raw_params.as_ref())
                && !token.covers(tenant)
            {
                return Err(ApiError::Forbidden {
                    needed: permission.role(),
                    tenant: Some(tenant.chars().take(64).collect()),
                });
            }
            Caller { token: Some(token) }
        }
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Default invalid tokens from one address within [`AUTH_FAILURE_WINDOW`] before it is held
/// back: enough for a client with a stale token to retry a few times, few for a guesser.
pub const DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS: u32 = 10;

/// How long invalid tokens add up; the first backoff, doubled at each further one up to the
/// longest. The same shape as the MQTT login guard's (see `doppel_auth::login_guard`).
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
const FIRST_AUTH_BACKOFF: Duration = Duration::from_secs(1);
const LONGEST_AUTH_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The limits of the HTTP side's guard: by address only (a bearer token names no username).
pub(crate) fn failure_limits(max_per_address: u32) -> GuardConfig {
    GuardConfig {
        max_failures_per_address: max_per_address,
        max_failures_per_username: u32::MAX,
        failure_window: AUTH_FAILURE_WINDOW,
        backoff: FIRST_AUTH_BACKOFF,
        max_backoff: LONGEST_AUTH_BACKOFF,
    }
}

/// The valid token the request carries. An address that keeps sending invalid tokens is held
/// back with 429 before its token is looked at, whatever the token: otherwise a guesser would
/// be answered as fast as ever.
fn bearer(
    state: &AppState,
    tokens: &Tokens,
    request: &Request,
) -> Result<Arc<TokenInfo>, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "no Authorization header; send Authorization: Bearer <token>",
        ))?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, secret) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        })
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is not of the form Bearer <token>",
        ))?;
    let peer = peer_address(request);
    let ticket = match peer {
        Some(address) => Some(
            lock(&state.auth_failures)
                .admit_address(address, Instant::now())
                .map_err(|retry_after| ApiError::TooManyAuthFailures { retry_after })?,
        ),
        None => None,
    };
    let verified = tokens.verify(secret, state.now());
    if let Some(ticket) = ticket {
        let started = lock(&state.auth_failures).finish(ticket, verified.is_some(), Instant::now());
        for backoff in started {
            tracing::warn!(
                address = backoff.key,
                seconds = backoff.duration.as_secs(),
                "holding back an address that sent too many invalid HTTP tokens"
            );
        }
    }
    match verified {
        Some(token) => Ok(Arc::new(token)),
        None => {
            // The secret is never logged: a typo of a real one is most of it.
            tracing::debug!(address = ?peer, "an invalid bearer token");
            metrics::counter!("doppel_http_auth_failures_total").increment(1);
            Err(ApiError::Unauthorized(
                "the token is unknown, revoked or expired",
            ))
        }
    }
}

/// Default change streams and command long polls one token may hold open at once: a dashboard
/// or a service needs a few; a leaked loop that never closes them is stopped here, not at the
/// connection cap every other client shares.
pub const DEFAULT_MAX_STREAMS_PER_TOKEN: usize = 32;

/// Open streams and long polls by token id.
pub(crate) struct OpenStreams {
    by_token: Mutex<HashMap<String, usize>>,
    max_per_token: usize,
}

impl OpenStreams {
    pub(crate) fn new(max_per_token: usize) -> Self {
        Self {
            by_token: Mutex::new(HashMap::new()),
            max_per_token,
        }
    }
}

/// One open stream or long poll of a token, counted until it is dropped.
pub(crate) struct StreamPermit {
    streams: Arc<OpenStreams>,
    token: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut by_token = self
            .streams
            .by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = by_token.get_mut(&self.token) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_token.remove(&self.token);
            }
        }
    }
}

/// Counts a stream or long poll of `caller`'s token, or refuses it at the token's limit.
/// Callers without a token (anonymous development servers) are not counted.
pub(crate) fn hold_stream(
    state: &AppState,
    caller: &Caller,
) -> Result<Option<StreamPermit>, ApiError> {
    let Some(token) = &caller.token else {
        return Ok(None);
    };
    let streams = &state.open_streams;
    let mut by_token = streams
        .by_token
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let open = by_token.entry(token.id.clone()).or_insert(0);
    if *open >= streams.max_per_token {
        return Err(ApiError::TooManyStreams {
            limit: streams.max_per_token,
        });
    }
    *open += 1;
    Ok(Some(StreamPermit {
        streams: streams.clone(),
        token: token.id.clone(),
    }))
}

fn lock(guard: &Mutex<LoginGuard>) -> std::sync::MutexGuard<'_, LoginGuard> {
    guard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `{tenant}` of a tenant route, percent-decoded as the handler will see it, so that an
/// escaped name cannot pass the check as one tenant and reach the handler as another.
/// A path that does not decode names no tenant a scoped token covers.
fn path_tenant<'a>(params: Result<&'a RawPathParams, &RawPathParamsRejection>) -> Option<&'a str> {
    match params {
        Ok(params) => params
            .iter()
            .find_map(|(name, value)| (name == "tenant").then_some(value)),
        Err(_) => Some(""),
    }
}

/// The client's address, when the server loop recorded it.
fn peer_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// Whether the request came over a loopback address (from the hub's own machine).
fn from_loopback(request: &Request) -> bool {
    peer_address(request).is_some_and(|address| address.is_loopback())
}

/// Resolves when `caller`'s token stops being valid: revoked, or expired. Streams and long polls
/// end with it, so a revoked token reads nothing more. Never resolves for a caller without a
/// token.
pub(crate) async fn token_ended(state: AppState, caller: Caller) {
    let (Some(token), Authentication::Tokens(tokens)) = (&caller.token, &state.authentication)
    else {
        return std::future::pending().await;
    };
    let mut revocations = tokens.revocations();
    let expiry = async {
        match token.expires_at {
            Some(at) => {
                let left = u64::try_from(at.0.saturating_sub(state.now().0)).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(left)).await;
            }
            None => std::future::pending().await,
        }
    };
    let revoked = async {
        loop {
            match revocations.recv().await {
                Ok(id) if id == token.id => return,
                Ok(_) => {}
                // Missed revocations may have held this one: look it up.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if tokens.get(&token.id).is_none() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return std::future::pending().await;
                }
            }
        }
    };
    tokio::select! {
        () = expiry => {}
        () = revoked => {}
    }
}

#[cfg(test)]
mod tests;
