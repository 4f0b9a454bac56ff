//! Change events: every durable change of a twin, in commit order, for adapters that push
//! changes out (MQTT deltas and documents today; change streams later).

use doppel_model::codec::EncodedTwin;
use doppel_model::{HistoryKind, ModelError, TraceParent, Twin, TwinKey};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
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
    broadcast_capacity: usize,
    /// Made by the first subscriber: a broadcast channel allocates its whole ring at once (10 MB
    /// of twin changes at the default capacity), and a hub whose feeds are all followers never
    /// subscribes. A subscriber sees only what is sent after it subscribed either way.
    broadcast: OnceLock<broadcast::Sender<E>>,
    followers: RwLock<Vec<mpsc::Sender<E>>>,
}

impl<E: Clone> Feeds<E> {
    pub(crate) fn new(broadcast_capacity: usize) -> Feeds<E> {
        Feeds {
            broadcast_capacity: broadcast_capacity.max(1),
            broadcast: OnceLock::new(),
            followers: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<E> {
        self.broadcast
            .get_or_init(|| broadcast::channel(self.broadcast_capacity).0)
            .subscribe()
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
        self.broadcast
            .get()
            .is_some_and(|broadcast| broadcast.receiver_count() > 0)
            || !self
                .followers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Hands `changes` to every listener, in order; waits while a follower's queue is full.
    pub(crate) async fn publish(&self, changes: Vec<E>) {
        if let Some(broadcast) = self.broadcast.get() {
            for change in &changes {
                // No subscriber left is not an error: nobody is listening right now.
                let _ = broadcast.send(change.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::Feeds;

    #[tokio::test]
    async fn the_broadcast_ring_is_made_by_the_first_subscriber() {
        let feeds: Feeds<u32> = Feeds::new(8);
        feeds.publish(vec![1]).await;
        assert!(feeds.broadcast.get().is_none(), "nobody subscribed");
        assert!(!feeds.has_listeners());

        let mut subscriber = feeds.subscribe();
        assert!(feeds.has_listeners());
        feeds.publish(vec![2, 3]).await;
        assert_eq!(subscriber.try_recv().expect("the first change"), 2);
        assert_eq!(subscriber.try_recv().expect("the second change"), 3);
        assert!(subscriber.try_recv().is_err(), "nothing else");
    }
}
