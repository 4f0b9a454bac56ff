use doppel_model::ModelError;
use thiserror::Error;

/// Why the store failed. Every variant is fatal to the write that met it: the engine answers
/// the callers with an error and acknowledges nothing of that commit.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the data folder is in use by another process (is another doppel running on it?)")]
    Locked,
    #[error("storage I/O failed: {0}")]
    Io(fjall::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] ModelError),
}

impl From<fjall::Error> for StoreError {
    fn from(err: fjall::Error) -> Self {
        match err {
            fjall::Error::Locked => Self::Locked,
            other => Self::Io(other),
        }
    }
}
