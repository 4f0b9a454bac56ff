use crate::index::IndexedPaths;
use crate::silence::ActivityIntervals;
use doppel_model::Limits;
use doppel_model::command::CommandLimits;
use doppel_model::policy::ReplicaConfig;
use std::sync::Arc;
use std::time::Duration;

/// Default pending requests per shard before callers wait: deep enough to fill large commit
/// groups, shallow enough that a stalled disk pushes back on clients within milliseconds.
pub const DEFAULT_QUEUE_DEPTH: usize = 4096;

/// Default largest group one shard applies before committing: bounds the latency one request
/// can add to the others in its group.
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Default history retention: 30 days, long enough to answer "what changed last month".
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Default history bucket width: one day, so retention drops a day of history at a time.
pub const DEFAULT_HISTORY_BUCKET: Duration = Duration::from_secs(24 * 3600);

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Shards that apply writes in parallel; one per core keeps every core busy without
    /// contention. Each twin is owned by exactly one shard.
    pub shards: usize,
    /// Largest group of requests a shard applies per commit.
    pub max_batch: usize,
    /// Pending requests per shard before callers wait.
    pub queue_depth: usize,
    pub limits: Limits,
    /// How long history is kept; whole buckets older than this are dropped.
    pub history_retention: Duration,
    /// How often expired history is looked for.
    pub retention_check_interval: Duration,
    /// Change events buffered for the slowest subscriber of [`crate::Engine::subscribe`].
    pub event_capacity: usize,
    /// How device commands are bounded and retried.
    pub commands: CommandLimits,
    /// How much of each tenant's change stream is kept for clients that resume, and for how
    /// long once no client watches.
    pub streams: crate::stream::StreamLimits,
    /// The `reported`/`desired` paths fleet queries find by index (tags, connection status,
    /// device type and firmware version always are).
    pub indexed_paths: IndexedPaths,
    /// How long a connected device may stay silent before it is marked UNKNOWN.
    pub activity: ActivityIntervals,
    /// This replica's name and conflict rules (the hub by default; an edge agent names itself).
    pub replica: Arc<ReplicaConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism().map_or(2, usize::from),
            max_batch: DEFAULT_MAX_BATCH,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            limits: Limits::default(),
            history_retention: DEFAULT_HISTORY_RETENTION,
            retention_check_interval: Duration::from_secs(60),
            event_capacity: crate::events::DEFAULT_EVENT_CAPACITY,
            commands: CommandLimits::default(),
            streams: crate::stream::StreamLimits::default(),
            indexed_paths: IndexedPaths::default(),
            activity: ActivityIntervals::default(),
            replica: Arc::new(ReplicaConfig::hub()),
        }
    }
}
