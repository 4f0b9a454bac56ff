//! The one error of the query language.

/// A query, path or order that does not parse, with where and why.
///
/// The HTTP layer returns it in a 400 problem document; `position` lets a client underline the
/// offending part of what the user typed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct QueryError {
    /// Byte offset into the text given to the parser (not a character count).
    pub position: usize,
    /// What was expected and what was found, short enough to show next to an input field.
    pub message: String,
}

impl QueryError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}
