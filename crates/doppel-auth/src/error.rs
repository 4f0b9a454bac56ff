use crate::limits::{
    MAX_PASSWORD_BYTES, MAX_SECRET_BYTES, MAX_TOKEN_NAME_CHARS, MIN_PASSWORD_BYTES,
    MIN_SECRET_CHARS, SECRET_PREFIX,
};
use doppel_model::{Millis, ModelError};
use doppel_store::StoreError;
use thiserror::Error;

/// Why a credential or an API token could not be created or removed. Those up to
/// `TokenSecretInUse` are the caller's to fix; from `Store` on they are the server's and changed
/// nothing the caller can see.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error(
        "the password is {length} bytes long; it must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes, or left out to have one generated"
    )]
    InvalidPassword { length: usize },

    /// An id that cannot name a principal, such as the twin id of a named shadow.
    #[error(transparent)]
    InvalidPrincipal(#[from] ModelError),

    #[error("{username} already has {limit} credentials; remove one before adding another")]
    TooManyCredentials { username: String, limit: usize },

    #[error(
        "the token name is empty; give the token a name that says who uses it, such as \"grafana\""
    )]
    EmptyTokenName,

    #[error(
        "the token name is {length} characters long; at most {MAX_TOKEN_NAME_CHARS} are allowed"
    )]
    TokenNameTooLong { length: usize },

    /// A control character (a newline, a tab, an escape) would garble lists and logs.
    #[error(
        "the token name contains a control character (such as a newline or tab); use printable characters only"
    )]
    TokenNameNotPrintable,

    #[error("a token needs at least one role: admin, operator, app-write or app-read")]
    NoRoles,

    #[error("unknown role {role:?}; the roles are admin, operator, app-write and app-read")]
    UnknownRole { role: String },

    #[error(
        "the token's expiry {expires_at} is not in the future (it is now {now}); give a later instant, or none for a token that does not expire"
    )]
    ExpiryInPast { expires_at: Millis, now: Millis },

    /// A secret supplied for a token (at bootstrap) that does not look like a generated one.
    /// Never carries the secret, which would end up in logs.
    #[error(
        "the token secret {problem}; a token secret is {SECRET_PREFIX:?} followed by {MIN_SECRET_CHARS} or more base64url characters (A-Z a-z 0-9 - _), at most {MAX_SECRET_BYTES} bytes in all, such as 32 random bytes encoded: `echo {SECRET_PREFIX}$(head -c 32 /dev/urandom | basenc --base64url | tr -d =)`"
    )]
    InvalidTokenSecret { problem: SecretProblem },

    /// Two tokens with one secret could not be told apart when it is presented.
    #[error("token {id} already has this secret; choose another secret")]
    TokenSecretInUse { id: String },

    #[error("the credential or token store failed: {0}")]
    Store(#[from] StoreError),

    #[error("the operating system's random source failed: {reason}")]
    Random { reason: String },

    #[error("hashing the password failed: {reason}")]
    Hash { reason: String },

    /// A blocking task (hashing or a store write) panicked or was cancelled at shutdown.
    #[error("a background task of the credential or token registry failed: {reason}")]
    Task { reason: String },
}

/// What is wrong with a supplied token secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SecretProblem {
    #[error("does not start with {SECRET_PREFIX:?}")]
    MissingPrefix,
    #[error("has {chars} characters after the prefix, fewer than {MIN_SECRET_CHARS}")]
    TooShort { chars: usize },
    #[error("is {bytes} bytes long, more than {MAX_SECRET_BYTES}")]
    TooLong { bytes: usize },
    #[error("contains a character that is not base64url")]
    NotBase64Url,
    /// Too few distinct characters to be random: a placeholder such as `dpt_aaaa…`.
    #[error("repeats too few characters ({distinct} distinct) to be random")]
    Repetitive { distinct: usize },
}
