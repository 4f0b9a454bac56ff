use doppel_model::ModelError;
use thiserror::Error;

/// Why the store failed. Every variant is fatal to the write that met it: the engine answers
/// the callers with an error and acknowledges nothing of that commit.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] fjall::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] ModelError),
}
