//! Reading a JSON body with the size limit and error positions the API promises.

use crate::AppState;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use doppel_model::ModelError;
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
        parse(&bytes, state.limits.max_depth).map(JsonBody)
    }
}

fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| {
        // serde_json stops at 128 levels; input that deep is over any configurable limit.
        if err.to_string().starts_with("recursion limit exceeded") {
            return ApiError::Model(ModelError::TooDeep {
                what: "the request body",
                depth: 128,
                limit: max_depth,
            });
        }
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
        match parse(b"{\n  \"a\": tru }", 8) {
            Err(ApiError::InvalidJson { line, column, .. }) => assert_eq!((line, column), (2, 11)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pathological_nesting_is_too_deep_not_a_syntax_error() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            parse(deep.as_bytes(), 8),
            Err(ApiError::Model(ModelError::TooDeep { .. }))
        ));
    }
}
