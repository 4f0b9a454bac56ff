//! A [`Broker`] for the handlers' unit tests: a real engine on a memory store with a manual
//! clock, and a record of what the handlers published instead of a broker to publish to.

use super::{Broker, EngineSlot};
use crate::identity::Identity;
use doppel_engine::{Engine, EngineConfig, EngineTasks, ManualClock};
use doppel_model::{DeviceId, Limits, Millis, TenantId, TraceParent, TwinKey};
use doppel_store::{HistoryBuckets, MemoryStore};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};

/// Where the fake clock stands: 2023-11-14T22:13:20.500Z, so that seconds and milliseconds
/// tell apart in a document.
pub(crate) const NOW: Millis = Millis(1_700_000_000_500);

/// One message a handler published.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub tenant: TenantId,
    pub topic: String,
    pub body: Value,
    pub trace: Option<TraceParent>,
}

pub(crate) struct FakeBroker {
    /// `None` after [`FakeBroker::release_engine`], as after shutdown.
    engine: EngineSlot,
    /// Kept so that the engine's workers are not detached before the test ends.
    _tasks: EngineTasks,
    clock: Arc<ManualClock>,
    limits: Limits,
    published: Mutex<Vec<Published>>,
    /// The twins whose presence the handlers asked to catch up.
    caught_up: Mutex<Vec<TwinKey>>,
}

impl FakeBroker {
    pub async fn start() -> FakeBroker {
        let clock = Arc::new(ManualClock::new(NOW));
        let store = MemoryStore::new(HistoryBuckets::new(1000));
        let (engine, tasks) =
            Engine::start(Arc::new(store), clock.clone(), EngineConfig::default())
                .await
                .expect("an engine on a memory store starts");
        FakeBroker {
            engine: EngineSlot::new(engine),
            _tasks: tasks,
            clock,
            limits: Limits::default(),
            published: Mutex::default(),
            caught_up: Mutex::default(),
        }
    }

    /// Lets go of the engine, as shutdown does.
    pub fn release_engine(&self) {
        self.engine.release();
    }

    /// What was published since the last call, in order.
    pub fn take_published(&self) -> Vec<Published> {
        std::mem::take(
            &mut self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The one message published since the last call.
    pub fn take_one(&self) -> Published {
        let mut published = self.take_published();
        assert_eq!(published.len(), 1, "one message expected: {published:?}");
        published.remove(0)
    }

    /// The body of the one message published since the last call, which must be on `topic`.
    pub fn take_on(&self, topic: &str) -> Value {
        let answer = self.take_one();
        assert_eq!(answer.topic, topic);
        answer.body
    }

    pub fn caught_up(&self) -> Vec<TwinKey> {
        self.caught_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The engine, which a test uses to set up and to look at twins.
    pub fn engine_handle(&self) -> Engine {
        self.engine().expect("the test has not released the engine")
    }
}

impl Broker for FakeBroker {
    async fn publish_traced(
        &self,
        tenant: &TenantId,
        topic: &str,
        body: &(impl Serialize + Sync),
        trace: Option<&TraceParent>,
    ) {
        // Recorded as the JSON a client would read.
        let body = serde_json::to_value(body).expect("a hub message encodes");
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Published {
                tenant: tenant.clone(),
                topic: topic.to_owned(),
                body,
                trace: trace.copied(),
            });
    }

    /// Every topic has a subscriber, so the handlers skip no message.
    async fn has_subscribers(&self, _tenant: &TenantId, _topic: &str) -> bool {
        true
    }

    fn engine(&self) -> Option<Engine> {
        self.engine.get()
    }

    fn now(&self) -> Millis {
        doppel_engine::Clock::now(&*self.clock)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every device is connected, so commands are delivered.
    fn device_connected(&self, _twin: &TwinKey) -> bool {
        true
    }

    async fn presence_caught_up(&self, twin: &TwinKey) {
        self.caught_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(twin.clone());
    }
}

pub(crate) fn tenant() -> TenantId {
    TenantId::new("t1").expect("a valid tenant id")
}

/// The identity of the device `thing` of [`tenant`], as it logs in with its credential.
pub(crate) fn device(thing: &str) -> Identity {
    Identity::device(tenant(), DeviceId::new(thing).expect("a valid device id"))
}

pub(crate) fn key(thing: &str) -> TwinKey {
    TwinKey::new(tenant(), DeviceId::new(thing).expect("a valid device id"))
}
