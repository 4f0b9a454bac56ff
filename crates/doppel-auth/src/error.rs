use crate::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use doppel_model::ModelError;
use doppel_store::StoreError;
use thiserror::Error;

/// Why a credential could not be created or removed. The first three are the caller's to fix;
/// the rest are the server's and changed nothing the caller can see.
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

    #[error("the credential store failed: {0}")]
    Store(#[from] StoreError),

    #[error("the operating system's random source failed: {reason}")]
    Random { reason: String },

    #[error("hashing the password failed: {reason}")]
    Hash { reason: String },

    /// A blocking task (hashing or a store write) panicked or was cancelled at shutdown.
    #[error("a background task of the credential registry failed: {reason}")]
    Task { reason: String },
}
