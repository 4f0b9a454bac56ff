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
    hand(jobs, doing, make).await?.wait().await
}

/// The first half of [`ask`]: queues the job and returns once the task has it (in the order the
/// callers handed theirs in), without waiting for the reply.
pub(crate) async fn hand<J, T>(
    jobs: &mpsc::Sender<J>,
    doing: &'static str,
    make: impl FnOnce(oneshot::Sender<T>) -> J,
) -> Result<Reply<T>, EngineError> {
    let (reply, answer) = oneshot::channel();
    jobs.send(make(reply))
        .await
        .map_err(|_| EngineError::TaskFailed(doing))?;
    Ok(Reply { answer, doing })
}

/// The reply to a job [`hand`] queued.
pub(crate) struct Reply<T> {
    answer: oneshot::Receiver<T>,
    doing: &'static str,
}

impl<T> Reply<T> {
    pub(crate) async fn wait(self) -> Result<T, EngineError> {
        self.answer
            .await
            .map_err(|_| EngineError::TaskFailed(self.doing))
    }
}
