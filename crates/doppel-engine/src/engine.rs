use crate::census::{Census, Tally};
use crate::clock::Clock;
use crate::commands::CommandQueue;
use crate::committer::{Outcome, Stats, run_committer};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::events::{ChangeFeeds, TwinChange};
use crate::index::FleetIndex;
use crate::shard::{
    KeyHasher, ShardWorker, SharedIndex, TwinJob, TwinMap, TwinRecords, keys_of, shard_index,
};
use crate::silence::{ActivityIntervals, SilenceTimer};
use crate::stream::Streams;
use crate::task::{Reply, hand};
use doppel_model::codec::EncodedTwin;
use doppel_model::history::twin_from_history;
use doppel_model::policy::ReplicaConfig;
use doppel_model::{
    DeviceId, HistoryEntry, HistoryKind, Millis, TenantId, Twin, TwinKey, UpdateRequest,
};
use doppel_store::{HistoryQuery, TwinStore};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Changes the stream feed may fall behind before the shards wait for it; it only numbers and
/// renders events, so it keeps up with the shards.
const STREAM_FEED_BACKLOG: usize = 4096;

/// What a shard that vanished under a caller was doing (see [`hand`]).
const APPLYING: &str = "applying an update";

/// A twin as it was at an instant ([`Engine::get_at`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TwinAt {
    /// The twin as it was then; boxed, as the other answers are a few bytes.
    Existed(Box<Twin>),
    /// The instant is before the twin's first version, recorded at `created_at`.
    NotYetCreated { created_at: Millis },
    /// No twin then: it never existed, was deleted at the time, or the history of that time
    /// has expired.
    Absent,
}

/// A change its shard has queued ([`Engine::submit`]), whose outcome is still to come.
pub struct PendingUpdate {
    reply: Reply<Result<Outcome, EngineError>>,
    span: tracing::Span,
}

impl PendingUpdate {
    /// The change's outcome, once it is durable (or rejected).
    pub async fn outcome(self) -> Result<Outcome, EngineError> {
        let result = self.reply.wait().instrument(self.span.clone()).await?;
        let _entered = self.span.enter();
        match &result {
            Ok(Outcome::Changed(twin)) => tracing::debug!(version = twin.version, "twin changed"),
            Ok(Outcome::Stale(twin)) => {
                tracing::debug!(version = twin.version, "stale report ignored");
            }
            Err(err) => tracing::debug!(error = %err, "update refused"),
        }
        result
    }
}

/// Counters of the engine's work since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Durable store commits; each covers one or more writes.
    pub commits: u64,
    /// Twin changes made durable.
    pub writes: u64,
    /// Store commits that failed (their writes were not acknowledged).
    pub failed_commits: u64,
    /// Live twins (named shadows included, tombstones of deleted twins not), as the census
    /// counts them: a twin being created counts from just before its commit.
    pub twins: u64,
}

struct Shard {
    jobs: mpsc::Sender<TwinJob>,
    twins: TwinMap,
    index: SharedIndex,
}

/// A handle to the running engine; cheap to clone. The engine stops once every handle is
/// dropped and the queued requests are finished; [`EngineTasks::join`] waits for that.
#[derive(Clone)]
pub struct Engine {
    shards: Arc<[Shard]>,
    router: KeyHasher,
    store: Arc<dyn TwinStore>,
    stats: Arc<Stats>,
    /// Live twins per tenant, which the shards keep for the quotas: read for the stats (the
    /// maps hold tombstones too) and for the tenant list.
    census: Arc<Census>,
    events: Arc<ChangeFeeds>,
    commands: CommandQueue,
    streams: Arc<Streams>,
    /// This replica's name and conflict rules: the sync service answers other replicas with
    /// them.
    replica: Arc<ReplicaConfig>,
    /// How long each kind of device may stay silent, for adapters that record activity which
    /// changes no state (an edge agent's sync) only as often as silence detection needs it.
    activity: Arc<ActivityIntervals>,
    /// The one clock of everything built on this engine.
    clock: Arc<dyn Clock>,
}

/// The engine's background tasks.
pub struct EngineTasks {
    workers: Vec<JoinHandle<()>>,
    retention: JoinHandle<()>,
    /// Feeds the change streams; it follows the engine's own feeds, so it ends with them.
    stream_feed: JoinHandle<()>,
}

impl EngineTasks {
    /// Waits until the engine has finished every queued request and committed it. Call after
    /// dropping every [`Engine`] handle.
    pub async fn join(self) {
        for worker in self.workers {
            let _ = worker.await;
        }
        self.retention.abort();
        self.stream_feed.abort();
    }
}

impl Engine {
    /// Loads every twin from `store` into memory and starts the shards, the committer and the
    /// retention timer. Must run inside a Tokio runtime.
    pub async fn start(
        store: Arc<dyn TwinStore>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<(Engine, EngineTasks), EngineError> {
        let shard_count = config.shards.max(1);
        let router = KeyHasher::default();
        let loader = store.clone();
        let route = router.clone();
        let (maps, tally) =
            tokio::task::spawn_blocking(move || load_shards(&*loader, &route, shard_count))
                .await
                .map_err(|join| EngineError::of_join(&join, "loading the twins"))??;

        let census = Arc::new(Census::new(&config.limits, tally));
        let stats = Arc::new(Stats::default());
        let events = Arc::new(ChangeFeeds::new(config.event_capacity));
        let (commit_tx, commit_rx) = mpsc::channel(shard_count * 2);
        let mut workers = Vec::with_capacity(shard_count + 1);
        let mut shards = Vec::with_capacity(shard_count);
        for map in maps {
            let (jobs_tx, jobs_rx) = mpsc::channel(config.queue_depth.max(1));
            let twins: TwinMap = Arc::new(RwLock::new(map));
            let index: SharedIndex =
                Arc::new(RwLock::new(FleetIndex::new(config.indexed_paths.clone())));
            let worker = ShardWorker {
                jobs: jobs_rx,
                twins: twins.clone(),
                commits: commit_tx.clone(),
                clock: clock.clone(),
                limits: config.limits,
                replica: config.replica.clone(),
                max_batch: config.max_batch.max(1),
                events: events.clone(),
                index: index.clone(),
                silence: SilenceTimer::new(config.activity.clone()),
                census: census.clone(),
            };
            workers.push(tokio::spawn(worker.run()));
            shards.push(Shard {
                jobs: jobs_tx,
                twins,
                index,
            });
        }
        let (commands, command_workers) = CommandQueue::start(
            store.clone(),
            commit_tx,
            clock.clone(),
            config.commands,
            config.limits,
            shard_count,
        )
        .await?;
        workers.extend(command_workers);
        let streams = Arc::new(Streams::new(clock.clone(), config.streams));
        let stream_feed = tokio::spawn(streams.clone().run(
            events.follow(STREAM_FEED_BACKLOG),
            commands.follow(STREAM_FEED_BACKLOG),
        ));
        workers.push(tokio::spawn(run_committer(
            commit_rx,
            store.clone(),
            stats.clone(),
        )));
        let retention = tokio::spawn(enforce_retention(
            store.clone(),
            clock.clone(),
            config.clone(),
        ));
        let engine = Engine {
            shards: shards.into(),
            router,
            store,
            stats,
            census,
            events,
            commands,
            streams,
            replica: config.replica.clone(),
            activity: Arc::new(config.activity.clone()),
            clock: clock.clone(),
        };
        Ok((
            engine,
            EngineTasks {
                workers,
                retention,
                stream_feed,
            },
        ))
    }

    fn shard(&self, key: &TwinKey) -> &Shard {
        &self.shards[shard_index(&self.router, key, self.shards.len())]
    }

    /// Every durable change from now on, in the order each twin's changes were applied. A
    /// subscriber that falls more than the configured capacity behind misses the oldest events
    /// and is told how many (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<TwinChange> {
        self.events.subscribe()
    }

    /// Every durable change from now on, none skipped: when the receiver is `capacity` changes
    /// behind, the shards wait for it before applying more writes. For consumers that must not
    /// miss a change and keep up on average (the MQTT delta feed); dropping the receiver
    /// releases the shards.
    pub fn follow(&self, capacity: usize) -> mpsc::Receiver<TwinChange> {
        self.events.follow(capacity)
    }

    /// Every tenant's change stream (twin and command events, numbered, resumable).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// How long a connected device of `device_type` may stay silent before it is UNKNOWN.
    pub fn activity_interval(&self, device_type: Option<&str>) -> Duration {
        self.activity.of_type(device_type)
    }

    /// This replica's name and conflict rules.
    pub fn replica(&self) -> &ReplicaConfig {
        &self.replica
    }

    /// The devices' command queues.
    pub fn commands(&self) -> &CommandQueue {
        &self.commands
    }

    /// Applies one change; returns once it is durable (or rejected).
    pub async fn update(
        &self,
        key: TwinKey,
        request: UpdateRequest,
    ) -> Result<Outcome, EngineError> {
        self.submit(key, request).await?.outcome().await
    }

    /// Queues one change and returns once its shard has it, before it is applied: changes
    /// submitted one after another are applied in that order, so a caller can keep many in
    /// flight (an MQTT connection streaming updates) and still keep each twin's order. Await
    /// [`PendingUpdate::outcome`] for the result once it is durable (or rejected).
    pub async fn submit(
        &self,
        key: TwinKey,
        request: UpdateRequest,
    ) -> Result<PendingUpdate, EngineError> {
        // One span per update, so at debug level: under the default filter it is never built.
        let span = tracing::debug_span!(
            "engine.update",
            tenant = %key.tenant,
            device = %key.device,
            kind = request.change.name(),
            trace_id = crate::trace::trace_id_field(request.trace),
        );
        let shard = self.shard(&key);
        let reply = hand(&shard.jobs, APPLYING, |reply| TwinJob {
            key,
            request,
            reply,
        })
        .instrument(span.clone())
        .await?;
        Ok(PendingUpdate { reply, span })
    }
    /// The current twin, if it exists. Served from memory; never waits for a commit.
    pub fn get(&self, key: &TwinKey) -> Result<Option<Twin>, EngineError> {
        let record = {
            let twins = self
                .shard(key)
                .twins
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            twins.get(key).cloned()
        };
        match record {
            Some(record) if EncodedTwin::is_live(&record.0) => {
                Ok(Some(EncodedTwin::decode(&record.0)?))
            }
            _ => Ok(None),
        }
    }

    /// The keys of every live twin that satisfies `keep`. Visits the whole fleet, decoding each
    /// twin outside the shard locks a slice at a time so writers are never held up for long:
    /// for start-up sweeps, not for requests.
    pub fn live_twins_where(&self, keep: impl Fn(&Twin) -> bool) -> Vec<TwinKey> {
        /// Records copied out of a shard per lock hold.
        const SLICE: usize = 4096;
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            let keys = keys_of(&shard.twins);
            for slice in keys.chunks(SLICE) {
                let records: Vec<(TwinKey, EncodedTwin)> = {
                    let twins = shard.twins.read().unwrap_or_else(PoisonError::into_inner);
                    slice
                        .iter()
                        .filter_map(|key| {
                            twins.get(key).map(|record| (key.clone(), record.clone()))
                        })
                        .collect()
                };
                for (key, record) in records {
                    if !EncodedTwin::is_live(&record.0) {
                        continue;
                    }
                    if let Ok(twin) = EncodedTwin::decode(&record.0)
                        && keep(&twin)
                    {
                        found.push(key);
                    }
                }
            }
        }
        found
    }

    /// Whether the twin or its tombstone is in memory: whether it ever existed, as far as
    /// this process knows.
    fn known(&self, key: &TwinKey) -> bool {
        self.shard(key)
            .twins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// The twin as it was at instant `at`, rebuilt from history.
    pub async fn get_at(&self, key: &TwinKey, at: Millis) -> Result<TwinAt, EngineError> {
        let store = self.store.clone();
        let key = key.clone();
        self.blocking(move || {
            let mut newest_first = Vec::new();
            let mut seen = Vec::with_capacity(3);
            store.history_until(&key, at, &mut |entry| {
                let kind = entry.kind;
                newest_first.push(entry);
                if !seen.contains(&kind) {
                    seen.push(kind);
                }
                let done = kind == HistoryKind::Deleted || seen.len() >= 3;
                if done {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if let Some(twin) = twin_from_history(&newest_first) {
                return Ok(TwinAt::Existed(Box::new(twin)));
            }
            if !newest_first.is_empty() {
                return Ok(TwinAt::Absent);
            }
            // Nothing at or before `at`: either the twin came later, or what there was has
            // expired. Only the entry of version 1 proves the first: versions are never reused.
            let first = store.history(
                &key,
                &HistoryQuery {
                    kind: None,
                    from: None,
                    to: None,
                    after_version: None,
                    limit: 1,
                },
            )?;
            Ok(match first.first() {
                Some(entry) if entry.version == 1 => TwinAt::NotYetCreated {
                    created_at: entry.recorded_at,
                },
                _ => TwinAt::Absent,
            })
        })
        .await
    }

    /// A page of one twin's history; `None` if the twin is unknown (never written, or deleted
    /// before this process started and never written since).
    pub async fn history(
        &self,
        key: &TwinKey,
        query: HistoryQuery,
    ) -> Result<Option<Vec<HistoryEntry>>, EngineError> {
        if !self.known(key) {
            return Ok(None);
        }
        let store = self.store.clone();
        let key = key.clone();
        self.blocking(move || Ok(Some(store.history(&key, &query)?)))
            .await
    }

    /// A page of a tenant's live twins in device-id order, after `after`.
    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<DeviceId>,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Twin)>, EngineError> {
        let store = self.store.clone();
        let tenant = tenant.clone();
        self.blocking(move || Ok(store.list(&tenant, after.as_ref(), limit)?))
            .await
    }

    /// Every tenant with a live twin (named shadows included), with how many it has, in
    /// tenant order. A twin being created counts from just before its commit.
    pub fn tenants(&self) -> Vec<(TenantId, usize)> {
        self.census.tenants()
    }

    /// The engine's clock, for adapters that stamp what they publish: one clock for the whole
    /// hub, which a test can set.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn stats(&self) -> EngineStats {
        let twins = self.census.live_twins() as u64;
        EngineStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
            failed_commits: self.stats.failed_commits.load(Ordering::Relaxed),
            twins,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|join| EngineError::of_join(&join, "reading from the store"))?
    }
}

/// Twins handed from the store's reader to the thread that files them, at a time.
const LOAD_BATCH: usize = 4096;

/// Reads every twin of `store` into one map per shard, and counts the live ones. Reading the
/// store (its iterator, the keys, the copies) and filing the twins (hashing, the maps, the
/// census) each take about half of the load, so they run on two threads: the store's reader
/// hands batches to the filer.
fn load_shards(
    store: &dyn TwinStore,
    router: &KeyHasher,
    shard_count: usize,
) -> Result<(Vec<TwinRecords>, Tally), EngineError> {
    let (batches, filed) = std::sync::mpsc::sync_channel::<Vec<(TwinKey, EncodedTwin)>>(4);
    std::thread::scope(|scope| {
        let filer = scope.spawn(move || {
            let mut maps: Vec<TwinRecords> =
                (0..shard_count).map(|_| TwinRecords::default()).collect();
            let mut tally = Tally::default();
            for batch in filed {
                for (key, record) in batch {
                    if EncodedTwin::is_live(&record.0) {
                        tally.count(&key);
                    }
                    maps[shard_index(router, &key, shard_count)].insert(key, record);
                }
            }
            (maps, tally)
        });
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        // The store reads keys in order, so a tenant's twins come together: each shares the
        // tenant id of the one before instead of holding a copy of its own.
        let mut tenant: Option<TenantId> = None;
        let read = store.load(&mut |mut key, record| {
            match &tenant {
                Some(shared) if *shared == key.tenant => key.tenant = shared.clone(),
                _ => tenant = Some(key.tenant.clone()),
            }
            batch.push((key, record));
            if batch.len() == LOAD_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH));
                // Fails only when the filer is gone, which its join below reports.
                let _ = batches.send(full);
            }
        });
        let _ = batches.send(batch);
        drop(batches);
        let filed = filer
            .join()
            .map_err(|_| EngineError::TaskFailed("filing the loaded twins"))?;
        read?;
        Ok(filed)
    })
}

/// Drops expired history buckets and settled commands now and then. Runs until aborted.
///
/// Final commands are kept as long as history, and at least as long as the longest time to
/// live: an idempotency key names its command for that long.
async fn enforce_retention(store: Arc<dyn TwinStore>, clock: Arc<dyn Clock>, config: EngineConfig) {
    let millis =
        |duration: std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    let history_ms = millis(config.history_retention);
    let commands_ms = millis(config.history_retention.max(config.commands.max_ttl));
    let mut ticks = tokio::time::interval(
        config
            .retention_check_interval
            .max(std::time::Duration::from_millis(10)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = clock.now();
        let (history_cutoff, commands_cutoff) = (
            now.saturating_sub_ms(history_ms),
            now.saturating_sub_ms(commands_ms),
        );
        let store = store.clone();
        let expired = tokio::task::spawn_blocking(move || {
            Ok::<_, doppel_store::StoreError>((
                store.expire_history(history_cutoff)?,
                store.expire_commands(commands_cutoff)?,
            ))
        })
        .await;
        match expired {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((buckets, commands))) => tracing::info!(
                buckets,
                commands,
                history_before = %history_cutoff,
                commands_before = %commands_cutoff,
                "expired history buckets and settled commands"
            ),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not expire history or commands; will retry")
            }
            Err(err) => tracing::warn!(error = %err, "retention task failed; will retry"),
        }
    }
}

pub(crate) mod query;

#[cfg(test)]
mod tests;
