//! The state the broker's hooks share, and the hooks themselves: authentication, tenant
//! mounting, ACL, AWS shadow requests and presence.
//!
//! The broker (rmqtt) calls these hooks in this order for a client's publish: `MessagePublish`
//! (we answer shadow requests, then mount the topic, or send a denied message to the void), then
//! `MessagePublishCheckAcl` (rejects what went to the void, so MQTT 5 clients get "not
//! authorized"). For a subscribe: `ClientSubscribe` (mount), then `ClientSubscribeCheckAcl`.
//! Each delivery passes `MessageDelivered` (unmount), so clients only ever see their own topics.

use crate::acl::{self, AclRule};
use crate::commands;
use crate::connections::LiveConnections;
use crate::identity::{self, Directory, Identity, TokenLogin, TokenRefusal, username_of};
use crate::metric;
use crate::mount;
use crate::presence::{self, ClientEvent, Presence};
use crate::shadow::service;
use crate::sync;
use crate::trace;
use async_trait::async_trait;
use bytes::Bytes;
use doppel_auth::{GuardConfig, LoginGate, LoginOutcome, Registry};
use doppel_engine::{Clock, Engine};
use doppel_model::{
    Change, ConnectionStatus, DeviceId, Limits, Millis, TenantId, TraceParent, TwinKey,
    UpdateRequest,
};
use doppel_wire::Topic;
use doppel_wire::topic::{self as wire_topic, PresenceEvent};
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::{Session, SessionState};
use rmqtt::types::{
    AuthResult, ConnectInfo, From, Id, Publish, PublishAclResult, PublishResult, Reason,
    SubscribeAclResult,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Where a session's identity is kept among its attributes once worked out.
const IDENTITY_ATTR: &str = "doppel.identity";

/// What every hook needs.
pub(crate) struct Hub {
    /// The broker's context: sessions, the router, and publishing from server code.
    pub scx: ServerContext,
    /// Taken away at shutdown, so that the engine can stop once the hooks are done with it.
    engine: RwLock<Option<Engine>>,
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
    pub limits: Limits,
    /// The engine's clock, kept past the engine's release at shutdown.
    clock: Arc<dyn Clock>,
    /// Live sessions per twin and the stamps that order presence writes.
    presence: Presence,
    /// The credential each password login used, by the connection's id, from the auth hook
    /// until the session's identity takes it over.
    logins: std::sync::Mutex<HashMap<String, String>>,
    /// The tokens whose expiry a task waits for, to end their sessions then.
    expiry_watches: std::sync::Mutex<HashSet<String>>,
}

/// The settings of a [`Hub`], each described on the field of the same name there.
pub(crate) struct HubConfig {
    pub rules: Vec<AclRule>,
    pub allow_anonymous: bool,
    pub directory: Directory,
    pub limits: Limits,
    pub live_connections: Arc<LiveConnections>,
    pub login: GuardConfig,
}

impl Hub {
    /// Now, by the engine's clock.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn new(scx: ServerContext, engine: Engine, registry: Registry, config: HubConfig) -> Hub {
        Hub {
            scx,
            clock: engine.clock().clone(),
            engine: RwLock::new(Some(engine)),
            login_gate: LoginGate::new(registry.clone(), config.login),
            registry,
            rules: config.rules,
            allow_anonymous: config.allow_anonymous,
            directory: config.directory,
            live_connections: config.live_connections,
            limits: config.limits,
            presence: Presence::default(),
            logins: std::sync::Mutex::default(),
            expiry_watches: std::sync::Mutex::default(),
        }
    }

    pub fn engine(&self) -> Option<Engine> {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `twin`'s device has a live session now (a kept session of an absent device does
    /// not count).
    pub fn device_connected(&self, twin: &TwinKey) -> bool {
        self.presence.is_live(twin)
    }

    /// Whether every device session has ended and its presence is recorded.
    pub fn presence_settled(&self) -> bool {
        self.presence.settled()
    }

    /// Lets go of the engine; hooks that run later answer shadow requests with 500.
    pub fn release_engine(&self) {
        self.engine
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Publishes `body` from the hub to `topic` as `tenant`'s clients see it, at QoS 1 (capped by
    /// each subscription's QoS).
    pub async fn publish(&self, tenant: &TenantId, topic: &str, body: &Value) {
        self.publish_traced(tenant, topic, body, None).await;
    }

    /// [`Hub::publish`] for a message caused by a traced request or change: MQTT 5 subscribers
    /// get its `traceparent` as a user property.
    pub async fn publish_traced(
        &self,
        tenant: &TenantId,
        topic: &str,
        body: &Value,
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

    /// Whether any session (connected, or kept for an absent client) subscribes to `topic` as
    /// `tenant`'s clients see it. Lets the hub skip building messages nobody would receive.
    pub async fn has_subscribers(&self, tenant: &TenantId, topic: &str) -> bool {
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

    async fn authenticate(&self, connect: &ConnectInfo) -> AuthResult {
        if let Some(cert) = connect.cert() {
            return match cert.common_name.as_deref().map(DeviceId::new) {
                Some(Ok(_)) => AuthResult::Allow(false, None),
                _ => AuthResult::NotAuthorized,
            };
        }
        match (username_of(connect), connect.password()) {
            (Some(username), Some(password))
                if identity::is_token_login(username) && self.directory.tokens.is_some() =>
            {
                self.authenticate_token(username, password)
            }
            (Some(username), Some(password)) => {
                let address = connect.id().remote_addr.map(|addr| addr.ip());
                match self.login_gate.login(username, password, address).await {
                    LoginOutcome::Accepted { credential_id, .. } => {
                        self.logins
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(connect.id().to_string(), credential_id);
                        AuthResult::Allow(false, None)
                    }
                    // Throttled logins too: rmqtt has no "connection rate exceeded" (MQTT 5
                    // 0x9F), and a guess the client cannot tell from a checked one is wasted.
                    LoginOutcome::Refused(refusal) => {
                        metrics::counter!(metric::LOGIN_FAILURES, "reason" => refusal.as_str())
                            .increment(1);
                        AuthResult::BadUsernameOrPassword
                    }
                }
            }
            (Some(_), None) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::MISSING_PASSWORD)
                    .increment(1);
                AuthResult::BadUsernameOrPassword
            }
            (None, _) if self.allow_anonymous => AuthResult::Allow(false, None),
            (None, _) => AuthResult::NotAuthorized,
        }
    }

    /// An application's login with an API token: a hash lookup, so no login gate is needed
    /// (256 random bits leave nothing to guess).
    fn authenticate_token(self: &Hub, username: &str, password: &[u8]) -> AuthResult {
        match identity::token_identity(&self.directory, username, password, self.now()) {
            Ok(_) => AuthResult::Allow(false, None),
            Err(TokenRefusal::Invalid) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::INVALID_TOKEN)
                    .increment(1);
                AuthResult::BadUsernameOrPassword
            }
            Err(TokenRefusal::NotAllowed) => {
                metrics::counter!(metric::LOGIN_FAILURES, "reason" => metric::TOKEN_NOT_ALLOWED)
                    .increment(1);
                AuthResult::NotAuthorized
            }
        }
    }

    /// Who `connect` authenticated as. Only called for clients the auth hook let in.
    fn identify(&self, connect: &ConnectInfo) -> Option<Identity> {
        identity::identify(connect, &self.directory, self.now())
    }

    async fn identity(&self, session: &Session) -> Option<Arc<Identity>> {
        if let Some(known) = session
            .extra_attrs
            .read()
            .await
            .get::<Arc<Identity>>(IDENTITY_ATTR)
        {
            return Some(known.clone());
        }
        let connect = session.connect_info().await.ok()?;
        let mut identity = self.identify(&connect)?;
        identity.credential = self
            .logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&connect.id().to_string());
        let identity = Arc::new(identity);
        session
            .extra_attrs
            .write()
            .await
            .insert(IDENTITY_ATTR.into(), identity.clone());
        Some(identity)
    }

    async fn on_publish(&self, session: &Session, from: &From, publish: &Publish) -> Publish {
        // Where `doppel_sync_latency_seconds` starts.
        let received = Instant::now();
        if from.is_custom() {
            metrics::counter!(metric::MESSAGES_RECEIVED).increment(1);
        }
        let mut rewritten = Publish::clone(publish);
        let topic = publish.topic.to_string();
        if !mount::is_topic_name(&topic) {
            rewritten.topic = format!("{}{topic}", mount::INVALID).into();
            return rewritten;
        }
        if publish.retain && topic.starts_with('$') {
            // As AWS IoT: the hub's topics are requests and answers, never state to retain.
            rewritten.topic = format!("{}{topic}", mount::RETAIN_REFUSED).into();
            return rewritten;
        }
        let identity = self.identity(session).await;
        // Parsed once: the ACL decides on it and the dispatch below serves it.
        let parsed = Topic::parse(&topic);
        let allowed = identity
            .as_ref()
            .filter(|identity| acl::may_publish(&self.rules, &identity.role, &parsed, &topic));
        rewritten.topic = match allowed {
            Some(identity) => {
                // Only what a client sent is served; a last will, say, is only routed.
                if from.is_custom() {
                    self.serve(identity, parsed, publish, received).await;
                }
                mount::mount(identity.tenant.as_str(), &topic).into()
            }
            None => mount::void(&topic).into(),
        };
        rewritten
    }

    /// Serves a request a client was allowed to publish; any other topic is the broker's alone
    /// to route.
    async fn serve(
        &self,
        identity: &Identity,
        topic: Topic<'_>,
        publish: &Publish,
        received: Instant,
    ) {
        let payload = &publish.payload;
        match topic {
            Topic::ShadowRequest(request) => {
                let trace = trace::traceparent(publish.properties.as_ref());
                service::handle(self, identity, request, payload, received, trace).await;
            }
            Topic::CommandAck { thing, id } => {
                commands::handle_ack(self, identity, thing, id, payload).await;
            }
            Topic::SyncRequest { thing } => sync::handle(self, identity, thing, payload).await,
            Topic::ShadowAnswer { .. }
            | Topic::CommandDelivery { .. }
            | Topic::CommandAckAnswer { .. }
            | Topic::SyncAnswer { .. }
            | Topic::Presence { .. }
            | Topic::CommandEvent { .. }
            | Topic::HubReserved
            | Topic::Thing { .. }
            | Topic::Reserved
            | Topic::Ordinary => {}
        }
    }

    async fn on_subscribe_check(&self, session: &Session, mounted: &str) -> bool {
        self.identity(session)
            .await
            .is_some_and(|identity| subscription_allowed(&self.rules, &identity, mounted))
    }

    /// A resumed session brings the subscriptions of its previous connection. Sessions are kept
    /// per principal (see `admission`), so they are this identity's own; they are checked again
    /// all the same, so that no path can hand a subscription across tenants or past the ACL. A
    /// session holding one its identity may not have is ended, and its state dropped.
    async fn recheck_subscriptions(&self, session: &Session) {
        let Some(identity) = self.identity(session).await else {
            return;
        };
        let filters = match session.subscriptions().await {
            Ok(subscriptions) => subscriptions.to_topic_filters().await,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read a session's subscriptions");
                return;
            }
        };
        let foreign = filters
            .iter()
            .filter(|mounted| !subscription_allowed(&self.rules, &identity, mounted))
            .count();
        if foreign == 0 {
            return;
        }
        tracing::warn!(
            client_id = %session.id.client_id,
            principal = identity.principal,
            foreign,
            "ending a session that holds subscriptions its identity may not have"
        );
        let scx = self.scx.clone();
        let id = session.id.clone();
        // The connect still holds the session's entry; kick once it has let go.
        tokio::spawn(async move {
            let mut entry = scx.extends.shared().await.entry(id);
            if let Err(err) = entry.kick(true, true, true).await {
                tracing::warn!(error = %err, "cannot end a session with foreign subscriptions");
            }
        });
    }

    /// A session began (`ended` is `None`) or ended: records it on the device's twin and
    /// publishes the AWS lifecycle event. The end is recorded in a task of its own: rmqtt
    /// refuses a reconnect with the same client id while the old session's disconnect hook is
    /// still running, so that hook must be quick (the stamps keep the writes in order anyway).
    async fn on_presence(self: &Arc<Self>, session: &Session, ended: Option<&Reason>) {
        let writing = self.presence.writing();
        let Some(identity) = self.identity(session).await else {
            return;
        };
        // The client's own id: the session's is its key (see `admission`).
        let Ok(connect) = session.connect_info().await else {
            return;
        };
        if ended.is_some() {
            // A login whose session never asked for its identity leaves its entry here.
            self.logins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&connect.id().to_string());
        }
        let twin = identity
            .device
            .as_ref()
            .map(|device| TwinKey::new(identity.tenant.clone(), device.clone()));
        let write = twin.as_ref().and_then(|key| match ended {
            None => Some((ConnectionStatus::Connected, self.presence.connected(key))),
            Some(_) => self
                .presence
                .disconnected(key)
                .map(|stamp| (ConnectionStatus::Disconnected, stamp)),
        });
        let version = write.map_or_else(|| self.presence.stamp(), |(_, stamp)| stamp);
        let client_id = connect.client_id().to_string();
        let event = ClientEvent {
            client_id: &client_id,
            session: presence::session_identifier(
                session.id.create_time,
                session.id.remote_addr.map_or(0, |addr| addr.port()),
            ),
            principal: &identity.principal,
            ip_address: session.id.remote_addr.map(|addr| addr.ip().to_string()),
            timestamp: self.now().0,
            version,
        };
        let (kind, body) = match ended {
            None => (PresenceEvent::Connected, presence::connected_event(&event)),
            Some(reason) => (
                PresenceEvent::Disconnected,
                presence::disconnected_event(&event, reason),
            ),
        };
        let topic = wire_topic::presence_event(kind.as_str(), &client_id);
        let connecting = ended.is_none();
        let hub = self.clone();
        let record = async move {
            if let (Some(key), Some((status, stamp))) = (&twin, write) {
                let create = status == ConnectionStatus::Connected && identity.creates_twin();
                hub.record_presence(key, status, stamp, create, None).await;
            }
            hub.publish(&identity.tenant, &topic, &body).await;
            if connecting && let Some(device) = &identity.device {
                // A device that reconnects with a kept session is already subscribed to its
                // commands and delta and would otherwise miss what came while it was away.
                commands::on_reconnect(&hub, &identity.tenant, device).await;
            }
            drop(writing);
        };
        if connecting {
            record.await;
        } else {
            tokio::spawn(record);
        }
    }

    /// Ends every session that logged in with an API token as soon as it is revoked.
    pub async fn end_revoked_token_sessions(self: Arc<Self>) {
        let Some(tokens) = &self.directory.tokens else {
            return;
        };
        let mut revocations = tokens.revocations();
        while let Some(revoked) = next_revocation(&mut revocations, "token").await {
            self.end_sessions_where("its token was revoked", |identity| {
                identity
                    .token
                    .as_ref()
                    .is_some_and(|token| token.id == revoked)
            })
            .await;
        }
    }

    /// Ends a token's sessions when the token expires: they were let in with the token valid,
    /// and must not outlive it. One watch per token, however often its clients reconnect.
    fn end_at_expiry(self: &Arc<Self>, identity: &Identity) {
        let Some(TokenLogin {
            id,
            expires_at: Some(expires_at),
        }) = identity.token.clone()
        else {
            return;
        };
        let newly_watched = self
            .expiry_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !newly_watched {
            return;
        }
        let left = u64::try_from(expires_at.0 - self.now().0).unwrap_or(0);
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(left)).await;
            if let Some(hub) = hub.upgrade() {
                hub.expiry_watches
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                hub.end_sessions_where("its token expired", |identity| {
                    identity.token.as_ref().is_some_and(|token| token.id == id)
                })
                .await;
            }
        });
    }

    /// Kicks out `session`, which has no identity (left without rights) any more.
    async fn end_session(&self, session: &Session) {
        let mut entry = self.scx.extends.shared().await.entry(session.id.clone());
        if let Err(err) = entry.kick(true, true, true).await {
            tracing::warn!(error = %err, "cannot end a session that lost its identity");
        }
    }

    /// Kicks out every session whose identity `matches`, logging `why`.
    async fn end_sessions_where(&self, why: &str, matches: impl Fn(&Identity) -> bool) {
        let sessions: Vec<Session> = {
            let shared = self.scx.extends.shared().await;
            shared.iter().filter_map(|entry| entry.session()).collect()
        };
        for session in sessions {
            if self
                .identity(&session)
                .await
                .is_some_and(|identity| matches(&identity))
            {
                tracing::info!(client_id = %session.id.client_id, why, "ending a session");
                let mut entry = self.scx.extends.shared().await.entry(session.id.clone());
                if let Err(err) = entry.kick(true, true, true).await {
                    tracing::warn!(error = %err, why, "cannot end a session");
                }
            }
        }
    }

    /// Ends every session that logged in with a credential as soon as it is removed.
    pub async fn end_revoked_sessions(self: Arc<Self>) {
        let mut revocations = self.registry.revocations();
        while let Some(revoked) = next_revocation(&mut revocations, "credential").await {
            tracing::info!(
                username = revoked.username,
                "a credential was removed; ending its sessions"
            );
            self.end_sessions_where("its credential was removed", |identity| {
                identity.credential.as_deref() == Some(revoked.credential_id.as_str())
            })
            .await;
        }
    }

    /// Twins still CONNECTED from before this process started lost their device with the old
    /// process (a crash, or a stop that could not tell them): they are disconnected now.
    pub async fn disconnect_left_over_twins(self: Arc<Self>) {
        /// Presence writes in flight at once: enough to fill group commits, few enough not to
        /// crowd out the requests of devices reconnecting meanwhile.
        const CONCURRENT_WRITES: usize = 256;
        let Some(engine) = self.engine() else {
            return;
        };
        let found = tokio::task::spawn_blocking(move || {
            engine.live_twins_where(|twin| twin.connection.status == ConnectionStatus::Connected)
        })
        .await
        .unwrap_or_default();
        if found.is_empty() {
            return;
        }
        tracing::info!(
            twins = found.len(),
            "marking twins left connected by the previous run as disconnected"
        );
        for slice in found.chunks(CONCURRENT_WRITES) {
            let mut writes = tokio::task::JoinSet::new();
            for key in slice {
                if let Some(stamp) = self.presence.left_over(key) {
                    let hub = self.clone();
                    let key = key.clone();
                    writes.spawn(async move {
                        let reason = Some("the hub restarted while the device was connected");
                        hub.record_presence(
                            &key,
                            ConnectionStatus::Disconnected,
                            stamp,
                            false,
                            reason,
                        )
                        .await;
                    });
                }
            }
            writes.join_all().await;
        }
    }

    /// A device's update created its twin after it connected (anonymous connects create no
    /// twin): record that it is connected now.
    pub async fn presence_caught_up(&self, key: &TwinKey) {
        if let Some(stamp) = self.presence.catch_up(key) {
            self.record_presence(key, ConnectionStatus::Connected, stamp, false, None)
                .await;
        }
    }

    async fn record_presence(
        &self,
        key: &TwinKey,
        status: ConnectionStatus,
        sequence: u64,
        create: bool,
        reason: Option<&str>,
    ) {
        let Some(engine) = self.engine() else {
            return;
        };
        let request = UpdateRequest {
            change: Change::Connection {
                status,
                sequence,
                create,
            },
            expected_version: None,
            changed_by: key.device.as_str().to_owned(),
            change_reason: reason.map(str::to_owned),
            client_token: None,
            trace: None,
        };
        match engine.update(key.clone(), request).await {
            Ok(_)
            | Err(doppel_engine::EngineError::Model(doppel_model::ModelError::TwinNotFound)) => {}
            Err(err) => tracing::warn!(error = %err, twin = %key, "cannot record presence"),
        }
    }

    async fn on_subscribed(&self, session: &Session, mounted: &str) {
        let (Some(identity), Some((_, filter))) =
            (self.identity(session).await, mount::unmount(mounted))
        else {
            return;
        };
        match &identity.device {
            Some(device) if commands::brings_commands(&identity, &filter) => {
                commands::on_reconnect(self, &identity.tenant, device).await;
            }
            _ => service::delta_on_subscribe(self, &identity, &filter).await,
        }
    }
}

/// Whether a session of `identity` may hold the subscription `mounted` (a broker filter): it
/// lies in the identity's tenant and the ACL lets the identity subscribe to it.
fn subscription_allowed(rules: &[AclRule], identity: &Identity, mounted: &str) -> bool {
    mount::unmount(mounted).is_some_and(|(tenant, filter)| {
        tenant == identity.tenant.as_str() && acl::may_subscribe(rules, &identity.role, &filter)
    })
}

/// The next revocation announced on `revocations`; `None` once the registry is gone. Missed
/// ones (the receiver lagged) are logged: their sessions stay until they end by themselves.
async fn next_revocation<T: Clone>(
    revocations: &mut tokio::sync::broadcast::Receiver<T>,
    what: &str,
) -> Option<T> {
    loop {
        match revocations.recv().await {
            Ok(revoked) => return Some(revoked),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(
                    missed,
                    what,
                    "missed revocations; their sessions stay connected until they end"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// The broker hook: dispatches each event to the [`Hub`].
pub(crate) struct HubHook(pub Arc<Hub>);

#[async_trait]
impl Handler for HubHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let hub = &self.0;
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let result = hub.authenticate(connect).await;
                if matches!(result, AuthResult::Allow(..)) && hub.identify(connect).is_none() {
                    return (
                        false,
                        Some(HookResult::AuthResult(AuthResult::NotAuthorized)),
                    );
                }
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribe(session, subscribe) => match hub.identity(session).await {
                Some(identity) => {
                    let mounted = mount::mount(identity.tenant.as_str(), &subscribe.topic_filter);
                    (false, Some(HookResult::TopicFilter(Some(mounted.into()))))
                }
                None => (true, acc),
            },
            Parameter::ClientUnsubscribe(session, unsubscribe) => match hub.identity(session).await
            {
                Some(identity) => {
                    let mounted = mount::mount(identity.tenant.as_str(), &unsubscribe.topic_filter);
                    (false, Some(HookResult::TopicFilter(Some(mounted.into()))))
                }
                None => (true, acc),
            },
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let result = if hub
                    .on_subscribe_check(session, &subscribe.topic_filter)
                    .await
                {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublish(Some(session), from, publish) => {
                let rewritten = hub.on_publish(session, from, publish).await;
                (false, Some(HookResult::Publish(rewritten)))
            }
            Parameter::MessagePublishCheckAcl(_, publish) => {
                let result = if publish.topic.starts_with(mount::VOID) {
                    PublishAclResult::rejected(false, Some("not authorized".into()))
                } else if publish.topic.starts_with(mount::RETAIN_REFUSED) {
                    PublishAclResult::rejected(
                        false,
                        Some("retained messages are not allowed on $ topics".into()),
                    )
                } else if publish.topic.starts_with(mount::INVALID) {
                    // A protocol violation ends the connection (MQTT 5: reason 0x90).
                    PublishAclResult(PublishResult::reason_code(
                        PublishAckReason::TopicNameInvalid,
                        Some("a topic name cannot hold wildcards".into()),
                        true,
                    ))
                } else {
                    PublishAclResult::allow()
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessageDelivered(_, _, publish) => match mount::unmount(&publish.topic) {
                Some((_, topic)) => {
                    let mut delivered = Publish::clone(publish);
                    delivered.topic = topic.as_ref().into();
                    (false, Some(HookResult::Publish(delivered)))
                }
                None => (true, acc),
            },
            Parameter::ClientConnected(session) => {
                metrics::gauge!(metric::CONNECTIONS).increment(1);
                hub.live_connections.opened(&session.id.client_id);
                hub.recheck_subscriptions(session).await;
                match hub.identity(session).await {
                    Some(identity) => hub.end_at_expiry(&identity),
                    // Its token was revoked between the login and now.
                    None => hub.end_session(session).await,
                }
                hub.on_presence(session, None).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                metrics::gauge!(metric::CONNECTIONS).decrement(1);
                hub.live_connections.closed(&session.id.client_id);
                hub.on_presence(session, Some(reason)).await;
                (true, acc)
            }
            Parameter::SessionSubscribed(session, subscribe) => {
                hub.on_subscribed(session, &subscribe.topic_filter).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}
