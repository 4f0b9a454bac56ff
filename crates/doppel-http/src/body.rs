//! Reading a JSON body with the size limit and error positions the API promises.

use crate::AppState;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use doppel_model::Limits;
use serde_json::Value;

/// A request body parsed as JSON, no larger than the configured document limit.
pub(crate) struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_document_bytes;
        let bytes = axum::body::to_bytes(Body::new(request.into_body()), limit)
            .await
            .map_err(|_| ApiError::BodyTooLarge { limit })?;
        parse(&bytes, &state.limits).map(JsonBody)
    }
}

/// Parses a body, refusing one nested deeper than any request may be before parsing it (the
/// same check the MQTT shadow service makes), so serde_json's own recursion limit is never what
/// answers.
fn parse(bytes: &[u8], limits: &Limits) -> Result<Value, ApiError> {
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
