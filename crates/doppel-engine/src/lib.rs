//! The engine: owns concurrency and time; knows nothing of HTTP or MQTT.
//!
//! A twin belongs to one shard (by hash of its key). A shard applies its queued requests in
//! order with the pure model, hands the resulting records to the single committer, and only when
//! the committer reports them durable does it publish the new states to readers and answer the
//! callers. The committer gathers whatever all shards have handed it into one store commit: one
//! fsync for many writes (group commit).

mod census;
mod clock;
mod commands;
mod committer;
pub mod config;
mod engine;
mod error;
mod events;
mod index;
pub mod metric;
mod shard;
pub mod silence;
pub mod stream;
mod task;
pub mod trace;

pub use clock::{Clock, ManualClock, SystemClock};
pub use commands::{CommandEvent, CommandEventKind, CommandQueue, Queued};
pub use committer::Outcome;
pub use config::EngineConfig;
pub use engine::query::{Plan, QueryPage};
pub use engine::{Engine, EngineStats, EngineTasks, PendingUpdate, TwinAt};
pub use error::{EngineError, QuotaError};
pub use events::{DEFAULT_EVENT_CAPACITY, TwinChange};
pub use index::IndexedPaths;
