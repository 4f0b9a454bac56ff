use doppel_model::command::CommandError;
use doppel_model::{ModelError, TenantId};
use doppel_store::StoreError;
use std::sync::Arc;
use thiserror::Error;

/// Why the engine could not serve a request.
#[derive(Debug, Error, Clone)]
pub enum EngineError {
    /// The request was invalid or its precondition failed; nothing changed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A command request was invalid or not allowed now; nothing changed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Creating the twin would pass a limit on how many there may be; nothing changed.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The store failed; the write was not acknowledged and may or may not survive a restart.
    #[error("storage failed: {0}")]
    Store(Arc<StoreError>),
    /// The engine is stopping and takes no more requests.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// A task of the engine panicked (a bug) while doing this; nothing of it was acknowledged.
    /// Not [`EngineError::ShuttingDown`]: a client should not wait for a restart that is not
    /// coming.
    #[error("an engine task failed while {0}")]
    TaskFailed(&'static str),
}

impl EngineError {
    /// What the end of a task that was `doing` something, before it answered, means: a panic,
    /// or the runtime stopping.
    pub(crate) fn of_join(err: &tokio::task::JoinError, doing: &'static str) -> EngineError {
        if err.is_panic() {
            EngineError::TaskFailed(doing)
        } else {
            EngineError::ShuttingDown
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> Self {
        Self::Store(Arc::new(err))
    }
}

/// A twin that may not be created because there are as many as allowed already
/// (`limits.max_twins_per_tenant`, `limits.max_named_shadows`). Writes to existing twins are
/// never refused for this; deleting one makes room.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QuotaError {
    #[error(
        "tenant {tenant} has {limit} twins, the most allowed (limits.max_twins_per_tenant); delete one to make room"
    )]
    TooManyTwins { tenant: TenantId, limit: usize },
    #[error(
        "device {thing:?} has {limit} named shadows, the most allowed (limits.max_named_shadows); delete one to make room"
    )]
    TooManyNamedShadows { thing: String, limit: usize },
}

#[cfg(test)]
mod tests {
    use super::EngineError;

    #[tokio::test]
    async fn a_panicked_task_is_its_own_error_not_a_shutdown() {
        let panicked = tokio::task::spawn_blocking(|| panic!("a bug"))
            .await
            .expect_err("the task panicked");
        assert!(matches!(
            EngineError::of_join(&panicked, "reading from the store"),
            EngineError::TaskFailed("reading from the store")
        ));
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let cancelled = task.await.expect_err("the task was cancelled");
        assert!(matches!(
            EngineError::of_join(&cancelled, "anything"),
            EngineError::ShuttingDown
        ));
    }
}
