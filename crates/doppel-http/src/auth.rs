//! Who may call what. Applications and operators send `Authorization: Bearer <token>`; a token
//! has roles and a tenant scope ([`doppel_auth::Tokens`]). Every route needs one permission,
//! named in [`ROUTES`]; a route missing there needs `admin`, so a new route is closed until
//! someone decides. A tenant route also needs the token to cover the tenant in its path.
//!
//! A server with routes of its own beside these (the edge agent's `/v1/edge/status`) puts them
//! behind the same check with [`guard`] and a table of its own, so that [`ROUTES`] stays the
//! hub's, which the hub's tests walk row by row.

use crate::AppState;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use doppel_auth::{Role, TokenInfo, Tokens};
use doppel_model::Millis;
use std::net::SocketAddr;
use std::sync::Arc;

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
pub const ROUTES: &[RouteAccess] = &[
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
    /// Bearer tokens.
    Tokens(Tokens),
    /// Nobody is asked: `--http-allow-anonymous true` (development, on loopback), and the edge
    /// agent's Unix socket, where the socket file's permissions decide who connects.
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
async fn authorize(
    State(Door { state, routes }): State<Door>,
    matched: Option<MatchedPath>,
    raw_params: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let pattern = matched.as_ref().map_or("", MatchedPath::as_str);
    let access = required_in(routes, request.method(), pattern);
    let caller = match (&state.authentication, access) {
        (_, Access::Open) | (Authentication::Anonymous, _) => Caller { token: None },
        (Authentication::Tokens(tokens), Access::Loopback) => {
            if from_loopback(&request) {
                Caller { token: None }
            } else {
                let token = bearer(tokens, request.headers(), state.now())?;
                Caller { token: Some(token) }
            }
        }
        (Authentication::Tokens(tokens), Access::Needs(permission)) => {
            let token = bearer(tokens, request.headers(), state.now())?;
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

/// Whether a request with `headers` comes from someone the API serves at all: it carries a
/// valid token (of any role), or the API asks nobody. For answers that would tell a stranger
/// something before a route is matched (the edge agent names the devices it holds).
pub fn authenticated(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.authentication {
        Authentication::Anonymous => Ok(()),
        Authentication::Tokens(tokens) => bearer(tokens, headers, state.now()).map(drop),
    }
}

/// The valid token the request carries.
fn bearer(tokens: &Tokens, headers: &HeaderMap, now: Millis) -> Result<Arc<TokenInfo>, ApiError> {
    let value = headers
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
    match tokens.verify(secret, now) {
        Some(token) => Ok(Arc::new(token)),
        None => {
            metrics::counter!("doppel_http_auth_failures_total").increment(1);
            Err(ApiError::Unauthorized(
                "the token is unknown, revoked or expired",
            ))
        }
    }
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

/// Whether the request came over a loopback address (from the hub's own machine).
fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
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
