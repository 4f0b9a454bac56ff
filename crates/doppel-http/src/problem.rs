//! Errors as RFC 9457 problem documents. This is the one place where an error becomes a status
//! and a stable `code`; clients branch on `code`, people read `detail`.

use crate::trace::ProblemLog;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use doppel_auth::{AuthError, JwtRejection, Role};
use doppel_engine::{EngineError, QuotaError};
use doppel_model::command::CommandError;
use doppel_model::{Millis, ModelError};
use serde_json::{Map, Value, json};

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    Model(ModelError),
    /// A request body over the configured size.
    BodyTooLarge {
        limit: usize,
    },
    /// A request body declared as another media type than the route takes (`found`), or a
    /// non-empty body declared as nothing (`None`).
    UnsupportedMediaType {
        found: Option<String>,
        accepted: &'static [&'static str],
    },
    /// A `Host` (or absolute request URI) naming a host this listener does not answer for:
    /// what a DNS-rebinding page sends (see `host`).
    HostNotAllowed(String),
    /// An HTTP/1.1 request without `Host`, with more than one, or with one that is not a host;
    /// RFC 9112 §3.2 says 400.
    InvalidHost(&'static str),
    /// A WebSocket handshake from a page of another origin than the listener's own or a
    /// configured one.
    OriginNotAllowed(String),
    InvalidQuery(String),
    /// A parameter in the fleet query language (`q`, `order_by`, `group_by`) that does not parse.
    QuerySyntax {
        parameter: &'static str,
        error: doppel_query::QueryError,
    },
    InvalidHeader(String),
    /// A twin asked for as of `at`, an instant before its first version (`created_at`).
    TwinNotYetCreated {
        at: Millis,
        created_at: Millis,
    },
    /// No history entry of this version (or one that carries no vector clock).
    HistoryEntryNotFound(u64),
    /// No credential with this id belongs to this device or application.
    CredentialNotFound,
    /// A credential or token could not be created or removed; invalid ids and store failures
    /// arrive as `Model` and `StorageFailed` instead.
    Auth(AuthError),
    /// No valid bearer token: none sent, malformed, unknown, revoked or expired.
    Unauthorized(&'static str),
    /// The client's address sent too many invalid tokens; it may try again after the backoff.
    TooManyAuthFailures {
        retry_after: std::time::Duration,
    },
    /// The token holds `limit` change streams and long polls open already.
    TooManyStreams {
        limit: usize,
    },
    /// A JWT that does not verify; its message says only what is safe to say.
    InvalidJwt(JwtRejection),
    /// The token is valid but lacks the role the route needs, or does not cover the tenant in
    /// the path (`tenant`).
    Forbidden {
        needed: Role,
        tenant: Option<String>,
    },
    /// No token has this id (or none the caller may see).
    TokenNotFound,
    /// A command request was invalid, or the command cannot change that way any more.
    Command(CommandError),
    /// The write would create a twin beyond a limit on how many there may be.
    Quota(QuotaError),
    RouteNotFound(String),
    /// An edge agent's local API was asked for a device the agent does not hold.
    DeviceNotOnThisEdge(String),
    MethodNotAllowed,
    NotReady,
    ShuttingDown,
    StorageFailed(String),
    /// Readiness: this many store commits have failed since start. Each failure was logged
    /// when it happened; this only reports them to a probe.
    CommitsFailed(u64),
    /// A bug: the server reached a state it should not. Logged with its reason.
    Internal(&'static str),
}

impl ApiError {
    /// The status and stable code of each error.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidJson { .. } => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::Model(err) => match err {
                ModelError::InvalidId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
                ModelError::NotAnObject { .. } => (StatusCode::BAD_REQUEST, "not_an_object"),
                ModelError::TooDeep { .. } => (StatusCode::BAD_REQUEST, "too_deep"),
                ModelError::TooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "document_too_large")
                }
                ModelError::VersionMismatch { .. } => {
                    (StatusCode::PRECONDITION_FAILED, "version_mismatch")
                }
                ModelError::VersionOverflow { .. } => (StatusCode::BAD_REQUEST, "version_overflow"),
                ModelError::TwinNotFound => (StatusCode::NOT_FOUND, "twin_not_found"),
                ModelError::InvalidTimestamp { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_timestamp")
                }
                ModelError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
                ModelError::DeviceTypeUnknown { .. } => {
                    (StatusCode::CONFLICT, "device_type_unknown")
                }
                ModelError::MetaOwnedByHub => (StatusCode::CONFLICT, "meta_owned_by_hub"),
                ModelError::CorruptRecord(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_record")
                }
            },
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "document_too_large"),
            Self::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            // 421: this server does not answer for that authority (RFC 9110 §15.5.20), which is
            // the truth; 403 would claim the client lacks a right it could be given.
            Self::HostNotAllowed(_) => (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed"),
            Self::InvalidHost(_) => (StatusCode::BAD_REQUEST, "invalid_host"),
            Self::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::QuerySyntax { .. } => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidHeader(_) => (StatusCode::BAD_REQUEST, "invalid_header"),
            Self::TwinNotYetCreated { .. } => (StatusCode::NOT_FOUND, "twin_not_yet_created"),
            Self::HistoryEntryNotFound(_) => (StatusCode::NOT_FOUND, "history_entry_not_found"),
            Self::CredentialNotFound => (StatusCode::NOT_FOUND, "credential_not_found"),
            Self::Auth(err) => match err {
                AuthError::InvalidPassword { .. } => (StatusCode::BAD_REQUEST, "invalid_password"),
                AuthError::TooManyCredentials { .. } => {
                    (StatusCode::CONFLICT, "too_many_credentials")
                }
                AuthError::InvalidPrincipal(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
                AuthError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_failed"),
                AuthError::EmptyTokenName
                | AuthError::TokenNameTooLong { .. }
                | AuthError::TokenNameNotPrintable => (StatusCode::BAD_REQUEST, "invalid_name"),
                AuthError::NoRoles | AuthError::UnknownRole { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_roles")
                }
                AuthError::ExpiryInPast { .. } => (StatusCode::BAD_REQUEST, "invalid_expiry"),
                AuthError::InvalidTokenSecret { .. } => (StatusCode::BAD_REQUEST, "invalid_secret"),
                AuthError::TokenSecretInUse { .. } => (StatusCode::CONFLICT, "secret_in_use"),
                AuthError::Random { .. } | AuthError::Hash { .. } | AuthError::Task { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
                }
            },
            Self::Command(err) => match err {
                CommandError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
                CommandError::TtlTooLong { .. } => (StatusCode::BAD_REQUEST, "ttl_too_long"),
                CommandError::TooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                }
                CommandError::NotAllowed { .. } => (StatusCode::CONFLICT, "command_final"),
                CommandError::NotFound { .. } => (StatusCode::NOT_FOUND, "command_not_found"),
                CommandError::TooManyOpen { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "too_many_commands")
                }
            },
            Self::Quota(err) => match err {
                QuotaError::TooManyTwins { .. } => (StatusCode::CONFLICT, "too_many_twins"),
                QuotaError::TooManyNamedShadows { .. } => {
                    (StatusCode::CONFLICT, "too_many_named_shadows")
                }
            },
            Self::Unauthorized(_) | Self::InvalidJwt(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::TooManyAuthFailures { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures")
            }
            Self::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            Self::Forbidden { tenant: None, .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Forbidden {
                tenant: Some(_), ..
            } => (StatusCode::FORBIDDEN, "tenant_not_allowed"),
            Self::TokenNotFound => (StatusCode::NOT_FOUND, "token_not_found"),
            Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::DeviceNotOnThisEdge(_) => (StatusCode::NOT_FOUND, "device_not_on_this_edge"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Self::StorageFailed(_) | Self::CommitsFailed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_failed")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::InvalidJson {
                line,
                column,
                message,
            } => format!("the body is not valid JSON: {message} (line {line}, column {column})"),
            Self::Model(err) => err.to_string(),
            Self::BodyTooLarge { limit } => {
                format!("the request body is larger than the limit of {limit} bytes")
            }
            Self::UnsupportedMediaType { found, accepted } => {
                let accepted = accepted.join(" or ");
                match found {
                    Some(found) => {
                        format!("the body is declared as {found:?}; this route takes {accepted}")
                    }
                    None => format!("a request body needs Content-Type: {accepted}"),
                }
            }
            Self::HostNotAllowed(host) => format!(
                "this server does not answer for host {host:?}; add it to http.allowed_hosts (see docs/SECURITY.md, \"Browsers\")"
            ),
            Self::InvalidHost(reason) => format!("{reason}; an HTTP/1.1 request names one host"),
            Self::OriginNotAllowed(origin) => format!(
                "pages of {origin:?} may not open WebSockets here; list the origin in http.cors_origins"
            ),
            Self::InvalidQuery(reason) | Self::InvalidHeader(reason) => reason.clone(),
            Self::QuerySyntax { parameter, error } => format!("{parameter}: {error}"),
            Self::TwinNotYetCreated { at, created_at } => format!(
                "the twin did not exist yet at {}: its first version was recorded at {}",
                at.to_rfc3339(),
                created_at.to_rfc3339()
            ),
            Self::HistoryEntryNotFound(version) => format!(
                "the twin has no replicated history entry of version {version} (entries of twins no edge agent replicates carry no vector clock; expired entries are gone)"
            ),
            Self::CredentialNotFound => {
                "no credential with this id belongs to this device or application".into()
            }
            Self::Auth(err) => err.to_string(),
            Self::Command(err) => err.to_string(),
            Self::Quota(err) => err.to_string(),
            Self::Unauthorized(reason) => (*reason).to_owned(),
            Self::TooManyStreams { limit } => format!(
                "this token holds {limit} change streams and command long polls open already (http.max_streams_per_token); close one first"
            ),
            Self::TooManyAuthFailures { retry_after } => format!(
                "too many invalid tokens from this address; retry in {} s",
                retry_after_seconds(*retry_after)
            ),
            Self::InvalidJwt(rejection) => rejection.to_string(),
            Self::Forbidden {
                needed,
                tenant: None,
            } => {
                format!("this route needs a token with the role {needed} (or a stronger one)")
            }
            Self::Forbidden {
                tenant: Some(tenant),
                ..
            } => format!("the token does not cover tenant {tenant:?}"),
            Self::TokenNotFound => "no token with this id exists".into(),
            Self::RouteNotFound(path) => format!("no route matches {path}; see docs/API.md"),
            Self::DeviceNotOnThisEdge(device) => format!(
                "this edge agent does not hold device {device:?}; it serves the devices it was started with (--device)"
            ),
            Self::MethodNotAllowed => "this route does not support this method".into(),
            Self::NotReady => "the server is still loading its store; retry shortly".into(),
            Self::ShuttingDown => "the server is shutting down".into(),
            Self::StorageFailed(reason) => {
                format!("storage failed, the request was not acknowledged: {reason}")
            }
            Self::CommitsFailed(failed) => {
                format!(
                    "{failed} store commits have failed since start (see the server's log); restart it once the disk is healthy"
                )
            }
            Self::Internal(reason) => format!("internal error: {reason}"),
        }
    }

    /// Whether this is the server reporting its state to a caller who asks for it on purpose
    /// rather than a failure of the request (see [`ProblemLog::expected`]).
    fn expected(&self) -> bool {
        matches!(
            self,
            Self::NotReady | Self::ShuttingDown | Self::CommitsFailed(_)
        )
    }

    /// Fields beyond the standard ones that help a client act.
    fn extensions(&self, body: &mut Map<String, Value>) {
        match self {
            Self::InvalidJson { line, column, .. } => {
                body.insert("line".into(), json!(line));
                body.insert("column".into(), json!(column));
            }
            Self::UnsupportedMediaType { accepted, .. } => {
                body.insert("accepted".into(), json!(accepted));
            }
            Self::QuerySyntax { parameter, error } => {
                body.insert("parameter".into(), json!(parameter));
                body.insert("position".into(), json!(error.position));
            }
            Self::Model(ModelError::VersionMismatch { expected, current }) => {
                body.insert("expected_version".into(), json!(expected));
                body.insert("current_version".into(), json!(current));
            }
            Self::Model(ModelError::VersionOverflow { version, .. }) => {
                body.insert("current_version".into(), json!(version));
            }
            Self::Model(ModelError::TooLarge { limit, .. }) | Self::BodyTooLarge { limit } => {
                body.insert("limit".into(), json!(limit));
            }
            Self::Model(ModelError::TooDeep { limit, .. }) => {
                body.insert("limit".into(), json!(limit));
            }
            Self::TooManyStreams { limit } => {
                body.insert("limit".into(), json!(limit));
            }
            Self::Auth(AuthError::InvalidPassword { .. }) => {
                body.insert("min_bytes".into(), json!(doppel_auth::MIN_PASSWORD_BYTES));
                body.insert("max_bytes".into(), json!(doppel_auth::MAX_PASSWORD_BYTES));
            }
            Self::Auth(AuthError::TooManyCredentials { limit, .. }) => {
                body.insert("limit".into(), json!(limit));
            }
            Self::Command(CommandError::TtlTooLong { max, .. }) => {
                body.insert("max_ttl_seconds".into(), json!(max));
            }
            Self::Command(
                CommandError::TooLarge { limit, .. } | CommandError::TooManyOpen { limit },
            ) => {
                body.insert("limit".into(), json!(limit));
            }
            Self::Quota(
                QuotaError::TooManyTwins { limit, .. }
                | QuotaError::TooManyNamedShadows { limit, .. },
            ) => {
                body.insert("limit".into(), json!(limit));
            }
            Self::Forbidden { needed, .. } => {
                body.insert("required_role".into(), json!(needed.to_string()));
            }
            Self::TwinNotYetCreated { created_at, .. } => {
                body.insert("created_at".into(), json!(created_at.to_rfc3339()));
            }
            // Not `status`: that member is the HTTP status of every problem document.
            Self::Command(CommandError::NotAllowed { status, .. }) => {
                body.insert("command_status".into(), json!(status));
            }
            _ => {}
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        Self::Model(err)
    }
}

impl From<CommandError> for ApiError {
    fn from(err: CommandError) -> Self {
        Self::Command(err)
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Model(err) => Self::Model(err),
            EngineError::Command(err) => Self::Command(err),
            EngineError::Quota(err) => Self::Quota(err),
            EngineError::Store(err) => Self::StorageFailed(err.to_string()),
            EngineError::ShuttingDown => Self::ShuttingDown,
            EngineError::TaskFailed(doing) => Self::Internal(doing),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidPrincipal(err) => Self::Model(err),
            AuthError::Store(err) => Self::StorageFailed(err.to_string()),
            other => Self::Auth(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = self.detail();
        let challenge = matches!(self, Self::Unauthorized(_) | Self::InvalidJwt(_));
        let retry_after = match &self {
            Self::TooManyAuthFailures { retry_after } => Some(retry_after_seconds(*retry_after)),
            _ => None,
        };
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("urn:doppel:problem:{code}")));
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("code".into(), json!(code));
        body.insert("detail".into(), json!(detail));
        self.extensions(&mut body);
        let text = Value::Object(body).to_string();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            text,
        )
            .into_response();
        // The request log says it, once and at the right level, with the request's span.
        response.extensions_mut().insert(ProblemLog {
            code,
            detail,
            expected: self.expected(),
        });
        if challenge {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"doppel\""),
            );
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// Whole seconds, rounded up: a client that waits `Retry-After` must find the backoff over.
fn retry_after_seconds(left: std::time::Duration) -> u64 {
    left.as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
}

pub(crate) async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().chars().take(200).collect())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use axum::http::StatusCode;
    use doppel_engine::EngineError;

    #[test]
    fn a_failed_engine_task_is_an_internal_error_and_a_shutdown_is_not() {
        assert_eq!(
            ApiError::from(EngineError::TaskFailed("committing to the store")).status_and_code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
        );
        assert_eq!(
            ApiError::from(EngineError::ShuttingDown).status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
        );
    }
}
