//! The embedded default backend: fjall, a pure-Rust LSM tree.
//!
//! Layout: keyspace `twins` maps a twin key to its encoded record; history lives in one keyspace
//! per time bucket, named `history.<start ms>.<width ms>`, so retention deletes whole keyspaces.
//! One `commit` is one fjall write batch followed by one `persist(SyncAll)`. Keyspace
//! `credentials` holds password hashes (see [`crate::credentials`] for its key and value); each
//! credential change is persisted the same way before it returns. Keyspace `tokens` holds the
//! hashes of API tokens by token id (see [`crate::tokens`]), persisted the same way.

use crate::commands::{self, CommandQuery, CommandStore, CommandWrite};
use crate::credentials::{self, CredentialStore, StoredCredential};
use crate::layout::{HistoryBuckets, history_key, history_prefix};
use crate::tokens::{self, StoredToken, TokenStore};
use crate::{HistoryQuery, StoreError, TwinStore, TwinWrite, history_filter};
use bytes::Bytes;
use doppel_model::codec::{EncodedHistory, EncodedTwin};
use doppel_model::command::Command;
use doppel_model::{DeviceId, HistoryEntry, Millis, Principal, TenantId, Twin, TwinKey};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock};

const TWINS_KEYSPACE: &str = "twins";
const CREDENTIALS_KEYSPACE: &str = "credentials";
const TOKENS_KEYSPACE: &str = "tokens";
const COMMANDS_KEYSPACE: &str = "commands";
const SETTLED_COMMANDS_KEYSPACE: &str = "commands.settled";
const HISTORY_KEYSPACE_PREFIX: &str = "history.";

/// How much journal fjall keeps before it flushes the memtables the oldest journal holds, so
/// that it can be dropped. Every start replays the journal (after a clean stop too), at about
/// 150 MB/s here, so this bounds how long a start takes beyond reading the twins, however long
/// the hub ran. fjall's default is 512 MiB (3.5 s of replay); 64 MiB is the least it accepts,
/// and its memtables flush at 64 MiB each anyway.
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// One history bucket: its keyspace and where its span ends (exclusive).
#[derive(Clone)]
struct Bucket {
    end: i64,
    keyspace: Keyspace,
}

pub struct FjallStore {
    db: Database,
    twins: Keyspace,
    /// Width of buckets created from now on; buckets made with another width keep their own.
    buckets: HistoryBuckets,
    /// History buckets by start instant. Commits and reads hold the read lock, so retention
    /// (which takes the write lock) never deletes a bucket under a running commit.
    history: RwLock<BTreeMap<i64, Bucket>>,
    credentials: Keyspace,
    tokens: Keyspace,
    /// Held across each credential or token change, from reading whether it exists to its
    /// fsync, so that a delete answers exactly even when calls on one record race. These
    /// changes are rare (an operator's), so serialising them costs nothing that matters.
    rare_writes: Mutex<()>,
    commands: Keyspace,
    /// Final commands by when they settled, for retention.
    settled_commands: Keyspace,
}

impl FjallStore {
    /// Opens (or creates) the store in `path`, recovering the journal after a crash.
    pub fn open(path: &Path, buckets: HistoryBuckets) -> Result<Self, StoreError> {
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()?;
        let twins = db.keyspace(TWINS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let credentials = db.keyspace(CREDENTIALS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let tokens = db.keyspace(TOKENS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let commands = db.keyspace(COMMANDS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let settled_commands =
            db.keyspace(SETTLED_COMMANDS_KEYSPACE, KeyspaceCreateOptions::default)?;
        let mut history = BTreeMap::new();
        for name in db.list_keyspace_names() {
            let name: &str = name.as_ref();
            let Some((start, width)) = parse_bucket_name(name) else {
                continue;
            };
            let keyspace = db.keyspace(name, KeyspaceCreateOptions::default)?;
            history.insert(
                start,
                Bucket {
                    end: start.saturating_add(width),
                    keyspace,
                },
            );
        }
        tracing::debug!(path = %path.display(), buckets = history.len(), "opened fjall store");
        Ok(Self {
            db,
            twins,
            buckets,
            history: RwLock::new(history),
            credentials,
            tokens,
            rare_writes: Mutex::new(()),
            commands,
            settled_commands,
        })
    }

    /// Puts every command of `writes`, and the settled index entry of each final one, into
    /// `batch`.
    fn add_commands(&self, batch: &mut fjall::OwnedWriteBatch, writes: &[CommandWrite]) {
        for write in writes {
            let key = commands::command_key(&write.key, &write.id);
            if let Some(settled_at) = write.settled_at {
                batch.insert(
                    &self.settled_commands,
                    commands::settled_key(settled_at, &key),
                    [],
                );
            }
            batch.insert(&self.commands, key, write.record.as_slice());
        }
    }

    /// Creates the buckets that `writes` need and do not have yet.
    fn ensure_buckets(&self, writes: &[TwinWrite]) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let history = self.history.read().unwrap_or_else(PoisonError::into_inner);
            let mut starts: Vec<i64> = writes
                .iter()
                .map(|w| self.buckets.start_of(w.recorded_at))
                .filter(|start| !covered(&history, *start))
                .collect();
            starts.dedup();
            starts
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut history = self.history.write().unwrap_or_else(PoisonError::into_inner);
        for start in missing {
            if covered(&history, start) {
                continue;
            }
            let name = format!("{HISTORY_KEYSPACE_PREFIX}{start}.{}", self.buckets.width_ms);
            let keyspace = self.db.keyspace(&name, KeyspaceCreateOptions::default)?;
            history.insert(
                start,
                Bucket {
                    end: start + self.buckets.width_ms,
                    keyspace,
                },
            );
        }
        Ok(())
    }

    /// Writes one credential or token record and persists it before returning: the registry
    /// acknowledges the change after this returns, a promise of durability.
    fn insert_synced(
        &self,
        keyspace: &Keyspace,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let _serialised = self
            .rare_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        keyspace.insert(key, value)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Removes one credential or token record and persists that. Returns whether it existed,
    /// exactly: the check and the removal happen under one hold of `rare_writes`.
    fn remove_synced(&self, keyspace: &Keyspace, key: &[u8]) -> Result<bool, StoreError> {
        let _serialised = self
            .rare_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !keyspace.contains_key(key)? {
            return Ok(false);
        }
        keyspace.remove(key)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(true)
    }
}

/// Whether a bucket holds the instant `at`.
fn covered(history: &BTreeMap<i64, Bucket>, at: i64) -> bool {
    bucket_at(history, at).is_some()
}

fn bucket_at(history: &BTreeMap<i64, Bucket>, at: i64) -> Option<&Bucket> {
    history
        .range(..=at)
        .next_back()
        .map(|(_, bucket)| bucket)
        .filter(|bucket| at < bucket.end)
}

fn parse_bucket_name(name: &str) -> Option<(i64, i64)> {
    let (start, width) = name
        .strip_prefix(HISTORY_KEYSPACE_PREFIX)?
        .split_once('.')?;
    Some((start.parse().ok()?, width.parse().ok()?))
}

impl TwinStore for FjallStore {
    fn commit_group(
        &self,
        twins: &[TwinWrite],
        commands: &[CommandWrite],
    ) -> Result<(), StoreError> {
        if twins.is_empty() && commands.is_empty() {
            return Ok(());
        }
        self.ensure_buckets(twins)?;
        let history = self.history.read().unwrap_or_else(PoisonError::into_inner);
        let mut batch = self.db.batch();
        for write in twins {
            batch.insert(&self.twins, write.key.to_bytes(), &*write.twin.0);
            let bucket = bucket_at(&history, write.recorded_at.0).ok_or_else(|| {
                doppel_model::ModelError::CorruptRecord(format!(
                    "no history bucket for {}",
                    write.recorded_at
                ))
            })?;
            batch.insert(
                &bucket.keyspace,
                history_key(&write.key, write.version),
                &*write.history.0,
            );
        }
        self.add_commands(&mut batch, commands);
        batch.commit()?;
        // The acknowledgement the engine sends after this returns is a promise of durability.
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn load(&self, visit: &mut dyn FnMut(TwinKey, EncodedTwin)) -> Result<u64, StoreError> {
        let mut count = 0;
        for guard in self.twins.iter() {
            let (key, value) = guard.into_inner()?;
            visit(
                TwinKey::from_bytes(&key)?,
                EncodedTwin(Bytes::copy_from_slice(&value)),
            );
            count += 1;
        }
        Ok(count)
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
        let mut page = Vec::new();
        for guard in self.twins.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if page.len() >= limit {
                break;
            }
            let (key, value) = guard.into_inner()?;
            if !key.starts_with(&prefix) {
                break;
            }
            if EncodedTwin::is_live(&value) {
                page.push((
                    TwinKey::from_bytes(&key)?.device,
                    EncodedTwin::decode(&value)?,
                ));
            }
        }
        Ok(page)
    }

    fn history(
        &self,
        key: &TwinKey,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let history = self.history.read().unwrap_or_else(PoisonError::into_inner);
        let prefix = history_prefix(key);
        let first_key = history_key(key, query.after_version.map_or(0, |v| v.saturating_add(1)));
        let mut filter = history_filter::Collector::new(query);
        for (start, bucket) in history.iter() {
            if !filter.wants_bucket(*start, bucket.end) {
                continue;
            }
            for guard in bucket
                .keyspace
                .range::<Vec<u8>, _>((Bound::Included(first_key.clone()), Bound::Unbounded))
            {
                let (entry_key, value) = guard.into_inner()?;
                if !entry_key.starts_with(&prefix) {
                    break;
                }
                if filter.offer(EncodedHistory::decode(&value)?).is_break() {
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
        let history = self.history.read().unwrap_or_else(PoisonError::into_inner);
        let prefix = history_prefix(key);
        for (_, bucket) in history.range(..=at.0).rev() {
            for guard in bucket.keyspace.prefix(&prefix).rev() {
                let (_, value) = guard.into_inner()?;
                let entry = EncodedHistory::decode(&value)?;
                if entry.recorded_at <= at && visit(entry).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn expire_history(&self, before: Millis) -> Result<usize, StoreError> {
        let mut history = self.history.write().unwrap_or_else(PoisonError::into_inner);
        let expired: Vec<i64> = history
            .iter()
            .filter(|(_, b)| b.end <= before.0)
            .map(|(start, _)| *start)
            .collect();
        for start in &expired {
            if let Some(bucket) = history.remove(start) {
                self.db.delete_keyspace(bucket.keyspace)?;
            }
        }
        Ok(expired.len())
    }
}

impl CredentialStore for FjallStore {
    fn put_credential(&self, credential: &StoredCredential) -> Result<(), StoreError> {
        let key = credentials::credential_key(&credential.principal, &credential.credential_id);
        let value = credentials::encode_value(credential)?;
        self.insert_synced(&self.credentials, &key, value)
    }

    fn delete_credential(
        &self,
        principal: &Principal,
        credential_id: &str,
    ) -> Result<bool, StoreError> {
        let key = credentials::credential_key(principal, credential_id);
        self.remove_synced(&self.credentials, &key)
    }

    fn load_credentials(&self, visit: &mut dyn FnMut(StoredCredential)) -> Result<u64, StoreError> {
        let mut count = 0;
        for guard in self.credentials.iter() {
            let (key, value) = guard.into_inner()?;
            visit(credentials::decode(&key, &value)?);
            count += 1;
        }
        Ok(count)
    }
}

impl TokenStore for FjallStore {
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let (key, value) = tokens::encode(token)?;
        self.insert_synced(&self.tokens, key, value)
    }

    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        match tokens::token_key(id) {
            Some(key) => self.remove_synced(&self.tokens, key),
            None => Ok(false),
        }
    }

    fn load_tokens(&self, visit: &mut dyn FnMut(StoredToken)) -> Result<u64, StoreError> {
        let mut count = 0;
        for guard in self.tokens.iter() {
            let (key, value) = guard.into_inner()?;
            visit(tokens::decode(&key, &value)?);
            count += 1;
        }
        Ok(count)
    }
}

impl CommandStore for FjallStore {
    fn command(&self, key: &TwinKey, id: &str) -> Result<Option<Command>, StoreError> {
        let record_key = commands::command_key(key, id);
        self.commands
            .get(&record_key)?
            .map(|value| commands::decode_command(&record_key, &value))
            .transpose()
    }

    fn commands(&self, key: &TwinKey, query: &CommandQuery) -> Result<Vec<Command>, StoreError> {
        let records = self
            .commands
            .range::<Vec<u8>, _>((commands::start_of(key, query), Bound::Unbounded))
            .map(|guard| {
                let (key, value) = guard.into_inner()?;
                Ok((key.to_vec(), value.to_vec()))
            });
        commands::select(records, &commands::command_prefix(key), query)
    }

    fn expire_commands(&self, before: Millis) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        let mut expired = 0;
        for guard in self
            .settled_commands
            .range(..commands::settled_bound(before))
        {
            let key = guard.key()?;
            batch.remove(&self.commands, commands::command_of_settled(&key));
            batch.remove(&self.settled_commands, key);
            expired += 1;
        }
        // Not fsynced: a deletion lost in a crash is made again by the next expiry.
        batch.commit()?;
        Ok(expired)
    }

    fn load_commands(&self, visit: &mut dyn FnMut(TwinKey, Command)) -> Result<u64, StoreError> {
        let mut count = 0;
        for guard in self.commands.iter() {
            let (key, value) = guard.into_inner()?;
            visit(
                commands::twin_of(&key)?,
                commands::decode_command(&key, &value)?,
            );
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Backend};

    struct FjallBackend {
        dir: tempfile::TempDir,
    }

    impl Backend for FjallBackend {
        type Store = FjallStore;
        fn open(&self) -> FjallStore {
            FjallStore::open(
                self.dir.path(),
                HistoryBuckets::new(conformance::BUCKET_WIDTH_MS),
            )
            .unwrap()
        }
    }

    fn backend() -> FjallBackend {
        FjallBackend {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    crate::conformance_tests!(backend());

    fn journal_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("the store's folder lists")
            .filter(|entry| {
                entry
                    .as_ref()
                    .expect("a folder entry")
                    .path()
                    .extension()
                    .is_some_and(|ext| ext == "jnl")
            })
            .count()
    }

    /// A keyspace written once (the first admin token) holds on to the journal it was written
    /// in until its memtable is flushed, and with it every later journal: without the bound the
    /// journal grew to fjall's 512 MiB, all of it replayed at every start.
    #[test]
    fn the_journal_stays_bounded_while_a_keyspace_written_once_waits() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store =
            FjallStore::open(dir.path(), HistoryBuckets::new(3_600_000)).expect("the store opens");
        store
            .put_token(&conformance::token("admin", 1, None, None))
            .expect("a token is stored");
        // Four times the bound, in records below the size fjall compresses in its journal.
        let record: Vec<u8> = (0..3 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let record = Bytes::from(record);
        let writes_per_commit = 256;
        let commits = 4 * MAX_JOURNAL_BYTES as usize / (record.len() * writes_per_commit);
        let entry = conformance::desired_write(&conformance::key("t", "d"), 1, 1, 1).history;
        for commit in 0..commits {
            let writes: Vec<TwinWrite> = (0..writes_per_commit)
                .map(|i| TwinWrite {
                    key: conformance::key("t", &format!("d{commit}-{i}")),
                    twin: EncodedTwin(record.clone()),
                    version: 1,
                    recorded_at: Millis(1),
                    history: entry.clone(),
                })
                .collect();
            store.commit(&writes).expect("a commit");
        }
        // fjall drops journals in its background workers; give them a bounded while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while journal_files(dir.path()) > 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let journals = journal_files(dir.path());
        assert!(
            journals <= 3,
            "{journals} journal files of 64 MB after writing {} MB",
            (commits * writes_per_commit * record.len()) >> 20
        );
        drop(store);
        let store =
            FjallStore::open(dir.path(), HistoryBuckets::new(3_600_000)).expect("the store opens");
        assert_eq!(
            store.load_tokens(&mut |_| {}).expect("tokens load"),
            1,
            "the token survives"
        );
    }

    #[test]
    fn bucket_names_parse_back() {
        assert_eq!(parse_bucket_name("history.-1000.500"), Some((-1000, 500)));
        assert_eq!(parse_bucket_name("twins"), None);
        assert_eq!(parse_bucket_name("history.x.1"), None);
    }

    #[test]
    fn buckets_of_an_older_width_are_still_read_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let key = conformance::key("t", "d");
        {
            let store = FjallStore::open(dir.path(), HistoryBuckets::new(10_000)).unwrap();
            store
                .commit(&[conformance::desired_write(&key, 1, 5_000, 1)])
                .unwrap();
        }
        let store = FjallStore::open(dir.path(), HistoryBuckets::new(1_000)).unwrap();
        store
            .commit(&[conformance::desired_write(&key, 2, 12_500, 2)])
            .unwrap();
        let all = store.history(&key, &conformance::all_history()).unwrap();
        assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.expire_history(Millis(10_000)).unwrap(), 1);
        assert_eq!(
            store
                .history(&key, &conformance::all_history())
                .unwrap()
                .len(),
            1
        );
    }
}
