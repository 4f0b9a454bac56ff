//! The embedded broker: rmqtt in our runtime, its listeners, our hooks, and shutdown.

use crate::admission::Admission;
use crate::commands;
use crate::config::MqttConfig;
use crate::connections::LiveConnections;
use crate::context::{BrokerConfig, BrokerContext};
use crate::hooks::Hooks;
use crate::identity::Directory;
use crate::metric;
use crate::retain::MemoryRetainer;
use crate::shadow::service;
use doppel_auth::{Registry, Tokens};
use doppel_engine::Engine;
use doppel_model::{Limits, TenantId};
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer as RmqttServer;
use rmqtt::types::{BacklogLimits, Id};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The tenant anonymous clients act in.
pub const ANONYMOUS_TENANT: &str = "default";

/// How long shutdown waits for kicked sessions to finish their disconnect hooks (presence
/// writes), so that the twins say DISCONNECTED when the hub is gone.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Changes the delta feed may be behind before writes wait for it: deltas must never be
/// skipped (a device would miss a desired change), and a few thousand changes absorb bursts.
const FEED_BACKLOG: usize = 4096;

/// How often shutdown looks whether the disconnect hooks are done.
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// Concurrent handshakes (TLS, WebSocket upgrade, CONNECT and authentication) per listener.
const MAX_HANDSHAKES: usize = 256;

/// Why the MQTT side could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot listen for MQTT on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("invalid MQTT configuration: {0}")]
    Config(String),
}

/// One open listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// `mqtt`, `mqtts` or `ws`.
    pub scheme: &'static str,
    pub addr: SocketAddr,
}

/// The running MQTT side.
pub struct MqttServer {
    /// What the hooks share; shutdown kicks its sessions and releases its engine.
    context: Arc<BrokerContext>,
    /// The bound addresses, for the start-up lines and tests (ports may have been 0).
    listening: Vec<Listening>,
    /// rmqtt's accept loops; aborted at shutdown, since they never end by themselves.
    server: JoinHandle<()>,
    /// Publishes deltas and documents for every change.
    feed: JoinHandle<()>,
    /// Delivers commands and publishes command events.
    command_feed: JoinHandle<()>,
    /// Ends the sessions of removed credentials.
    revocations: JoinHandle<()>,
    /// Ends the sessions of revoked API tokens.
    token_revocations: JoinHandle<()>,
}

impl MqttServer {
    /// Binds every configured listener and starts serving; must run inside a Tokio runtime.
    pub async fn start(
        config: &MqttConfig,
        engine: Engine,
        registry: Registry,
        tokens: Option<Tokens>,
        limits: Limits,
    ) -> Result<MqttServer, MqttError> {
        for rule in &config.acl {
            rule.validate().map_err(MqttError::Config)?;
        }
        let tenant = |name: &str, what: &str| {
            TenantId::new(name).map_err(|err| MqttError::Config(format!("{what}: {err}")))
        };
        let directory = Directory {
            anonymous: tenant(ANONYMOUS_TENANT, "anonymous tenant")?,
            certificate: tenant(&config.certificate_tenant, "mqtt.tls.tenant")?,
            tokens,
        };
        let live_connections = Arc::new(LiveConnections::default());
        let admission = Admission::new(
            directory.clone(),
            config.max_connections,
            config.max_connections_per_principal,
            live_connections.clone(),
            engine.clock().clone(),
        );
        let broker_config = BrokerConfig {
            rules: config.acl.clone(),
            allow_anonymous: config.allow_anonymous,
            directory,
            limits,
            live_connections,
            login: config.login.clone(),
        };
        // The load monitor is a task that never ends; without it a stopped broker leaks nothing.
        let scx = ServerContext::new()
            .busy_check_enable(false)
            .connect_admission(Arc::new(move |connect| admission.decide(connect)))
            .mqtt_max_sockets(config.max_sockets)
            .session_backlog(BacklogLimits {
                max_messages: config.max_queued_messages,
                max_bytes: config.max_queued_bytes,
                on_overflow: Arc::new(slow_client),
            })
            .build()
            .await;
        *scx.extends.retain_mut().await = Box::new(MemoryRetainer::default());
        let changes = engine.follow(FEED_BACKLOG);
        let command_events = engine.commands().follow(FEED_BACKLOG);
        let context = Arc::new(BrokerContext::new(
            scx.clone(),
            engine,
            registry,
            broker_config,
        ));
        let register = scx.extends.hook_mgr().register();
        for hook in [
            Type::ClientAuthenticate,
            Type::ClientSubscribe,
            Type::ClientUnsubscribe,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublish,
            Type::MessagePublishCheckAcl,
            Type::MessageDelivered,
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::SessionSubscribed,
        ] {
            register.add(hook, Box::new(Hooks(context.clone()))).await;
        }
        register.start().await;

        let mut server = RmqttServer::new(scx.clone());
        let mut listening = Vec::new();
        let mut next_id = 1;
        let mut add = |scheme: &'static str, listener: Listener| -> Result<(), MqttError> {
            let addr = listener.local_addr().map_err(|err| MqttError::Listen {
                addr: listener.cfg.laddr,
                reason: err.to_string(),
            })?;
            listening.push(Listening { scheme, addr });
            // Listener ids default to the port, which is 0 for every test listener.
            server = std::mem::replace(&mut server, RmqttServer::new(scx.clone()))
                .listener_by_id(listener, next_id);
            next_id += 1;
            Ok(())
        };
        add("mqtt", bind(config, config.listen, |l| l.tcp())?)?;
        if let Some(addr) = config.websocket {
            add("ws", bind(config, addr, |l| l.ws())?)?;
        }
        if let Some(tls) = &config.tls {
            let builder = builder(config, tls.listen)
                .tls_cert(Some(tls.cert.display().to_string()))
                .tls_key(Some(tls.key.display().to_string()))
                .tls_cross_certificate(tls.client_ca.is_some())
                .tls_client_ca_certs(tls.client_ca.as_ref().map(|ca| ca.display().to_string()))
                .collect_cert_info(tls.client_ca.is_some());
            let listener = builder
                .bind()
                .and_then(|listener| listener.tls())
                .map_err(|err| MqttError::Listen {
                    addr: tls.listen,
                    reason: format!("{err:#}"),
                })?;
            add("mqtts", listener)?;
        }
        let server = server.build();
        // `start()` would exit the process on an error; `run()` reports it instead.
        let server = tokio::spawn(async move {
            if let Err(err) = server.run().await {
                tracing::error!(error = %err, "the MQTT broker stopped");
            }
        });
        let feed = tokio::spawn(service::run_feed(context.clone(), changes));
        let command_feed = tokio::spawn(commands::run_feed(context.clone(), command_events));
        tokio::spawn(context.clone().disconnect_left_over_twins());
        let revocations = tokio::spawn(context.clone().end_revoked_sessions());
        let token_revocations = tokio::spawn(context.clone().end_revoked_token_sessions());
        if config.allow_anonymous {
            tracing::warn!(
                "ANONYMOUS MQTT ACCESS IS ON: any client can connect without credentials and act as the thing named by its client id in tenant {ANONYMOUS_TENANT:?}; turn mqtt.allow_anonymous off outside development"
            );
        }
        Ok(MqttServer {
            context,
            listening,
            server,
            feed,
            command_feed,
            revocations,
            token_revocations,
        })
    }

    /// The open listeners, with their real ports.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// Stops accepting, disconnects every client (recording their presence), then lets go of
    /// the engine.
    pub async fn shutdown(self) {
        // The accept loops never return by themselves; aborting drops the listening sockets.
        self.server.abort();
        let _ = self.server.await;
        let sessions: Vec<_> = {
            let shared = self.context.scx.extends.shared().await;
            shared.iter().map(|entry| entry.id()).collect()
        };
        let kicks = async {
            for id in sessions {
                let mut entry = self.context.scx.extends.shared().await.entry(id);
                let _ = entry.kick(true, true, true).await;
            }
            // A kicked session runs its disconnect hook after the kick returns.
            while !self.context.presence_settled() {
                tokio::time::sleep(SETTLE_POLL).await;
            }
        };
        if tokio::time::timeout(DISCONNECT_GRACE, kicks).await.is_err() {
            tracing::warn!(
                "some MQTT sessions did not close in time; their twins may still say CONNECTED until the next start"
            );
        }
        self.context.release_engine();
        self.feed.abort();
        self.command_feed.abort();
        self.revocations.abort();
        self.token_revocations.abort();
    }
}

fn builder(config: &MqttConfig, addr: SocketAddr) -> Builder {
    Builder::new()
        .name("doppel")
        .laddr(addr)
        // Without it a restarted hub cannot rebind a port with connections in TIME_WAIT.
        .reuseaddr(Some(true))
        // Answers are small packets written one at a time: with Nagle's algorithm each waited
        // for the client's delayed ACK, about 40 ms per request and answer.
        .nodelay(true)
        // Our authentication hook decides about anonymous clients (with the configured switch);
        // the broker's own switch would skip the hook for them.
        .allow_anonymous(false)
        .max_packet_size(config.max_packet_bytes)
        .max_connections(config.max_connections)
        .max_handshaking_limit(MAX_HANDSHAKES)
        // Before CONNECT, and again for CONNECT itself: a silent socket is closed after it.
        .handshake_timeout(config.connect_timeout)
        // A kept session's queue while its client is away (the live queue is bounded by the
        // session backlog too).
        .max_mqueue_len(config.max_queued_messages)
        .max_keepalive(config.max_keepalive_secs)
        // MQTT 3.1.1 section 3.1.2.10: a client is gone after one and a half keep-alives.
        .keepalive_backoff(0.5)
        // Retained and queued messages live until replaced or delivered, not five minutes.
        .message_expiry_interval(Duration::ZERO)
}

/// A session's client does not read what it is sent fast enough: its QoS 0 messages are dropped
/// and, for a QoS 1 or 2 message, the session is disconnected (reason 0x97, quota exceeded).
fn slow_client(session: &Id, disconnected: bool, first: bool) {
    if disconnected {
        metrics::counter!(metric::SLOW_CLIENTS_DISCONNECTED).increment(1);
    } else {
        metrics::counter!(metric::MESSAGES_DROPPED, "reason" => metric::QUEUE_FULL).increment(1);
    }
    if first {
        tracing::warn!(
            session = %session.client_id,
            "a client does not read its messages: its queue is full (mqtt.max_queued_messages, mqtt.max_queued_bytes), so QoS 0 messages to it are dropped and a QoS 1 message ends its session"
        );
    }
}

fn bind(
    config: &MqttConfig,
    addr: SocketAddr,
    kind: impl FnOnce(Listener) -> rmqtt::Result<Listener>,
) -> Result<Listener, MqttError> {
    builder(config, addr)
        .bind()
        .and_then(kind)
        .map_err(|err| MqttError::Listen {
            addr,
            reason: format!("{err:#}"),
        })
}
