//! Query parameters every listing shares: parsing with clear errors, and page sizes.

use crate::problem::ApiError;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

/// Page size when a client does not ask for one.
pub(crate) const DEFAULT_PAGE: usize = 100;
/// Largest page: bounds the work and the response size of one request.
pub(crate) const MAX_PAGE: usize = 1000;

/// The parsed query string, or 400 `invalid_query` saying what is wrong with it.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|err| ApiError::InvalidQuery(err.body_text()))
}

/// The `limit` of a page: [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`] when given.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::InvalidQuery("limit must be at least 1".into())),
        n if n > MAX_PAGE => Err(ApiError::InvalidQuery(format!(
            "limit must be at most {MAX_PAGE}"
        ))),
        n => Ok(n),
    }
}
