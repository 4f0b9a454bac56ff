//! Durable storage of device command queues.
//!
//! [`CommandStore`] keeps every command with its whole life (status, transitions, result). The
//! engine keeps the open commands in memory and writes each change through; the store answers
//! listings and lookups of any command, open or final, and hands everything back at start. Both
//! backends use the key form defined here, so they agree.

use crate::StoreError;
use doppel_model::ModelError;
use doppel_model::command::{Command, CommandStatus};
use doppel_model::id::KEY_SEPARATOR;
use doppel_model::{Millis, TwinKey};

/// One command's new record as it goes to disk, encoded by the caller.
#[derive(Clone, Debug)]
pub struct CommandWrite {
    pub key: TwinKey,
    pub id: String,
    /// The whole command, as [`encode_command`] writes it.
    pub record: Vec<u8>,
    /// When the command became final, if it is: retention counts from here.
    pub settled_at: Option<Millis>,
}

impl CommandWrite {
    pub fn new(key: &TwinKey, command: &Command) -> Result<Self, StoreError> {
        let settled_at = command
            .status
            .is_final()
            .then(|| command.transitions.last().map(|step| step.at))
            .flatten();
        Ok(Self {
            key: key.clone(),
            id: command.id.clone(),
            record: encode_command(command)?,
            settled_at,
        })
    }
}

/// Which of one device's commands to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandQuery {
    pub status: Option<CommandStatus>,
    /// Only commands with a greater id: the cursor of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

/// A durable home for command queues.
///
/// # The contract (every backend, checked by [`conformance`](crate::conformance))
/// - **Durability:** a commit of command writes (`TwinStore::commit_group`, or its shorthand
///   `TwinStore::commit_commands`) returns `Ok` only once every write in it is on stable
///   storage; after a crash the store holds every committed write, and none of a commit that
///   returned `Err` may be assumed durable.
/// - **Atomicity:** the writes of one commit become visible and durable together.
/// - **Identity:** a command is identified by its twin key and id; a later write of the same
///   command replaces it. Two devices' commands never mix, even with the same id.
/// - **Order:** `commands` lists one device's commands in id order (ids are time-ordered).
/// - **Loading:** `load_commands` visits every stored command exactly once.
/// - **Retention:** `expire_commands(before)` deletes every final command that became final
///   before `before`, visiting only those (not every command), and never an open one.
pub trait CommandStore: Send + Sync + 'static {
    /// One command of one device.
    fn command(&self, key: &TwinKey, id: &str) -> Result<Option<Command>, StoreError>;

    /// One device's commands in id order, filtered by `query`.
    fn commands(&self, key: &TwinKey, query: &CommandQuery) -> Result<Vec<Command>, StoreError>;

    /// Visits every stored command, to rebuild the queues at start. Returns how many.
    fn load_commands(&self, visit: &mut dyn FnMut(TwinKey, Command)) -> Result<u64, StoreError>;

    /// Deletes the commands that became final before `before`. Returns how many.
    fn expire_commands(&self, before: Millis) -> Result<usize, StoreError>;
}

/// The key of a final command in the settled index: `settled_at(big-endian, sign flipped) ++
/// command key`, so the commands that settled first come first and expiry reads only those.
pub(crate) fn settled_key(settled_at: Millis, command_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + command_key.len());
    bytes.extend_from_slice(&sortable(settled_at));
    bytes.extend_from_slice(command_key);
    bytes
}

/// The first settled-index key at or after `at`.
pub(crate) fn settled_bound(at: Millis) -> Vec<u8> {
    sortable(at).to_vec()
}

/// The command key a settled-index key points at.
pub(crate) fn command_of_settled(settled_key: &[u8]) -> &[u8] {
    settled_key.get(8..).unwrap_or_default()
}

fn sortable(at: Millis) -> [u8; 8] {
    ((at.0 as u64) ^ (1 << 63)).to_be_bytes()
}

/// The storage key: `twin key 0x00 command id`. Ids cannot contain 0x00, so one device's
/// commands are a contiguous range in id order.
pub(crate) fn command_key(key: &TwinKey, id: &str) -> Vec<u8> {
    let mut bytes = command_prefix(key);
    bytes.extend_from_slice(id.as_bytes());
    bytes
}

/// The prefix shared by every command key of one device.
pub(crate) fn command_prefix(key: &TwinKey) -> Vec<u8> {
    let mut bytes = key.to_bytes();
    bytes.push(KEY_SEPARATOR);
    bytes
}

/// The twin key a command key starts with.
pub(crate) fn twin_of(command_key: &[u8]) -> Result<TwinKey, StoreError> {
    let end = command_key
        .iter()
        .rposition(|b| *b == KEY_SEPARATOR)
        .ok_or_else(|| corrupt(command_key, "the key has no command id"))?;
    Ok(TwinKey::from_bytes(&command_key[..end])?)
}

pub(crate) fn encode_command(command: &Command) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(command).map_err(|err| {
        StoreError::Corrupt(ModelError::CorruptRecord(format!(
            "cannot encode command {}: {err}",
            command.id
        )))
    })
}

pub(crate) fn decode_command(key: &[u8], value: &[u8]) -> Result<Command, StoreError> {
    serde_json::from_slice(value).map_err(|err| corrupt(key, &err.to_string()))
}

fn corrupt(key: &[u8], what: &str) -> StoreError {
    StoreError::Corrupt(ModelError::CorruptRecord(format!(
        "command {}: {what}",
        String::from_utf8_lossy(key)
    )))
}

/// Where a listing of one device's commands starts: after the cursor, or at the first.
pub(crate) fn start_of(key: &TwinKey, query: &CommandQuery) -> std::ops::Bound<Vec<u8>> {
    match &query.after {
        Some(after) => std::ops::Bound::Excluded(command_key(key, after)),
        None => std::ops::Bound::Included(command_prefix(key)),
    }
}

/// Applies `query` to records read in key order from [`start_of`], stopping at the end of the
/// device's range.
pub(crate) fn select(
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
    prefix: &[u8],
    query: &CommandQuery,
) -> Result<Vec<Command>, StoreError> {
    let mut found = Vec::new();
    for record in records {
        if found.len() >= query.limit {
            break;
        }
        let (key, value) = record?;
        if !key.starts_with(prefix) {
            break;
        }
        let command = decode_command(&key, &value)?;
        if query.status.is_none_or(|status| status == command.status) {
            found.push(command);
        }
    }
    Ok(found)
}
