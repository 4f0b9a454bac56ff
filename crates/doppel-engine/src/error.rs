use doppel_model::ModelError;
use doppel_model::command::CommandError;
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
    /// The store failed; the write was not acknowledged and may or may not survive a restart.
    #[error("storage failed: {0}")]
    Store(Arc<StoreError>),
    /// The engine is stopping and takes no more requests.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> Self {
        Self::Store(Arc::new(err))
    }
}
