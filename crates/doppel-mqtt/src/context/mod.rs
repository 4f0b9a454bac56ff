//! The state the broker's hooks share, and the [`Broker`] the request handlers see of it.
//!
//! Its behaviour lies in one module per concept: `session` (who a client is), `presence`
//! (recording connects and disconnects) and `revocation` (ending sessions whose rights went).
//! `crate::hooks` dispatches rmqtt's events to them.

mod presence;
mod revocation;
mod session;

use crate::acl::AclRule;
use crate::broker::{Broker, EngineSlot};
use crate::connections::LiveConnections;
use crate::identity::Directory;
use crate::metric;
use crate::mount;
use crate::presence::Presence;
use crate::trace;
use bytes::Bytes;
use doppel_auth::{GuardConfig, LoginGate, Registry};
use doppel_engine::{Clock, Engine};
use doppel_model::{Limits, Millis, TenantId, TraceParent, TwinKey};
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, Publish};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What every hook needs.
pub(crate) struct BrokerContext {
    /// rmqtt's own context: sessions, the router, and publishing from server code.
    pub scx: ServerContext,
    /// Taken away at shutdown, so that the engine can stop once the hooks are done with it.
    engine: EngineSlot,
    /// Announces removed credentials.
    registry: Registry,
    /// Verifies passwords at connect, holding back addresses and usernames that keep failing.
    login_gate: LoginGate,
    /// The configured rules for ordinary topics.
    rules: Vec<AclRule>,
    /// Whether clients without credentials are let in.
    allow_anonymous: bool,
    /// The tenants of anonymous and certificate clients, and the API tokens applications log in with.
    directory: Directory,
    /// Live connections, which the connect admission holds to `mqtt.max_connections` and
    /// `mqtt.max_connections_per_principal`.
    pub live_connections: Arc<LiveConnections>,
    /// Document limits, which shadow requests obey like HTTP requests.
    limits: Limits,
    /// The engine's clock, kept past the engine's release at shutdown.
    clock: Arc<dyn Clock>,
    /// Live sessions per twin and the sequence numbers that order presence writes.
    presence: Presence,
    /// The credential each password login used, by the connection's id, from the auth hook
    /// until the session's identity takes it over.
    logins: std::sync::Mutex<HashMap<String, String>>,
    /// The tokens whose expiry a task waits for, to end their sessions then.
    expiry_watches: std::sync::Mutex<HashSet<String>>,
}

/// The settings of a [`BrokerContext`], each described on the field of the same name there.
pub(crate) struct BrokerConfig {
    pub rules: Vec<AclRule>,
    pub allow_anonymous: bool,
    pub directory: Directory,
    pub limits: Limits,
    pub live_connections: Arc<LiveConnections>,
    pub login: GuardConfig,
}

impl BrokerContext {
    pub fn new(
        scx: ServerContext,
        engine: Engine,
        registry: Registry,
        config: BrokerConfig,
    ) -> BrokerContext {
        BrokerContext {
            scx,
            clock: engine.clock().clone(),
            presence: Presence::new(engine.clock().clone()),
            engine: EngineSlot::new(engine),
            login_gate: LoginGate::new(registry.clone(), config.login),
            registry,
            rules: config.rules,
            allow_anonymous: config.allow_anonymous,
            directory: config.directory,
            live_connections: config.live_connections,
            limits: config.limits,
            logins: std::sync::Mutex::default(),
            expiry_watches: std::sync::Mutex::default(),
        }
    }

    /// Whether every device session has ended and its presence is recorded.
    pub fn presence_settled(&self) -> bool {
        self.presence.settled()
    }

    /// Lets go of the engine; hooks that run later answer requests with 503.
    pub fn release_engine(&self) {
        self.engine.release();
    }
}

impl Broker for BrokerContext {
    async fn publish_traced(
        &self,
        tenant: &TenantId,
        topic: &str,
        body: &(impl Serialize + Sync),
        trace: Option<&TraceParent>,
    ) {
        let payload = match serde_json::to_vec(body) {
            Ok(payload) => Bytes::from(payload),
            Err(err) => {
                tracing::error!(error = %err, topic, "cannot encode a hub message");
                return;
            }
        };
        let from = From::from_system(Id::from(self.scx.node.id(), "doppel".into()));
        let publish = Publish::from(CodecPublish {
            dup: false,
            retain: false,
            qos: QoS::AtLeastOnce,
            topic: mount::mount(tenant.as_str(), topic).into(),
            packet_id: None,
            payload,
            properties: trace::properties(trace),
        });
        match SessionState::forwards(&self.scx, from, publish, false, None).await {
            Ok(()) => metrics::counter!(metric::MESSAGES_PUBLISHED).increment(1),
            Err(err) => tracing::warn!(error = %err, topic, "cannot publish a hub message"),
        }
    }

    async fn has_subscribers(&self, tenant: &TenantId, topic: &str) -> bool {
        let mounted = mount::mount(tenant.as_str(), topic);
        // When in doubt (a lookup error), build the message.
        self.scx
            .extends
            .router()
            .await
            .get(&mounted)
            .await
            .map_or(true, |routes| !routes.is_empty())
    }

    fn engine(&self) -> Option<Engine> {
        self.engine.get()
    }

    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn device_connected(&self, twin: &TwinKey) -> bool {
        self.presence.is_live(twin)
    }

    async fn presence_caught_up(&self, twin: &TwinKey) {
        self.catch_up_presence(twin).await;
    }
}
