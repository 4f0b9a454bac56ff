//! Durable storage of twins and their history.
//!
//! [`TwinStore`] is the seam between the engine and a storage backend. Its contract is written on
//! the trait and checked by the [`conformance`] suite, which every backend runs: the embedded
//! [`FjallStore`] (the default) and the in-memory [`MemoryStore`] (for unit tests only).
//! [`CredentialStore`] keeps the password hashes of devices and applications beside the twins,
//! under the same kind of contract and suite, [`TokenStore`] the hashes of API tokens, and
//! [`CommandStore`] the devices' command queues.
//! Every twin store is a command store too: a device's commands live beside its twin.

mod commands;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod credentials;
mod error;
mod fjall_store;
mod history_filter;
mod layout;
mod memory;
mod tokens;

pub use commands::{CommandQuery, CommandStore, CommandWrite};
pub use credentials::{CredentialStore, StoredCredential};
pub use error::StoreError;
pub use fjall_store::FjallStore;
pub use layout::HistoryBuckets;
pub use memory::MemoryStore;
pub use tokens::{MAX_TOKEN_ID_BYTES, StoredToken, TOKEN_HASH_BYTES, TokenStore};

use doppel_model::codec::{EncodedHistory, EncodedTwin};
use doppel_model::{DeviceId, HistoryEntry, HistoryKind, Millis, TenantId, Twin, TwinKey};
use std::ops::ControlFlow;

/// One twin's change as it goes to disk: the twin's new record and the history entry recording
/// the change. Encoded by the caller so that the expensive part runs on the caller's threads.
#[derive(Clone, Debug)]
pub struct TwinWrite {
    pub key: TwinKey,
    /// The whole new twin record (a live twin or a tombstone).
    pub twin: EncodedTwin,
    /// The document version the change produced; orders the twin's history.
    pub version: u64,
    /// When the change was recorded; decides which history bucket holds the entry.
    pub recorded_at: Millis,
    pub history: EncodedHistory,
}

impl TwinWrite {
    /// The write of `twin` under `key` with `entry`, the history entry of its change.
    pub fn of(key: &TwinKey, twin: &Twin, entry: &HistoryEntry) -> TwinWrite {
        TwinWrite {
            key: key.clone(),
            twin: EncodedTwin::encode(twin),
            version: entry.version,
            recorded_at: entry.recorded_at,
            history: EncodedHistory::encode(entry),
        }
    }
}

/// Which history entries of one twin to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    pub kind: Option<HistoryKind>,
    /// Only entries recorded at or after this instant.
    pub from: Option<Millis>,
    /// Only entries recorded at or before this instant.
    pub to: Option<Millis>,
    /// Only entries with a greater version: the cursor of the previous page.
    pub after_version: Option<u64>,
    pub limit: usize,
}

/// A durable home for twins and their history.
///
/// # The contract (every backend, checked by [`conformance`])
/// - **Durability:** `commit` returns `Ok` only once every write in it is on stable storage
///   (fsync or equivalent); after a crash the store holds every committed write.
/// - **Atomicity:** the writes of one `commit` become visible and durable together or not at all.
/// - **Order:** a later commit of the same key wins; history entries of one twin are returned in
///   version order whatever order they were committed in.
/// - **Tombstones:** a tombstone record is returned by `load` (its version matters) but never by
///   `list`.
/// - **Retention:** history is kept in time buckets; `expire_history(before)` drops every bucket
///   whose whole span ends at or before `before`, without visiting individual entries, and never
///   an entry recorded at or after `before`.
/// - **Errors:** an `Err` from `commit` means nothing of it may be assumed durable, and the
///   caller must not acknowledge any of its writes.
/// - **One commit for all:** `commit_group` holds to these rules for twin and command writes
///   together: one batch, one fsync, one outcome.
pub trait TwinStore: CommandStore + Send + Sync + 'static {
    /// Writes the twin records and history entries of `writes` atomically and durably.
    fn commit(&self, writes: &[TwinWrite]) -> Result<(), StoreError> {
        self.commit_group(writes, &[])
    }

    /// Writes the commands of `writes` atomically and durably.
    fn commit_commands(&self, writes: &[CommandWrite]) -> Result<(), StoreError> {
        self.commit_group(&[], writes)
    }

    /// Writes `twins` and `commands` as one atomic, durable commit: the engine's one group
    /// committer gathers the shards' twin writes and the command workers' writes into it.
    fn commit_group(
        &self,
        twins: &[TwinWrite],
        commands: &[CommandWrite],
    ) -> Result<(), StoreError>;

    /// Visits every stored twin record, tombstones included, to rebuild memory at start. Records
    /// are handed over encoded, so that start-up does not pay for decoding every twin. Returns
    /// how many were visited.
    fn load(&self, visit: &mut dyn FnMut(TwinKey, EncodedTwin)) -> Result<u64, StoreError>;

    /// Live twins of `tenant` in device-id order, starting after `after`, at most `limit`.
    fn list(
        &self,
        tenant: &TenantId,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Twin)>, StoreError>;

    /// History entries of one twin, oldest first, filtered by `query`.
    fn history(&self, key: &TwinKey, query: &HistoryQuery)
    -> Result<Vec<HistoryEntry>, StoreError>;

    /// Visits the history of one twin recorded at or before `at`, newest first, until `visit`
    /// breaks.
    fn history_until(
        &self,
        key: &TwinKey,
        at: Millis,
        visit: &mut dyn FnMut(HistoryEntry) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Drops every history bucket that ends at or before `before`. Returns how many were dropped.
    fn expire_history(&self, before: Millis) -> Result<usize, StoreError>;
}
