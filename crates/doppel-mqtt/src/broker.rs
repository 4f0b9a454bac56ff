//! What the request handlers (shadow service, commands, sync) need of the broker, and nothing
//! more: they take a [`Broker`] rather than the broker's whole context, so that they can be
//! tested without a live broker and so that they import nothing that imports them.

use doppel_engine::Engine;
use doppel_model::{Limits, Millis, TenantId, TraceParent, TwinKey};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::{PoisonError, RwLock};

#[cfg(test)]
pub(crate) mod fake;

/// The broker as the handlers see it. Topics are as a tenant's clients see them (unmounted).
pub(crate) trait Broker: Send + Sync + 'static {
    /// Publishes `body` to `topic` for `tenant`'s clients, at QoS 1 (capped by each
    /// subscription's QoS). `trace` is the W3C trace context of the request or change that
    /// caused it; MQTT 5 subscribers get it as a user property.
    fn publish_traced(
        &self,
        tenant: &TenantId,
        topic: &str,
        body: &(impl Serialize + Sync),
        trace: Option<&TraceParent>,
    ) -> impl Future<Output = ()> + Send;

    /// [`Broker::publish_traced`] for a message that no traced request caused.
    fn publish(
        &self,
        tenant: &TenantId,
        topic: &str,
        body: &Value,
    ) -> impl Future<Output = ()> + Send {
        self.publish_traced(tenant, topic, body, None)
    }

    /// Whether any session (connected, or kept for an absent client) subscribes to `topic` of
    /// `tenant`. Lets handlers skip building messages nobody would receive.
    fn has_subscribers(&self, tenant: &TenantId, topic: &str) -> impl Future<Output = bool> + Send;

    /// The engine; `None` once shutdown has let go of it, when requests are answered 503.
    fn engine(&self) -> Option<Engine>;

    /// Now, by the engine's clock: every timestamp the handlers put in a message.
    fn now(&self) -> Millis;

    /// Document limits, which shadow requests obey like HTTP requests.
    fn limits(&self) -> &Limits;

    /// Whether `twin`'s device has a live session now (a kept session of an absent device does
    /// not count).
    fn device_connected(&self, twin: &TwinKey) -> bool;

    /// A device's update created its twin after it connected (anonymous connects create no
    /// twin): record that it is connected now.
    fn presence_caught_up(&self, twin: &TwinKey) -> impl Future<Output = ()> + Send;
}

/// The engine a broker hands its handlers, until shutdown lets go of it: from then on
/// [`Broker::engine`] is `None` and handlers answer 503.
pub(crate) struct EngineSlot(RwLock<Option<Engine>>);

impl EngineSlot {
    pub(crate) fn new(engine: Engine) -> Self {
        Self(RwLock::new(Some(engine)))
    }

    pub(crate) fn get(&self) -> Option<Engine> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn release(&self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
