//! A connection's requests in flight: the publish hook hands each request's answer in and
//! returns, so that rmqtt reads the connection's next message (and sends the PUBACK) while the
//! request commits; the answers still go out one after another in the order of the requests.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Semaphore, oneshot};

/// Requests one connection may have in flight before its publish hook waits for the oldest
/// answer. While it waits rmqtt reads nothing more from the connection, so a client that
/// streams faster than the hub commits is held back by TCP instead of queueing without bound.
/// It is five times the 20 in flight `mosquitto_pub -l` keeps, and enough for one connection to
/// fill the engine's group commits.
pub(crate) const MAX_IN_FLIGHT: usize = 128;

/// The answers of one connection still to be sent, in order.
pub(crate) struct Pipeline {
    /// Fires once the last answer handed in is sent.
    last: Mutex<Option<oneshot::Receiver<()>>>,
    in_flight: Arc<Semaphore>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            last: Mutex::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Pipeline {
    /// Runs `answer` once every answer handed in before it has run. Returns as soon as it is
    /// queued, unless [`MAX_IN_FLIGHT`] are already waiting: then once the oldest is sent.
    pub(crate) async fn then(&self, answer: impl Future<Output = ()> + Send + 'static) {
        // The semaphore is never closed; were it, the answer would simply not be held back.
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        let (sent, next) = oneshot::channel();
        let previous = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(next);
        tokio::spawn(async move {
            if let Some(previous) = previous {
                // An error only means the previous answer's task panicked: its turn is over.
                let _ = previous.await;
            }
            answer.await;
            drop(permit);
            let _ = sent.send(());
        });
    }

    /// Waits until every answer handed in has been sent: a request served inline (a sync, a
    /// command ack) then follows the connection's earlier requests, as they were sent.
    pub(crate) async fn drained(&self) {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(last) = last {
            let _ = last.await;
        }
    }
}

#[cfg(test)]
mod tests;
