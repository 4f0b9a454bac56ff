//! Change events: every durable change of a twin, in commit order, for adapters that push
//! changes out (MQTT deltas and documents today; change streams later).

use doppel_model::codec::EncodedTwin;
use doppel_model::{HistoryKind, ModelError, TraceParent, Twin, TwinKey};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::{broadcast, mpsc};

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
    /// The caller's trace context from [`doppel_model::UpdateRequest::trace`], so the messages
    /// and events this change causes join the caller's trace.
    pub trace: Option<TraceParent>,
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

/// Everyone who follows twin changes.
pub(crate) type ChangeFeeds = Feeds<TwinChange>;

/// Everyone who follows a kind of event: broadcast subscribers, who may fall behind and miss
/// some, and followers, who never miss one because writes wait for them.
pub(crate) struct Feeds<E> {
    broadcast: broadcast::Sender<E>,
    followers: RwLock<Vec<mpsc::Sender<E>>>,
}

impl<E: Clone> Feeds<E> {
    pub(crate) fn new(broadcast_capacity: usize) -> Feeds<E> {
        Feeds {
            broadcast: broadcast::channel(broadcast_capacity.max(1)).0,
            followers: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<E> {
        self.broadcast.subscribe()
    }

    pub(crate) fn follow(&self, capacity: usize) -> mpsc::Receiver<E> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        self.followers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        receiver
    }

    /// Whether anyone listens: when nobody does, changes are not even assembled.
    pub(crate) fn has_listeners(&self) -> bool {
        self.broadcast.receiver_count() > 0
            || !self
                .followers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Hands `changes` to every listener, in order; waits while a follower's queue is full.
    pub(crate) async fn publish(&self, changes: Vec<E>) {
        for change in &changes {
            // No subscriber left is not an error: nobody is listening right now.
            let _ = self.broadcast.send(change.clone());
        }
        let followers = self
            .followers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut gone = false;
        for follower in &followers {
            for change in &changes {
                if follower.send(change.clone()).await.is_err() {
                    gone = true;
                    break;
                }
            }
        }
        if gone {
            self.followers
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|follower| !follower.is_closed());
        }
    }
}
