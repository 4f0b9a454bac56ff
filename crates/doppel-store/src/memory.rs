//! An in-memory backend for unit tests of the layers above. It keeps the same layout and
//! contract as the durable backends but survives only as long as the process.

use crate::commands::{self, CommandQuery, CommandStore, CommandWrite};
use crate::credentials::{self, CredentialStore, StoredCredential};
use crate::layout::{HistoryBuckets, history_key, history_prefix};
use crate::tokens::{self, StoredToken, TokenStore};
use crate::{HistoryQuery, StoreError, TwinStore, TwinWrite, history_filter};
use bytes::Bytes;
use doppel_model::codec::{EncodedHistory, EncodedTwin};
use doppel_model::command::Command;
use doppel_model::{
    DeviceId, HistoryEntry, Millis, ModelError, Principal, TenantId, Twin, TwinKey,
};
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct Inner {
    twins: BTreeMap<Vec<u8>, Bytes>,
    /// Bucket start to that bucket's entries by history key.
    history: BTreeMap<i64, BTreeMap<Vec<u8>, Bytes>>,
    commits: u64,
    /// Credentials by their key, in the same byte form the fjall backend writes.
    credentials: BTreeMap<Vec<u8>, Vec<u8>>,
    /// API tokens by their key, in the same byte form the fjall backend writes.
    tokens: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commands by their key, in the same byte form the fjall backend writes.
    commands: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The settled index, as the fjall backend keeps it.
    settled_commands: BTreeMap<Vec<u8>, ()>,
    /// Set by [`MemoryStore::fail_command_commits`].
    failing_command_commits: bool,
}

/// Cloning shares the data, which is how tests "reopen" it.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    buckets: HistoryBuckets,
}

impl MemoryStore {
    pub fn new(buckets: HistoryBuckets) -> Self {
        Self {
            inner: Arc::default(),
            buckets,
        }
    }

    /// From now on every commit that carries a command fails, as on a broken disk, and changes
    /// nothing: for tests of what a failed command commit does to the hub.
    pub fn fail_command_commits(&self) {
        self.lock().failing_command_commits = true;
    }

    /// How many non-empty commits have been made: lets tests see group commit at work.
    pub fn commit_count(&self) -> u64 {
        self.lock().commits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TwinStore for MemoryStore {
    fn commit_group(
        &self,
        twins: &[TwinWrite],
        commands: &[CommandWrite],
    ) -> Result<(), StoreError> {
        if twins.is_empty() && commands.is_empty() {
            return Ok(());
        }
        let mut inner = self.lock();
        insert_commands(&mut inner, commands)?;
        for write in twins {
            inner
                .twins
                .insert(write.key.to_bytes(), write.twin.0.clone());
            let bucket = inner
                .history
                .entry(self.buckets.start_of(write.recorded_at))
                .or_default();
            bucket.insert(
                history_key(&write.key, write.version),
                write.history.0.clone(),
            );
        }
        inner.commits += 1;
        Ok(())
    }

    fn load(&self, visit: &mut dyn FnMut(TwinKey, EncodedTwin)) -> Result<u64, StoreError> {
        let inner = self.lock();
        for (key, value) in &inner.twins {
            visit(TwinKey::from_bytes(key)?, EncodedTwin(value.clone()));
        }
        Ok(inner.twins.len() as u64)
    }

    fn list(
        &self,
        tenant: &TenantId,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Twin)>, StoreError> {
        let prefix = TwinKey::tenant_prefix(tenant);
        let start = match after {
            Some(device) => {
                Bound::Excluded(TwinKey::new(tenant.clone(), device.clone()).to_bytes())
            }
            None => Bound::Included(prefix.clone()),
        };
        let inner = self.lock();
        inner
            .twins
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(_, value)| EncodedTwin::is_live(value))
            .take(limit)
            .map(|(key, value)| {
                Ok((
                    TwinKey::from_bytes(key)?.device,
                    EncodedTwin::decode(value)?,
                ))
            })
            .collect()
    }

    fn history(
        &self,
        key: &TwinKey,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let inner = self.lock();
        let prefix = history_prefix(key);
        let mut filter = history_filter::Collector::new(query);
        for (start, bucket) in &inner.history {
            if !filter.wants_bucket(*start, start + self.buckets.width_ms) {
                continue;
            }
            for (entry_key, value) in bucket.range(prefix.clone()..) {
                if !entry_key.starts_with(&prefix) {
                    break;
                }
                if filter.offer(EncodedHistory::decode(value)?).is_break() {
                    return Ok(filter.finish());
                }
            }
        }
        Ok(filter.finish())
    }

    fn history_until(
        &self,
        key: &TwinKey,
        at: Millis,
        visit: &mut dyn FnMut(HistoryEntry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let inner = self.lock();
        let prefix = history_prefix(key);
        for (_, bucket) in inner.history.range(..=at.0).rev() {
            for (_, value) in bucket
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let entry = EncodedHistory::decode(value)?;
                if entry.recorded_at <= at && visit(entry).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn expire_history(&self, before: Millis) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let width = self.buckets.width_ms;
        let before_count = inner.history.len();
        inner.history.retain(|start, _| start + width > before.0);
        Ok(before_count - inner.history.len())
    }
}

impl CredentialStore for MemoryStore {
    fn put_credential(&self, credential: &StoredCredential) -> Result<(), StoreError> {
        let key = credentials::credential_key(&credential.principal, &credential.credential_id);
        let value = credentials::encode_value(credential)?;
        self.lock().credentials.insert(key, value);
        Ok(())
    }

    fn delete_credential(
        &self,
        principal: &Principal,
        credential_id: &str,
    ) -> Result<bool, StoreError> {
        let key = credentials::credential_key(principal, credential_id);
        Ok(self.lock().credentials.remove(&key).is_some())
    }

    fn load_credentials(&self, visit: &mut dyn FnMut(StoredCredential)) -> Result<u64, StoreError> {
        let inner = self.lock();
        for (key, value) in &inner.credentials {
            visit(credentials::decode(key, value)?);
        }
        Ok(inner.credentials.len() as u64)
    }
}

impl TokenStore for MemoryStore {
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let (key, value) = tokens::encode(token)?;
        self.lock().tokens.insert(key.to_vec(), value);
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let Some(key) = tokens::token_key(id) else {
            return Ok(false);
        };
        Ok(self.lock().tokens.remove(key).is_some())
    }

    fn load_tokens(&self, visit: &mut dyn FnMut(StoredToken)) -> Result<u64, StoreError> {
        let inner = self.lock();
        for (key, value) in &inner.tokens {
            visit(tokens::decode(key, value)?);
        }
        Ok(inner.tokens.len() as u64)
    }
}

impl CommandStore for MemoryStore {
    fn command(&self, key: &TwinKey, id: &str) -> Result<Option<Command>, StoreError> {
        let record_key = commands::command_key(key, id);
        self.lock()
            .commands
            .get(&record_key)
            .map(|value| commands::decode_command(&record_key, value))
            .transpose()
    }

    fn commands(&self, key: &TwinKey, query: &CommandQuery) -> Result<Vec<Command>, StoreError> {
        let inner = self.lock();
        let records = inner
            .commands
            .range((commands::start_of(key, query), Bound::Unbounded))
            .map(|(key, value)| Ok((key.clone(), value.clone())));
        commands::select(records, &commands::command_prefix(key), query)
    }

    fn expire_commands(&self, before: Millis) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let kept = inner
            .settled_commands
            .split_off(&commands::settled_bound(before));
        let expired = std::mem::replace(&mut inner.settled_commands, kept);
        for key in expired.keys() {
            inner.commands.remove(commands::command_of_settled(key));
        }
        Ok(expired.len())
    }

    fn load_commands(&self, visit: &mut dyn FnMut(TwinKey, Command)) -> Result<u64, StoreError> {
        let inner = self.lock();
        for (key, value) in &inner.commands {
            visit(
                commands::twin_of(key)?,
                commands::decode_command(key, value)?,
            );
        }
        Ok(inner.commands.len() as u64)
    }
}

/// Puts every command of `writes`, and the settled index entry of each final one, in place;
/// or, when told to fail command commits (and there are any), nothing.
fn insert_commands(inner: &mut Inner, writes: &[CommandWrite]) -> Result<(), StoreError> {
    if inner.failing_command_commits && !writes.is_empty() {
        return Err(StoreError::Corrupt(ModelError::CorruptRecord(
            "this store was told to fail command commits".into(),
        )));
    }
    for write in writes {
        let key = commands::command_key(&write.key, &write.id);
        if let Some(settled_at) = write.settled_at {
            inner
                .settled_commands
                .insert(commands::settled_key(settled_at, &key), ());
        }
        inner.commands.insert(key, write.record.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Backend};

    struct MemoryBackend(MemoryStore);

    impl Backend for MemoryBackend {
        type Store = MemoryStore;
        fn open(&self) -> MemoryStore {
            self.0.clone()
        }
    }

    fn backend() -> MemoryBackend {
        MemoryBackend(MemoryStore::new(HistoryBuckets::new(
            conformance::BUCKET_WIDTH_MS,
        )))
    }

    crate::conformance_tests!(backend());
}
