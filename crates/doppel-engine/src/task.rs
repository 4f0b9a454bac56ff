//! Asking one of the engine's tasks (a shard, a command worker, the committer) to do something.

use crate::error::EngineError;
use tokio::sync::{mpsc, oneshot};

/// Sends the job `make` builds around a reply channel to the task behind `jobs`, and waits for
/// the reply. Each such task lives as long as its callers' handles do, so a closed channel or a
/// reply dropped unanswered means the task panicked while `doing` it: `TaskFailed`, not a
/// shutdown, since a client should not wait for a restart that is not coming.
pub(crate) async fn ask<J, T>(
    jobs: &mpsc::Sender<J>,
    doing: &'static str,
    make: impl FnOnce(oneshot::Sender<T>) -> J,
) -> Result<T, EngineError> {
    let (reply, answer) = oneshot::channel();
    jobs.send(make(reply))
        .await
        .map_err(|_| EngineError::TaskFailed(doing))?;
    answer.await.map_err(|_| EngineError::TaskFailed(doing))
}
