//! Running the registries' work off the caller's task: blocking work (Argon2, an fsync) on
//! tokio's blocking threads, and store-then-memory changes as tasks of their own.

use crate::error::AuthError;

/// Runs blocking work (Argon2, an fsync) on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| AuthError::Task {
            reason: err.to_string(),
        })
}

/// Runs `work` as a task of its own, so that it finishes even if the caller is dropped
/// (an HTTP client that hangs up) between the store write and the memory change.
pub(crate) async fn run_to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, AuthError>> + Send + 'static,
) -> Result<T, AuthError> {
    tokio::spawn(work).await.map_err(|err| AuthError::Task {
        reason: err.to_string(),
    })?
}
