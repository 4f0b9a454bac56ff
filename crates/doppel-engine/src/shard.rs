//! A shard: the only writer of its twins; it hands each group to the committer (`committer.rs`).

use crate::census::Census;
use crate::clock::{Clock, sleep_until};
use crate::committer::{CommitRequest, Outcome, commit_through};
use crate::error::EngineError;
use crate::events::{ChangeFeeds, TwinChange};
use crate::index::FleetIndex;
use crate::metric;
use crate::silence::SilenceTimer;
use doppel_model::codec::{EncodedHistory, EncodedTwin};
use doppel_model::policy::ReplicaConfig;
use doppel_model::{
    Applied, Change, Context, HistoryKind, Limits, Twin, TwinKey, UpdateRequest, apply,
};
use doppel_store::TwinWrite;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Committed twins of one shard, in their stored byte form: a decoded twin costs several times
/// its JSON size in small allocations, and every twin of the fleet lives here. Readers clone the
/// `Bytes` handle under the read lock and decode outside it; the shard takes the write lock only
/// to publish a committed group, so readers never wait on a commit.
pub(crate) type TwinMap = Arc<RwLock<TwinRecords>>;

pub(crate) type TwinRecords = HashMap<TwinKey, EncodedTwin, KeyHasher>;

/// Hashes twin keys for the shard maps and for routing a key to its shard. Every write hashes
/// its key several times and start-up hashes every twin twice, where SipHash took a tenth of
/// the load; foldhash's quality variant is seeded per process, so device ids chosen by clients
/// cannot be aimed at one bucket without knowing the seed.
pub(crate) type KeyHasher = foldhash::quality::RandomState;

/// Which of `shards` workers (twin shards, command workers) owns `key`.
pub(crate) fn shard_index(router: &KeyHasher, key: &TwinKey, shards: usize) -> usize {
    (router.hash_one(key) % shards as u64) as usize
}

pub(crate) struct TwinJob {
    pub key: TwinKey,
    pub request: UpdateRequest,
    pub reply: oneshot::Sender<Result<Outcome, EngineError>>,
}

/// Every key of a shard's map (tombstones included), copied out under the read lock.
pub(crate) fn keys_of(twins: &TwinMap) -> Vec<TwinKey> {
    twins
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect()
}

/// Who history says marked a silent device UNKNOWN.
const SILENCE_PRINCIPAL: &str = "doppel";

/// Twins indexed per step while the index of the twins loaded at start is built.
const INDEX_SLICE: usize = 1024;

/// A shard's fleet index, read by queries and written by the shard.
pub(crate) type SharedIndex = Arc<RwLock<FleetIndex>>;

pub(crate) struct ShardWorker {
    pub jobs: mpsc::Receiver<TwinJob>,
    pub twins: TwinMap,
    pub commits: mpsc::Sender<CommitRequest>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Who this replica is and its conflict rules, for twins kept by more than one replica.
    pub replica: Arc<ReplicaConfig>,
    pub max_batch: usize,
    pub events: Arc<ChangeFeeds>,
    /// The fleet index of this shard's twins.
    pub index: SharedIndex,
    /// When each of this shard's connected twins goes silent.
    pub silence: SilenceTimer,
    /// The twin counts every shard shares, for the limits on how many twins there may be.
    pub census: Arc<Census>,
}

impl ShardWorker {
    /// Runs until every sender of jobs is gone, finishing the jobs already queued. Until its
    /// index covers every twin loaded at start, the shard indexes a slice of them whenever no
    /// request is waiting, so start-up does not wait for the index.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut unindexed = keys_of(&self.twins);
        if unindexed.is_empty() {
            self.index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .mark_ready();
        }
        loop {
            let indexing = !unindexed.is_empty();
            let silence = self.silence.next();
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                received = self.jobs.recv_many(&mut batch, self.max_batch) => {
                    if received == 0 {
                        return;
                    }
                    self.process(&mut batch).await;
                }
                () = sleep_until(&*clock, silence) => {
                    batch.extend(self.silent_twins());
                    self.process(&mut batch).await;
                }
                () = std::future::ready(()), if indexing => {
                    self.index_loaded(&mut unindexed);
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Marks every twin whose silence deadline has come: requests nobody waits for, applied
    /// like any other (a twin heard from meanwhile is left alone by the model).
    fn silent_twins(&mut self) -> Vec<TwinJob> {
        self.silence
            .take_due(self.clock.now())
            .into_iter()
            .map(|(key, silent_since)| TwinJob {
                key,
                request: UpdateRequest {
                    change: Change::Silent { silent_since },
                    expected_version: None,
                    changed_by: SILENCE_PRINCIPAL.into(),
                    change_reason: None,
                    client_token: None,
                    trace: None,
                },
                reply: oneshot::channel().0,
            })
            .collect()
    }

    /// Indexes the next slice of the twins loaded at start; marks the index ready after the
    /// last. Runs between groups, so no change of these twins is in flight meanwhile.
    fn index_loaded(&mut self, unindexed: &mut Vec<TwinKey>) {
        let slice = unindexed.split_off(unindexed.len().saturating_sub(INDEX_SLICE));
        let records: Vec<(TwinKey, EncodedTwin)> = {
            let twins = self.twins.read().unwrap_or_else(PoisonError::into_inner);
            slice
                .into_iter()
                .filter_map(|key| twins.get(&key).map(|record| (key, record.clone())))
                .collect()
        };
        let decoded: Vec<(TwinKey, Option<Twin>)> = records
            .into_iter()
            .map(|(key, record)| {
                let twin = EncodedTwin::is_live(&record.0)
                    .then(|| EncodedTwin::decode(&record.0).ok())
                    .flatten();
                (key, twin)
            })
            .collect();
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        for (key, twin) in &decoded {
            index.update(key, twin.as_ref());
            self.silence.track(key, twin.as_ref());
        }
        if unindexed.is_empty() {
            index.mark_ready();
        }
    }

    async fn process(&mut self, batch: &mut Vec<TwinJob>) {
        let span = tracing::debug_span!("shard.apply", batch = batch.len());
        self.apply_group(batch).instrument(span).await
    }

    /// Applies a group, has it committed, publishes it to readers, answers its callers and
    /// announces its changes.
    async fn apply_group(&mut self, batch: &mut Vec<TwinJob>) {
        let now = self.clock.now();
        // Twins changed by earlier requests of this group, not yet durable nor visible to readers.
        let mut pending: HashMap<TwinKey, (Arc<Twin>, EncodedTwin), KeyHasher> = HashMap::default();
        let mut writes = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut changes = Vec::new();
        let mut counts = KindCounts::default();
        // Twins this group creates (their places taken) and deletes (places given back once
        // the delete is durable).
        let (mut admitted, mut released) = (Vec::new(), Vec::new());
        let announce = self.events.has_listeners();
        {
            let committed = self.twins.read().unwrap_or_else(PoisonError::into_inner);
            for job in batch.drain(..) {
                let previous = match pending.get(&job.key) {
                    Some((_, record)) => Some(record),
                    None => committed.get(&job.key),
                };
                let previous_record = previous.filter(|_| announce).cloned();
                let was_live = previous.is_some_and(|record| EncodedTwin::is_live(&record.0));
                // A twin already changed in this group is shared with its caller's answer and
                // must be copied; a committed one is decoded into a twin apply may own.
                let current = match pending.get(&job.key) {
                    Some((twin, _)) => Some(Twin::clone(twin)),
                    None => match previous.map(|record| EncodedTwin::decode(&record.0)) {
                        None => None,
                        Some(Ok(twin)) => Some(twin),
                        Some(Err(err)) => {
                            let _ = job.reply.send(Err(err.into()));
                            continue;
                        }
                    },
                };
                let context = Context {
                    now,
                    limits: &self.limits,
                    replica: &self.replica,
                };
                match apply(current, &job.request, &context) {
                    Ok(Applied::Changed { twin, entry }) => {
                        if !twin.deleted && !was_live {
                            if let Err(err) = self.census.admit(&job.key) {
                                let _ = job.reply.send(Err(err.into()));
                                continue;
                            }
                            admitted.push(job.key.clone());
                        } else if twin.deleted && was_live {
                            released.push(job.key.clone());
                        }
                        counts.add(entry.kind);
                        let record = EncodedTwin::encode(&twin);
                        writes.push(TwinWrite {
                            key: job.key.clone(),
                            twin: record.clone(),
                            version: entry.version,
                            recorded_at: entry.recorded_at,
                            history: EncodedHistory::encode(&entry),
                        });
                        let twin = Arc::new(twin);
                        if announce {
                            changes.push(TwinChange {
                                key: job.key.clone(),
                                kind: entry.kind,
                                previous: previous_record,
                                current: twin.clone(),
                                client_token: job.request.client_token.as_deref().map(Arc::from),
                                trace: job.request.trace,
                            });
                        }
                        pending.insert(job.key, (twin.clone(), record));
                        replies.push((job.reply, Ok(Outcome::Changed(twin))));
                    }
                    Ok(Applied::Stale { twin }) => {
                        replies.push((job.reply, Ok(Outcome::Stale(Arc::new(twin)))));
                    }
                    Err(err) => {
                        let _ = job.reply.send(Err(err.into()));
                    }
                }
            }
        }
        if !writes.is_empty() {
            if let Err(err) = self.commit(writes).await {
                for key in &admitted {
                    self.census.release(key);
                }
                for (reply, _) in replies {
                    let _ = reply.send(Err(err.clone()));
                }
                return;
            }
            self.twins
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    pending
                        .iter()
                        .map(|(key, (_, record))| (key.clone(), record.clone())),
                );
            // Before any caller is answered, like the twins themselves.
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for (key, (twin, _)) in &pending {
                index.update(key, Some(twin));
                self.silence.track(key, Some(twin));
            }
            counts.record();
            for key in &released {
                self.census.release(key);
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        // After the answers, so a caller's acknowledgement goes out before the change's events
        // (an AWS device sees /update/accepted before /update/delta). A follower that is behind
        // holds this shard's next group back: changes are never skipped for it.
        if !changes.is_empty() {
            self.events.publish(changes).await;
        }
    }

    async fn commit(&self, writes: Vec<TwinWrite>) -> Result<(), EngineError> {
        commit_through(&self.commits, writes, Vec::new()).await
    }
}

/// The index of `kind`'s label in [`metric::TWIN_UPDATE_KINDS`].
fn kind_index(kind: HistoryKind) -> usize {
    match kind {
        HistoryKind::Reported => 0,
        HistoryKind::Desired => 1,
        HistoryKind::State => 2,
        HistoryKind::Meta => 3,
        HistoryKind::Connection => 4,
        HistoryKind::Deleted => 5,
    }
}

/// A group's changes by history kind. Counted with a plain add per change and handed to the
/// metrics recorder once per kind after the commit, so an update costs no metric lookup and no
/// allocation, and a group whose commit failed counts nothing.
#[derive(Default)]
struct KindCounts([u64; metric::TWIN_UPDATE_KINDS.len()]);

impl KindCounts {
    fn add(&mut self, kind: HistoryKind) {
        self.0[kind_index(kind)] += 1;
    }

    fn record(&self) {
        for (label, &count) in metric::TWIN_UPDATE_KINDS.iter().zip(&self.0) {
            if count > 0 {
                metrics::counter!(metric::TWIN_UPDATES, "kind" => *label).increment(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kind_index;
    use crate::metric::TWIN_UPDATE_KINDS;
    use doppel_model::HistoryKind;

    #[test]
    fn each_kind_label_names_its_history_kind() {
        for (index, label) in TWIN_UPDATE_KINDS.iter().enumerate() {
            let kind = HistoryKind::parse(label).expect("a history kind");
            assert_eq!(kind_index(kind), index, "{label}");
        }
    }
}
