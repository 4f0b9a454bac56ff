//! The one group committer: every shard's twin writes and every command worker's command writes
//! reach the store through it, so a group costs one batch and one fsync, and a failed commit is
//! counted once, where `/readyz` reads it.

use crate::error::EngineError;
use crate::metric;
use crate::task::ask;
use doppel_model::Twin;
use doppel_store::{CommandWrite, TwinStore, TwinWrite};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// What an accepted request did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The change is durable; this is the twin after it.
    Changed(Arc<Twin>),
    /// A stale report was ignored; this is the twin as it stands.
    Stale(Arc<Twin>),
}

/// What the committer has done since start, read by [`crate::Engine::stats`] and `/readyz`.
#[derive(Default)]
pub(crate) struct Stats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub failed_commits: AtomicU64,
}

/// What the committer was doing when it vanished under a shard or command worker (see
/// [`ask`]): it runs until the last of them lets go of it.
const COMMITTING: &str = "committing to the store";

/// Writes for the one group committer: a shard's twin writes or a command worker's command
/// writes, and where their outcome goes.
pub(crate) struct CommitRequest {
    pub twins: Vec<TwinWrite>,
    pub commands: Vec<CommandWrite>,
    pub done: oneshot::Sender<Result<(), EngineError>>,
}

/// Hands `twins` and `commands` to the group committer and waits until they are durable.
pub(crate) async fn commit_through(
    commits: &mpsc::Sender<CommitRequest>,
    twins: Vec<TwinWrite>,
    commands: Vec<CommandWrite>,
) -> Result<(), EngineError> {
    ask(commits, COMMITTING, |done| CommitRequest {
        twins,
        commands,
        done,
    })
    .await?
}

/// Gathers the groups of all shards and command workers that are waiting and commits them as
/// one: one batch, one fsync, one outcome, one failure count.
pub(crate) async fn run_committer(
    mut requests: mpsc::Receiver<CommitRequest>,
    store: Arc<dyn TwinStore>,
    stats: Arc<Stats>,
) {
    let mut group = Vec::new();
    while requests.recv_many(&mut group, usize::MAX).await > 0 {
        let twins: Vec<TwinWrite> = group
            .iter_mut()
            .flat_map(|request| std::mem::take(&mut request.twins))
            .collect();
        let commands: Vec<CommandWrite> = group
            .iter_mut()
            .flat_map(|request| std::mem::take(&mut request.commands))
            .collect();
        let count = (twins.len() + commands.len()) as u64;
        let store = store.clone();
        let started = Instant::now();
        let committed = tokio::task::spawn_blocking(move || store.commit_group(&twins, &commands))
            .instrument(tracing::debug_span!("store.commit", writes = count))
            .await;
        // Failed attempts count too: a disk that takes seconds to fail is what an operator
        // needs to see.
        metrics::histogram!(metric::COMMIT_DURATION).record(started.elapsed());
        metrics::histogram!(metric::COMMIT_WRITES).record(count as f64);
        let result = match committed {
            Ok(Ok(())) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.writes.fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::error!(error = %err, writes = count, "store commit failed; the writes were not acknowledged");
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::COMMIT_FAILURES).increment(1);
                Err(EngineError::from(err))
            }
            Err(join) => {
                tracing::error!(error = %join, "store commit panicked");
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::COMMIT_FAILURES).increment(1);
                Err(EngineError::of_join(&join, COMMITTING))
            }
        };
        for request in group.drain(..) {
            let _ = request.done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{COMMITTING, CommitRequest, commit_through};
    use crate::error::EngineError;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_vanished_committer_is_a_failed_task_not_a_shutdown() {
        let (commits, requests) = mpsc::channel::<CommitRequest>(1);
        drop(requests);
        assert!(matches!(
            commit_through(&commits, Vec::new(), Vec::new()).await,
            Err(EngineError::TaskFailed(COMMITTING))
        ));

        let (commits, mut requests) = mpsc::channel::<CommitRequest>(1);
        let dropped_unanswered = tokio::spawn(async move {
            let request = requests.recv().await.expect("a request");
            drop(request);
        });
        assert!(matches!(
            commit_through(&commits, Vec::new(), Vec::new()).await,
            Err(EngineError::TaskFailed(COMMITTING))
        ));
        dropped_unanswered.await.expect("the fake committer ends");
    }
}
