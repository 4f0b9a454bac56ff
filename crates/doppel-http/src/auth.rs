//! Who may call what. Applications and operators send `Authorization: Bearer <token>`: one of
//! the hub's API tokens ([`doppel_auth::Tokens`]), or, where `http.jwt` is configured, a JWT
//! of the identity provider it names ([`doppel_auth::JwtVerifier`]). Either has roles and a
//! tenant scope. Every route needs one permission, named in [`ROUTES`]; a route missing there
//! needs `admin`, so a new route is closed until someone decides. A tenant route also needs the
//! bearer to cover the tenant in its path.
//!
//! A server with routes of its own beside these (the edge agent's `/v1/edge/status`) puts them
//! behind the same check with [`guard`] and a table of its own, so that [`ROUTES`] stays the
//! hub's, which the hub's tests walk row by row.

use crate::AppState;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{
    ConnectInfo, Extension, FromRequestParts, MatchedPath, RawPathParams, Request, State,
};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doppel_auth::jwt::looks_like_jwt;
use doppel_auth::{
    GuardConfig, JwtIdentity, JwtVerifier, LoginGuard, Role, TenantScope, TokenInfo, Tokens,
};
use doppel_model::Millis;
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

/// One row of a route table: method, route pattern (as axum matched it), and what it needs.
pub type RouteAccess = (&'static str, &'static str, Access);

/// Every route by method and pattern, and what it needs. docs/API.md shows this table; the
/// end-to-end tests call every row without a token, with a wrong, a revoked and another
/// tenant's token, and with a token one role too weak.
// One route per line, as a table reads; rustfmt would split the long ones.
#[rustfmt::skip]
pub const ROUTES: &[RouteAccess] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/metrics", Access::Loopback),
    ("GET", "/v1/tenants/{tenant}/twins", READ),
    ("GET", "/v1/tenants/{tenant}/twins/count", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}", READ),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}", WRITE),
    ("DELETE", "/v1/tenants/{tenant}/twins/{device}", OPERATE),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}/desired", WRITE),
    ("PUT", "/v1/tenants/{tenant}/twins/{device}/desired", WRITE),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}/reported", OPERATE),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/delta", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/history", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/history/causality", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}", READ),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}", WRITE),
    ("DELETE", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}", OPERATE),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/desired", WRITE),
    ("PUT", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/desired", WRITE),
    ("PATCH", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/reported", OPERATE),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/delta", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/history", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/shadows/{shadow}/history/causality", READ),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/commands", READ),
    ("POST", "/v1/tenants/{tenant}/twins/{device}/commands", WRITE),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/commands/next", OPERATE),
    ("GET", "/v1/tenants/{tenant}/twins/{device}/commands/{id}", READ),
    ("DELETE", "/v1/tenants/{tenant}/twins/{device}/commands/{id}", WRITE),
    ("POST", "/v1/tenants/{tenant}/twins/{device}/commands/{id}/ack", OPERATE),
    ("GET", "/v1/tenants/{tenant}/devices/{device}/credentials", OPERATE),
    ("POST", "/v1/tenants/{tenant}/devices/{device}/credentials", OPERATE),
    ("DELETE", "/v1/tenants/{tenant}/devices/{device}/credentials/{credential_id}", OPERATE),
    ("GET", "/v1/tenants/{tenant}/apps/{app}/credentials", ADMIN),
    ("POST", "/v1/tenants/{tenant}/apps/{app}/credentials", ADMIN),
    ("DELETE", "/v1/tenants/{tenant}/apps/{app}/credentials/{credential_id}", ADMIN),
    ("GET", "/v1/tenants/{tenant}/events", READ),
    ("GET", "/v1/tenants/{tenant}/events/ws", READ),
    // Which tenants exist is the fleet's operator's to know; a tenant's bearer sees its own.
    ("GET", "/v1/tenants", OPERATE),
    ("GET", "/v1/tokens", ADMIN),
    ("POST", "/v1/tokens", ADMIN),
    ("DELETE", "/v1/tokens/{id}", ADMIN),
];

/// A token with the read permission: the weakest a route can ask for.
pub const READ: Access = Access::Needs(Permission::Read);
const WRITE: Access = Access::Needs(Permission::Write);
const OPERATE: Access = Access::Needs(Permission::Operate);
const ADMIN: Access = Access::Needs(Permission::Admin);

/// What `method` on the route `pattern` needs: its row in [`ROUTES`], or `admin`.
pub fn required(method: &Method, pattern: &str) -> Access {
    required_in(ROUTES, method, pattern)
}

/// What `method` on the route `pattern` needs: its row in `routes`, or `admin`.
pub fn required_in(routes: &[RouteAccess], method: &Method, pattern: &str) -> Access {
    routes
        .iter()
        .find(|(m, p, _)| *p == pattern && *m == method.as_str())
        .map_or(ADMIN, |(_, _, access)| *access)
}

/// Puts every route of `router` (those added so far, as with axum's `route_layer`) behind the
/// token check, with what each needs looked up in `routes`. An unmatched path is not a route:
/// it stays a 404 whoever asks.
pub fn guard<S>(router: Router<S>, state: AppState, routes: &'static [RouteAccess]) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(axum::middleware::from_fn_with_state(
        Door { state, routes },
        authorize,
    ))
}

/// What the middleware checks requests against.
#[derive(Clone)]
struct Door {
    state: AppState,
    /// What each route needs; a route missing here needs `admin`.
    routes: &'static [RouteAccess],
}

/// How the API authenticates.
#[derive(Clone)]
pub enum Authentication {
    /// Bearer tokens: the hub's API tokens, and JWTs of an identity provider when `jwt` is set.
    Tokens {
        tokens: Tokens,
        jwt: Option<Arc<JwtVerifier>>,
    },
    /// Nobody is asked: `--http-allow-anonymous true` (development, on loopback), and the edge
    /// agent's Unix socket, where the socket file's permissions decide who connects.
    Anonymous,
}

/// What a request's bearer turned out to be.
#[derive(Clone, Debug)]
pub enum Bearer {
    /// One of the hub's API tokens: revocable, listed under `/v1/tokens`.
    Token(Arc<TokenInfo>),
    /// A JWT of the configured identity provider: good until it expires.
    Jwt(Arc<JwtIdentity>),
}

/// Who made a request, for the handlers: what history records as `changed_by`, and the bearer
/// whose revocation or expiry ends the request's stream.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The verified bearer, or `None` when the API asks nobody (or the route is open).
    pub bearer: Option<Bearer>,
}

impl Caller {
    /// The caller the authentication layer put on the request, for extractors that need it
    /// among other parts.
    pub(crate) async fn of(parts: &mut Parts, state: &AppState) -> Result<Caller, Response> {
        Extension::<Caller>::from_request_parts(parts, state)
            .await
            .map(|Extension(caller)| caller)
            .map_err(IntoResponse::into_response)
    }

    /// What a write by this caller records as its author: `token:{name}`, `jwt:{name}` (the
    /// JWT's name claim), or `anonymous`.
    pub fn changed_by(&self) -> String {
        match &self.bearer {
            Some(Bearer::Token(token)) => format!("token:{}", token.name),
            Some(Bearer::Jwt(jwt)) => format!("jwt:{}", jwt.name),
            None => "anonymous".to_owned(),
        }
    }

    /// The bearer's roles; none without a bearer.
    pub fn roles(&self) -> &[Role] {
        match &self.bearer {
            Some(Bearer::Token(token)) => &token.roles,
            Some(Bearer::Jwt(jwt)) => &jwt.roles,
            None => &[],
        }
    }

    /// Which tenants the bearer reaches; `None` without a bearer.
    pub fn tenant(&self) -> Option<&TenantScope> {
        match &self.bearer {
            Some(Bearer::Token(token)) => Some(&token.tenant),
            Some(Bearer::Jwt(jwt)) => Some(&jwt.tenant),
            None => None,
        }
    }

    /// From when the bearer no longer verifies; `None` if never (or without a bearer).
    pub fn expires_at(&self) -> Option<Millis> {
        match &self.bearer {
            Some(Bearer::Token(token)) => token.expires_at,
            Some(Bearer::Jwt(jwt)) => Some(jwt.expires_at),
            None => None,
        }
    }
}

/// The middleware: finds the route's permission, checks the bearer token against it and the
/// path's tenant, and hands the handler its [`Caller`].
async fn authorize(
    State(Door { state, routes }): State<Door>,
    matched: Option<MatchedPath>,
    raw_params: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let pattern = matched.as_ref().map_or("", MatchedPath::as_str);
    let access = required_in(routes, request.method(), pattern);
    let nobody = Caller { bearer: None };
    let caller = match (&state.authentication, access) {
        (_, Access::Open) | (Authentication::Anonymous, _) => nobody,
        (Authentication::Tokens { .. }, Access::Loopback) if from_loopback(&request) => nobody,
        (Authentication::Tokens { tokens, jwt }, Access::Loopback) => Caller {
            bearer: Some(bearer(&state, tokens, jwt.as_deref(), &request)?),
        },
        (Authentication::Tokens { tokens, jwt }, Access::Needs(permission)) => {
            let bearer = bearer(&state, tokens, jwt.as_deref(), &request)?;
            let caller = Caller {
                bearer: Some(bearer),
            };
            let granted = caller
                .roles()
                .iter()
                .map(|role| Permission::of(*role))
                .max();
            if granted.is_none_or(|granted| granted < permission) {
                return Err(ApiError::Forbidden {
                    needed: permission.role(),
                    tenant: None,
                });
            }
            if let Some(tenant) = path_tenant(raw_params.as_ref())
                && !caller.tenant().is_some_and(|scope| scope.covers(tenant))
            {
                return Err(ApiError::Forbidden {
                    needed: permission.role(),
                    tenant: Some(tenant.chars().take(64).collect()),
                });
            }
            caller
        }
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Whether `request` comes from someone the API serves at all: it carries a valid bearer (of
/// any role), or the API asks nobody. For answers that would tell a stranger something before
/// a route is matched (the edge agent names the devices it holds).
pub fn authenticated(state: &AppState, request: &Request) -> Result<(), ApiError> {
    match &state.authentication {
        Authentication::Anonymous => Ok(()),
        Authentication::Tokens { tokens, jwt } => {
            bearer(state, tokens, jwt.as_deref(), request).map(drop)
        }
    }
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

/// The valid bearer the request carries: a JWT when it has a JWT's form and JWTs are
/// configured, an API token otherwise. An address that keeps sending invalid bearers is held
/// back with 429 before its bearer is looked at, whatever it is: otherwise a guesser would be
/// answered as fast as ever.
fn bearer(
    state: &AppState,
    tokens: &Tokens,
    jwt: Option<&JwtVerifier>,
    request: &Request,
) -> Result<Bearer, ApiError> {
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
    let verified = verify(tokens, jwt, secret, state.now());
    if let Some(ticket) = ticket {
        let started = lock(&state.auth_failures).finish(ticket, verified.is_ok(), Instant::now());
        for backoff in started {
            tracing::warn!(
                address = backoff.key,
                seconds = backoff.duration.as_secs(),
                "holding back an address that sent too many invalid HTTP tokens"
            );
        }
    }
    if verified.is_err() {
        // The secret is never logged: a typo of a real one is most of it.
        tracing::debug!(address = ?peer, "an invalid bearer");
        metrics::counter!(crate::metrics::AUTH_FAILURES).increment(1);
    }
    verified
}

/// Checks `secret` as a JWT or as an API token.
fn verify(
    tokens: &Tokens,
    jwt: Option<&JwtVerifier>,
    secret: &str,
    now: Millis,
) -> Result<Bearer, ApiError> {
    if let Some(jwt) = jwt
        && looks_like_jwt(secret)
    {
        return match jwt.verify(secret, now) {
            Ok(identity) => Ok(Bearer::Jwt(Arc::new(identity))),
            Err(rejection) => {
                // The caller is told no more than the rejection's message; operators who need
                // to know why a signature failed find it here.
                tracing::debug!(?rejection, "refused a JWT");
                Err(ApiError::InvalidJwt(rejection))
            }
        };
    }
    match tokens.verify(secret, now) {
        Some(token) => Ok(Bearer::Token(Arc::new(token))),
        None => Err(ApiError::Unauthorized(
            "the token is unknown, revoked or expired",
        )),
    }
}

/// Default change streams and command long polls one token may hold open at once: a dashboard
/// or a service needs a few; a leaked loop that never closes them is stopped here, not at the
/// connection cap every other client shares.
pub const DEFAULT_MAX_STREAMS_PER_TOKEN: usize = 32;

/// Open streams and long polls by bearer (`token:{id}`, or `jwt:{name}`).
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
    /// `token:{id}` or `jwt:{name}`.
    bearer: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut by_token = self
            .streams
            .by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = by_token.get_mut(&self.bearer) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_token.remove(&self.bearer);
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
    let key = match &caller.bearer {
        Some(Bearer::Token(token)) => format!("token:{}", token.id),
        // A JWT has no id of its own: its principal's streams count together.
        Some(Bearer::Jwt(jwt)) => format!("jwt:{}", jwt.name),
        None => return Ok(None),
    };
    let streams = &state.open_streams;
    let mut by_token = streams
        .by_token
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let open = by_token.entry(key.clone()).or_insert(0);
    if *open >= streams.max_per_token {
        return Err(ApiError::TooManyStreams {
            limit: streams.max_per_token,
        });
    }
    *open += 1;
    Ok(Some(StreamPermit {
        streams: streams.clone(),
        bearer: key,
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

/// Resolves when `caller`'s bearer stops being valid: an API token revoked or expired, a JWT
/// expired. Streams and long polls end with it, so a revoked token reads nothing more. Never
/// resolves for a caller without a bearer.
pub(crate) async fn token_ended(state: AppState, caller: Caller) {
    let expiry = async {
        match caller.expires_at() {
            Some(at) => {
                let left = u64::try_from(at.0.saturating_sub(state.now().0)).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(left)).await;
            }
            None => std::future::pending().await,
        }
    };
    let revoked = async {
        match (&caller.bearer, &state.authentication) {
            (Some(Bearer::Token(token)), Authentication::Tokens { tokens, .. }) => {
                revocation(tokens, &token.id).await;
            }
            // JWTs cannot be revoked; without a bearer nothing ends.
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        () = expiry => {}
        () = revoked => {}
    }
}

/// Resolves when the API token `id` is revoked.
async fn revocation(tokens: &Tokens, id: &str) {
    let mut revocations = tokens.revocations();
    loop {
        match revocations.recv().await {
            Ok(revoked) if revoked == id => return,
            Ok(_) => {}
            // Missed revocations may have held this one: look it up.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if tokens.get(id).is_none() {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
