//! Change events: every durable change of a twin, in commit order, for adapters that push
//! changes out (MQTT deltas and documents today; change streams later).

use doppel_model::codec::EncodedTwin;
use doppel_model::{HistoryKind, ModelError, Twin, TwinKey};
use std::sync::Arc;

/// Default events buffered for the slowest subscriber before it starts missing some: a few
/// seconds of a busy hub's writes.
pub const DEFAULT_EVENT_CAPACITY: usize = 65_536;

/// One durable change of one twin. Sent after the change is durable and visible to readers, in
/// the order the twin's changes were applied.
#[derive(Clone, Debug)]
pub struct TwinChange {
    pub key: TwinKey,
    pub kind: HistoryKind,
    /// The twin's record before the change, still encoded: decoding it costs as much as the
    /// change itself and only some subscribers need it. `None` when the twin did not exist.
    pub previous: Option<EncodedTwin>,
    /// The twin after the change (a tombstone after a delete).
    pub current: Arc<Twin>,
    /// The caller's opaque token from [`doppel_model::UpdateRequest::client_token`].
    pub client_token: Option<Arc<str>>,
}

impl TwinChange {
    /// The live twin before the change, if there was one.
    pub fn previous_twin(&self) -> Result<Option<Twin>, ModelError> {
        match &self.previous {
            Some(record) => Ok(EncodedTwin::decode(&record.0)?.live().cloned()),
            None => Ok(None),
        }
    }
}
