//! One device's link to the hub: an MQTT session in the device's name that syncs the device's
//! twin and carries its commands.
//!
//! The link sends a sync when it connects, when the local twin changed, when the hub announces
//! a change (`/shadow/update/documents`) and every sync interval. One sync is in flight at a
//! time; its token is the last local version it covers, and the watermark moves there once
//! the hub has answered, after the hub's state is merged locally.
//!
//! To an `mqtts://` hub the link speaks TLS and checks the hub's certificate against the
//! `--hub-ca-file` CAs (else the system's) and its name against the host `--hub` names; there
//! is no way to skip either check. A hub that fails them, or refuses the device's credentials
//! (its CONNACK code), is never linked to: the failure is logged once per device and reason as
//! a warning (not at every retry), shown in `/v1/edge/status`, and retried with a delay that
//! doubles from `--reconnect-delay` up to [`MAX_REFUSED_RETRY_DELAY`], back to the start once
//! the link comes up. A partition is retried at `--reconnect-delay`, so a healed link comes up
//! at once.

use crate::availability::Availability;
use crate::config::{DeviceCredential, EdgeConfig, EdgeError};
use crate::watermark::Watermarks;
use doppel_engine::{Clock, CommandEventKind, Engine, EngineError, SystemClock};
use doppel_model::command::{Command, NewCommand};
use doppel_model::replica::{ReplicaDelta, own_changes};
use doppel_model::{Change, ModelError, TwinKey, UpdateRequest};
use doppel_store::HistoryQuery;
use doppel_wire::command::{CommandAck, CommandDelivery};
use doppel_wire::shadow::{self, ShadowAnswer};
use doppel_wire::sync::{MAX_SYNC_CHANGES, SyncAccepted, SyncRequest};
use doppel_wire::{Topic, Verdict, topic};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, NetworkOptions, Packet,
    Publish, QoS, TlsConfiguration, TlsError, Transport,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// Largest MQTT packet either way: a sync carries up to [`MAX_SYNC_CHANGES`] changes or a whole
/// replicated twin.
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// Requests the link may queue for its connection before it must wait.
const CLIENT_QUEUE: usize = 256;

/// Longest wait between attempts the hub refuses: a refusal lasts until the operator acts, so
/// the agent need not knock often, yet a fixed password or certificate links within this long.
pub const MAX_REFUSED_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Who made the changes merged from the hub, in local history.
const HUB_PRINCIPAL: &str = "hub";

/// What a link shares with the rest of the agent.
pub(crate) struct LinkContext {
    pub engine: Engine,
    pub config: Arc<EdgeConfig>,
    /// Plain TCP, or TLS with the roots the hub's certificate is checked against.
    pub hub_transport: Transport,
    pub availability: Arc<Availability>,
    pub watermarks: Arc<Watermarks>,
}

/// Why a sync is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wanted {
    /// Local changes may be waiting: send them, if there are any.
    Send,
    /// Ask for the hub's state even with nothing to send.
    Fetch,
}

struct InFlight {
    /// The last local version the request covers.
    token: u64,
    sent_at: Instant,
}

struct Link {
    context: Arc<LinkContext>,
    key: TwinKey,
    client: AsyncClient,
    connected: bool,
    /// Why the last attempt to reach the hub failed, when it was a refusal the operator must
    /// fix (a certificate, a password): logged as a warning once, not at every retry.
    refused_because: Option<String>,
    /// The wait before the next attempt after a refusal: doubled at each refusal up to
    /// [`MAX_REFUSED_RETRY_DELAY`], back to `--reconnect-delay` once the link is up.
    refused_retry_delay: Duration,
    wanted: Option<Wanted>,
    in_flight: Option<InFlight>,
}

/// Runs `device`'s link until `stop` turns true.
pub(crate) async fn run(
    context: Arc<LinkContext>,
    device: DeviceCredential,
    mut stop: watch::Receiver<bool>,
) {
    let config = context.config.clone();
    // Checked by `EdgeConfig::validate` before the agent started.
    let Ok(hub) = config.hub_address() else {
        return;
    };
    let thing = device.device.as_str().to_owned();
    let mut options = MqttOptions::new(
        format!("{}.{thing}", config.replica.id),
        hub.host.as_str(),
        hub.port,
    );
    // Over TLS, rumqttc checks the certificate against the host given above.
    options.set_transport(context.hub_transport.clone());
    options.set_credentials(
        format!("{}/devices/{thing}", config.tenant),
        device.password.clone(),
    );
    options.set_keep_alive(config.keep_alive);
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, CLIENT_QUEUE);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(config.keep_alive.as_secs().max(1));
    events.set_network_options(network);
    let mut changes = context.engine.subscribe();
    let mut command_events = context.engine.commands().subscribe();
    let mut ticks = tokio::time::interval(config.sync_interval);
    let mut link = Link {
        key: TwinKey::new(config.tenant.clone(), device.device.clone()),
        context,
        client,
        connected: false,
        refused_because: None,
        refused_retry_delay: config.reconnect_delay,
        wanted: Some(Wanted::Fetch),
        in_flight: None,
    };
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = events.poll() => {
                if !link.on_event(event, &mut stop).await {
                    break;
                }
            }
            change = changes.recv() => match change {
                Ok(change) if change.key == link.key => link.want(Wanted::Send),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => link.want(Wanted::Send),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            event = command_events.recv() => match event {
                Ok(event) if event.key == link.key
                    && matches!(event.kind, CommandEventKind::Acknowledged | CommandEventKind::AcknowledgedLate) => {
                    link.forward_acknowledgement(&event.command);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ticks.tick() => {
                let timeout = link.context.config.answer_timeout;
                if link.in_flight.as_ref().is_some_and(|flight| flight.sent_at.elapsed() >= timeout) {
                    link.in_flight = None;
                }
                link.want(Wanted::Fetch);
            }
        }
        link.sync_if_wanted().await;
    }
    if link.connected {
        link.context
            .availability
            .link_down(link.key.device.as_str());
    }
    let _ = link.client.try_disconnect();
}

impl Link {
    fn thing(&self) -> &str {
        self.key.device.as_str()
    }

    fn want(&mut self, wanted: Wanted) {
        self.wanted = self.wanted.max(Some(wanted));
    }

    /// Handles one event of the connection; false when the agent is stopping.
    async fn on_event(
        &mut self,
        event: Result<Event, rumqttc::ConnectionError>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(device = self.thing(), "connected to the hub");
                self.refused_because = None;
                self.refused_retry_delay = self.context.config.reconnect_delay;
                if !self.connected {
                    self.connected = true;
                    self.context.availability.link_up(self.key.device.as_str());
                }
                self.in_flight = None;
                self.subscribe();
                self.want(Wanted::Fetch);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(&publish).await,
            Ok(_) => {}
            Err(err) => {
                let device = self.key.device.as_str();
                if self.connected {
                    tracing::warn!(device, error = %err, "lost the hub");
                    self.connected = false;
                    self.context.availability.link_down(device);
                }
                let refused = refusal(&err, &self.context.config);
                let delay = match &refused {
                    // A partition is the agent's daily life: worth a debug line only.
                    None => {
                        tracing::debug!(device, error = %err, "cannot reach the hub");
                        self.context.config.reconnect_delay
                    }
                    Some(reason) => {
                        if self.refused_because.as_ref() == Some(reason) {
                            tracing::debug!(device, "the hub cannot be linked to: {reason}");
                        } else {
                            tracing::warn!(device, hub = %self.context.config.hub, "the hub cannot be linked to: {reason}");
                            self.refused_because = Some(reason.clone());
                        }
                        let delay = self.refused_retry_delay;
                        self.refused_retry_delay = (delay * 2).min(MAX_REFUSED_RETRY_DELAY);
                        delay
                    }
                };
                let error = refused.clone().unwrap_or_else(|| err.to_string());
                self.context.availability.link_failed(
                    device,
                    error,
                    refused.is_some(),
                    SystemClock.now(),
                );
                self.in_flight = None;
                tokio::select! {
                    _ = stop.changed() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
        true
    }

    fn subscribe(&self) {
        let thing = self.thing();
        for topic in [
            topic::sync_answer(thing, Verdict::Accepted),
            topic::sync_answer(thing, Verdict::Rejected),
            shadow::answer(thing, None, ShadowAnswer::Documents),
            topic::command_delivery(thing, "+"),
        ] {
            if let Err(err) = self.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                tracing::warn!(device = thing, %topic, error = %err, "cannot subscribe");
            }
        }
    }

    async fn on_publish(&mut self, publish: &Publish) {
        let own = |thing: &str| thing == self.thing();
        match Topic::parse(&publish.topic) {
            // A change on the hub, of this thing or (should the hub say so) another.
            Topic::ShadowAnswer {
                answer: ShadowAnswer::Documents,
                ..
            } => self.want(Wanted::Fetch),
            Topic::SyncAnswer {
                thing,
                verdict: Verdict::Accepted,
            } if own(thing) => self.on_sync_answer(&publish.payload).await,
            Topic::SyncAnswer {
                thing,
                verdict: Verdict::Rejected,
            } if own(thing) => {
                tracing::warn!(
                    device = thing,
                    answer = %String::from_utf8_lossy(&publish.payload),
                    "the hub rejected a sync; it is sent again at the next sync interval"
                );
                self.in_flight = None;
            }
            Topic::CommandDelivery { thing, id } if own(thing) => {
                self.on_command(id, &publish.payload).await;
            }
            _ => {}
        }
    }

    async fn on_sync_answer(&mut self, payload: &[u8]) {
        let answer: SyncAccepted = match serde_json::from_slice(payload) {
            Ok(answer) => answer,
            Err(err) => {
                tracing::warn!(device = self.thing(), error = %err, "cannot read the hub's sync answer");
                return;
            }
        };
        let Some(flight) = &self.in_flight else {
            return;
        };
        if answer.token.as_u64() != Some(flight.token) {
            return;
        }
        let token = flight.token;
        if let Some(state) = answer.state {
            let request = UpdateRequest {
                change: Change::Merge(Box::new(state)),
                expected_version: None,
                changed_by: HUB_PRINCIPAL.to_owned(),
                change_reason: Some("synced from the hub".to_owned()),
                client_token: None,
                trace: None,
            };
            match self.context.engine.update(self.key.clone(), request).await {
                Ok(_) | Err(EngineError::Model(ModelError::TwinNotFound)) => {}
                Err(err) => {
                    tracing::error!(device = self.thing(), error = %err, "cannot merge the hub's state");
                    self.in_flight = None;
                    return;
                }
            }
        }
        if let Err(err) = self.context.watermarks.advance(self.thing(), token) {
            tracing::error!(device = self.thing(), error = %err, "cannot record the sync watermark");
        }
        self.in_flight = None;
        // More may have been written while this sync was in flight.
        self.want(Wanted::Send);
    }

    async fn sync_if_wanted(&mut self) {
        let Some(wanted) = self.wanted else {
            return;
        };
        if !self.connected || self.in_flight.is_some() {
            return;
        }
        let acknowledged = self.context.watermarks.get(self.thing());
        let query = HistoryQuery {
            kind: None,
            from: None,
            to: None,
            after_version: Some(acknowledged),
            limit: MAX_SYNC_CHANGES,
        };
        let entries = match self.context.engine.history(&self.key, query).await {
            Ok(entries) => entries.unwrap_or_default(),
            Err(err) => {
                tracing::error!(device = self.thing(), error = %err, "cannot read local history");
                return;
            }
        };
        self.wanted = None;
        let replica = self.context.config.replica.id.as_str();
        let changes: Vec<&ReplicaDelta> = own_changes(&entries, replica).collect();
        let token = entries.last().map_or(acknowledged, |entry| entry.version);
        if changes.is_empty() && wanted == Wanted::Send {
            if token > acknowledged
                && let Err(err) = self.context.watermarks.advance(self.thing(), token)
            {
                tracing::error!(device = self.thing(), error = %err, "cannot record the sync watermark");
            }
            return;
        }
        let body = SyncRequest {
            token: json!(token),
            changes,
        };
        let body = match serde_json::to_string(&body) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(device = self.thing(), error = %err, "cannot encode a sync");
                return;
            }
        };
        let topic = topic::sync_request(self.thing());
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, body)
        {
            Ok(()) => {
                self.in_flight = Some(InFlight {
                    token,
                    sent_at: Instant::now(),
                });
            }
            Err(err) => {
                tracing::debug!(device = self.thing(), error = %err, "cannot send a sync now");
                self.want(wanted);
            }
        }
    }

    /// Queues a command the hub delivered in the local queue, under the hub's id as its
    /// idempotency key, so a repeated delivery is recognised; one already acknowledged locally
    /// has its acknowledgement sent again (the first may have been lost with the link).
    async fn on_command(&mut self, hub_id: &str, payload: &[u8]) {
        let delivery = match serde_json::from_slice::<CommandDelivery>(payload) {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::warn!(device = self.thing(), error = %err, "a command delivery is not one");
                return;
            }
        };
        let now = SystemClock.now();
        let expires_at = delivery.expires().unwrap_or(now);
        let remaining = u64::try_from(expires_at.0 - now.0).unwrap_or(0);
        if remaining == 0 {
            return;
        }
        let request = NewCommand {
            kind: delivery.kind,
            payload: delivery.payload,
            priority: delivery.priority,
            ttl: Duration::from_millis(remaining),
            idempotency_key: Some(hub_id.to_owned()),
        };
        match self
            .context
            .engine
            .commands()
            .queue(self.key.clone(), request)
            .await
        {
            Ok(queued) => self.forward_acknowledgement(&queued.command),
            Err(err) => {
                tracing::warn!(device = self.thing(), command = hub_id, error = %err, "cannot queue a command from the hub")
            }
        }
    }

    /// Sends the hub the acknowledgement of a command it delivered, if the device gave one.
    fn forward_acknowledgement(&self, command: &Command) {
        let (Some(hub_id), Some(result)) = (&command.idempotency_key, command.result) else {
            return;
        };
        let body = match serde_json::to_string(&CommandAck::new(result, command.response.as_ref()))
        {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(device = self.thing(), error = %err, "cannot encode an acknowledgement");
                return;
            }
        };
        let topic = topic::command_ack(self.thing(), hub_id);
        if let Err(err) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, body)
        {
            tracing::debug!(device = self.thing(), error = %err, "cannot forward an acknowledgement now; the hub delivers the command again");
        }
    }
}

/// How the links reach the hub: plain TCP, or TLS that trusts the `--hub-ca-file` CAs (else
/// the system's) with the ring provider. Read once at start, so that a bad CA file stops the
/// start with its name.
pub(crate) fn transport(config: &EdgeConfig) -> Result<Transport, EdgeError> {
    if !config.hub_address()?.tls {
        return Ok(Transport::Tcp);
    }
    let roots =
        doppel_http::tls::client_roots(config.hub_ca_file.as_deref()).map_err(EdgeError::HubTls)?;
    // No client certificate: each link logs in with its device's password.
    let tls = doppel_http::tls::client_builder(roots)
        .map_err(EdgeError::HubTls)?
        .with_no_client_auth();
    Ok(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))))
}

/// Why connecting failed, in words, when retrying cannot help until the operator acts: the
/// hub's certificate (or the TLS set-up) failed, or the hub refused the device's credentials.
/// `None` for the failures a partition causes.
fn refusal(err: &ConnectionError, config: &EdgeConfig) -> Option<String> {
    match err {
        ConnectionError::Tls(TlsError::DNSName(_)) => Some(format!(
            "{:?} cannot be checked against a certificate; name the hub by a DNS name or an IP address",
            config.hub
        )),
        // Without a rustls error inside, the handshake failed on the network (the hub went
        // away mid-handshake): a partition like any other.
        ConnectionError::Tls(tls) => match doppel_http::tls::rustls_error(tls)? {
            rustls::Error::InvalidCertificate(reason) => {
                let ca = match &config.hub_ca_file {
                    Some(file) => format!("the CAs in {}", file.display()),
                    None => "the system's CAs (name the hub's CA with --hub-ca-file)".to_owned(),
                };
                Some(format!(
                    "the hub's certificate is not accepted ({reason}), checked against {ca} and the host in --hub"
                ))
            }
            other => Some(format!("the TLS handshake failed: {other}")),
        },
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => Some(
            "the hub refused the device's credentials: bad user name or password; check its password and --tenant"
                .to_owned(),
        ),
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => Some(
            "the hub refused the device's credentials: not authorised; check that its credential exists and is not revoked"
                .to_owned(),
        ),
        // The hub is starting, full, or backing off a login: a retry can succeed.
        _ => None,
    }
}
