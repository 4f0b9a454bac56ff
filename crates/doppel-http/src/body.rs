//! Reading a JSON body with the media type, size limit and error positions the API promises.

use crate::AppState;
use crate::media_type::{self, Declared};
use crate::problem::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use doppel_model::Limits;
use serde_json::Value;

/// A request body declared as `application/json` and parsed as JSON, no larger than the
/// configured document limit.
pub(crate) struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read(request, state, media_type::JSON_ONLY).await?;
        parse(&bytes, &state.limits).map(JsonBody)
    }
}

/// A JSON merge patch (RFC 7396): like [`JsonBody`], and also accepted when declared as
/// `application/merge-patch+json`.
pub(crate) struct MergePatchBody(pub Value);

impl FromRequest<AppState> for MergePatchBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read(request, state, media_type::JSON_OR_MERGE_PATCH).await?;
        parse(&bytes, &state.limits).map(MergePatchBody)
    }
}

/// The body's bytes, once its `Content-Type` is one of `accepted`. A body declared as nothing
/// must be empty: browsers send undeclared bodies (a `Blob` without a type) cross-site without
/// a preflight, just as they send `text/plain`. The type is checked before the body is read,
/// so a refused request costs no body and changes nothing.
pub(crate) async fn read(
    request: Request,
    state: &AppState,
    accepted: &'static [&'static str],
) -> Result<Bytes, ApiError> {
    let declared = match media_type::declared(request.headers(), accepted) {
        Declared::Accepted => true,
        Declared::Nothing => false,
        Declared::Refused(found) => {
            return Err(ApiError::UnsupportedMediaType {
                found: Some(found.chars().take(MAX_QUOTED_TYPE_LEN).collect()),
                accepted,
            });
        }
    };
    let limit = state.limits.max_document_bytes;
    let bytes = axum::body::to_bytes(Body::new(request.into_body()), limit)
        .await
        .map_err(|_| ApiError::BodyTooLarge { limit })?;
    if !declared && !bytes.is_empty() {
        return Err(ApiError::UnsupportedMediaType {
            found: None,
            accepted,
        });
    }
    Ok(bytes)
}

/// Longest `Content-Type` quoted back in a refusal: enough to recognise it, while a client
/// cannot make the answer as large as its headers.
const MAX_QUOTED_TYPE_LEN: usize = 100;

/// Parses a body, refusing one nested deeper than any request may be before parsing it (the
/// same check the MQTT shadow service makes), so serde_json's own recursion limit is never what
/// answers.
pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Value, ApiError> {
    doppel_model::limits::check_nesting("the request body", bytes, limits)?;
    serde_json::from_slice(bytes).map_err(|err| {
        let message = err.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::InvalidJson {
            line: err.line(),
            column: err.column(),
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_their_position() {
        match parse(b"{\n  \"a\": tru }", &Limits::default()) {
            Err(ApiError::InvalidJson { line, column, .. }) => assert_eq!((line, column), (2, 11)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pathological_nesting_is_too_deep_not_a_syntax_error() {
        for levels in [20, 200, 60_000] {
            let deep = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            assert!(
                matches!(
                    parse(deep.as_bytes(), &Limits::default()),
                    Err(ApiError::Model(doppel_model::ModelError::TooDeep { depth, limit: 8, .. })) if depth == levels
                ),
                "{levels} levels"
            );
        }
    }
}
