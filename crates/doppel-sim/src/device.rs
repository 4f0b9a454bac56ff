//! One simulated device: its link phases, its connection and what it does while connected.
//!
//! A device's whole life is one future ([`Device::run`]). It waits for its connect slot, then
//! walks its link schedule: in an Up phase it connects (retrying after failures until the phase
//! ends), subscribes, reports at once and then every interval ± jitter, applies deltas and
//! acknowledges commands; at the end of the phase it closes the socket without a word, as a
//! partition would, and in a Down phase it waits. At the end of the run it sends DISCONNECT.
//!
//! The future holds the device's state below, its socket and one timer at a time; its size is
//! checked by a test, because it is most of the simulator's memory per device.

use std::time::Duration;

use doppel_netfault::{LinkState, Schedule};
use rand::rngs::SmallRng;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, Packet, PubAck, Publish, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use serde_json::Value;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::config::SimConfig;
use crate::connection::{Connection, ConnectionError};
use crate::limits::source_address;
use crate::payload::{ACK_SUCCEEDED, Delta, command_id, is_delta, periodic_report};
use crate::shard_state::{Event, SessionEnd, ShardState};
use crate::timing::{connect_offset, device_rng, link_schedule, report_delay};
use doppel_wire::shadow::{self, ShadowAnswer, ShadowOp};
use doppel_wire::topic;

/// How long a connection attempt (TCP handshake and CONNACK) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The mean pause before retrying a failed connection, within the same Up phase. Each pause is
/// drawn ± half of it, so that devices refused together do not come back together.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Unacknowledged publishes a device remembers, for latency and acknowledgement counts. The hub
/// acknowledges within milliseconds; past this many the oldest is forgotten (and stays counted
/// as sent but not acknowledged), so a hub that never answers cannot grow a device's memory.
pub const MAX_IN_FLIGHT: usize = 16;

/// One simulated device.
pub(crate) struct Device {
    /// Its position in its shard's counters.
    slot: usize,
    /// Its index in the run: fixes its name, seed, connect slot and source address.
    index: u32,
    /// Its thing name, which is also its MQTT client id.
    thing: String,
    /// Its own random choices: report jitter and sensor readings.
    rng: SmallRng,
    /// Its link's phases; `None` when the link never goes down.
    schedule: Option<Schedule>,
    /// The desired state it has applied, laid over every report; `None` until a delta comes.
    applied: Option<Value>,
    /// The version of the newest delta applied, to discard older ones that arrive late.
    delta_version: u64,
    /// The last packet id used; MQTT packet ids are 1..=65535.
    packet_id: u16,
    /// Publishes not yet acknowledged, oldest first.
    in_flight: Vec<InFlight>,
}

/// A QoS 1 publish waiting for its PUBACK.
struct InFlight {
    /// Its packet id.
    packet_id: u16,
    /// When it went out.
    sent: Instant,
    /// What it was, which decides what its PUBACK counts as.
    kind: PublishKind,
}

/// What a publish of the device was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PublishKind {
    /// A shadow update (a periodic report or one applying a delta).
    Report,
    /// A command acknowledgement.
    CommandAck,
}

/// Why the loop of a connected device stopped.
enum Wake {
    /// A packet came (or the connection failed).
    Packet(Result<Packet, ConnectionError>),
    /// A timer fired: a report, a keep-alive ping or the end of the phase is due.
    Timer,
}

impl Device {
    /// Device `index` of `config`, counted in `slot` of its shard.
    pub(crate) fn new(config: &SimConfig, slot: usize, index: u32) -> Device {
        Device {
            slot,
            index,
            thing: config.thing(index),
            rng: device_rng(config.seed, index),
            schedule: link_schedule(config.link.as_ref(), config.seed, index),
            applied: None,
            delta_version: 0,
            packet_id: 0,
            in_flight: Vec::new(),
        }
    }

    /// Lives the device's life: from its connect slot to the end of the run.
    ///
    /// Not an `async fn`: the arguments of an `async fn` are stored in its future twice (once as
    /// arguments, once as locals), and this future is what every device keeps for the whole
    /// run. An `async move` block captures the device once.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would store the device twice"
    )]
    pub(crate) fn run(mut self, shard: &ShardState) -> impl Future<Output = ()> + '_ {
        async move {
            let start = shard.start + connect_offset(self.index, shard.config.connect_rate);
            if start >= shard.end {
                return;
            }
            sleep_until(start).await;
            let mut phase_start = start;
            loop {
                let (state, length) = self
                    .schedule
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or((LinkState::Up, Duration::MAX));
                let phase_end = phase_start
                    .checked_add(length)
                    .map_or(shard.end, |end| end.min(shard.end));
                let down = state == LinkState::Down;
                shard.record(
                    self.slot,
                    Event::PhaseStarted {
                        down,
                        at: phase_start,
                    },
                );
                if down {
                    sleep_until(phase_end).await;
                } else {
                    self.up(shard, phase_end).await;
                }
                shard.record(self.slot, Event::PhaseEnded(phase_end));
                if phase_end >= shard.end {
                    return;
                }
                phase_start = phase_end;
            }
        }
    }

    /// An Up phase: connected as much of it as the hub allows.
    async fn up(&mut self, shard: &ShardState, phase_end: Instant) {
        loop {
            let now = Instant::now();
            if now >= phase_end {
                return;
            }
            let deadline = (now + CONNECT_TIMEOUT).min(phase_end);
            // Boxed: the connect future is large and lives only while connecting; inline, it
            // would widen the future that every device keeps for the whole run.
            let attempt = timeout_at(deadline, Box::pin(self.connect(shard))).await;
            let failure = match attempt {
                Ok(Ok(connection)) => {
                    shard.record(self.slot, Event::Connected);
                    let end = self.session(shard, connection, phase_end).await;
                    shard.record(self.slot, Event::SessionEnded(end));
                    if end != SessionEnd::Lost {
                        return;
                    }
                    None
                }
                Ok(Err(err)) => Some(err),
                // Cut short by the end of the phase: not the hub's failure.
                Err(_) if Instant::now() >= phase_end => return,
                Err(_) => Some(ConnectionError::Timeout),
            };
            if let Some(err) = failure {
                tracing::debug!(thing = %self.thing, %err, "connection attempt failed");
                let thing = &self.thing;
                shard.record(self.slot, Event::ConnectFailed { thing, err: &err });
            }
            let pause = report_delay(RETRY_DELAY, RETRY_DELAY / 2, &mut self.rng);
            sleep_until((Instant::now() + pause).min(phase_end)).await;
        }
    }

    /// Opens a connection and logs in.
    async fn connect(&self, shard: &ShardState) -> Result<Connection, ConnectionError> {
        let config = &shard.config;
        let mut connect = Connect::new(self.thing.as_str());
        connect.keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
        connect.clean_session = true;
        if let Some(credentials) = &config.credentials {
            connect.set_login(
                credentials.username(&self.thing),
                credentials.password.as_str(),
            );
        }
        let source = source_address(shard.hub.ip(), self.index);
        Connection::open(shard.hub, source, connect).await
    }

    /// One connection, until the phase ends or the connection is lost. (Not an `async fn`, for
    /// the reason given at [`Device::run`].)
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would store its arguments twice"
    )]
    fn session<'a>(
        &'a mut self,
        shard: &'a ShardState,
        mut connection: Connection,
        phase_end: Instant,
    ) -> impl Future<Output = SessionEnd> + 'a {
        async move {
            // A new connection with a clean session: whatever was in flight is gone.
            self.in_flight.clear();
            match self.converse(shard, &mut connection, phase_end).await {
                Ok(SessionEnd::RunOver) => {
                    // Best effort: the run is over whether or not the hub hears it.
                    let _ = timeout_at(
                        Instant::now() + CONNECT_TIMEOUT,
                        connection.send(Packet::Disconnect),
                    )
                    .await;
                    SessionEnd::RunOver
                }
                // A partition is silent: the socket just closes (dropped here).
                Ok(end) => end,
                Err(err) => {
                    tracing::debug!(thing = %self.thing, %err, "connection lost");
                    SessionEnd::Lost
                }
            }
        }
    }

    /// What a connected device does: subscribe, report, answer.
    async fn converse(
        &mut self,
        shard: &ShardState,
        connection: &mut Connection,
        phase_end: Instant,
    ) -> Result<SessionEnd, ConnectionError> {
        let config = &shard.config;
        // Commands first: on a reconnect the hub sends pending commands before the delta only
        // to a device subscribed to them first (docs/MQTT.md, "Order on reconnect").
        let mut subscribe = Subscribe::new_many([
            SubscribeFilter::new(topic::command_delivery(&self.thing, "+"), QoS::AtLeastOnce),
            SubscribeFilter::new(
                shadow::answer(&self.thing, None, ShadowAnswer::Delta),
                QoS::AtLeastOnce,
            ),
        ]);
        subscribe.pkid = self.next_packet_id();
        connection.send(Packet::Subscribe(subscribe)).await?;
        // A device reports its state as soon as it is connected.
        let mut next_report = Instant::now();
        loop {
            let ping_due = connection.last_sent() + config.keep_alive;
            let deadline = next_report.min(ping_due).min(phase_end);
            let wake = tokio::select! {
                packet = connection.receive() => Wake::Packet(packet),
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                // Boxed for the same reason as connecting: handling is brief, idling is not.
                Wake::Packet(packet) => Box::pin(self.handle(shard, connection, packet?)).await?,
                Wake::Timer => {
                    let now = Instant::now();
                    if now >= phase_end {
                        return Ok(if phase_end >= shard.end {
                            SessionEnd::RunOver
                        } else {
                            SessionEnd::Partition
                        });
                    }
                    if now >= next_report {
                        let uptime = now.saturating_duration_since(shard.start).as_secs();
                        let report = periodic_report(&mut self.rng, uptime, self.applied.as_ref());
                        Box::pin(self.report(shard, connection, report)).await?;
                        next_report =
                            now + report_delay(config.interval, config.jitter, &mut self.rng);
                    } else if now >= ping_due {
                        connection.send(Packet::PingReq).await?;
                    }
                }
            }
        }
    }

    /// Answers one packet from the hub.
    async fn handle(
        &mut self,
        shard: &ShardState,
        connection: &mut Connection,
        packet: Packet,
    ) -> Result<(), ConnectionError> {
        match packet {
            Packet::PubAck(PubAck { pkid }) => {
                let Some(position) = self.in_flight.iter().position(|p| p.packet_id == pkid) else {
                    return Ok(());
                };
                let acknowledged = self.in_flight.remove(position);
                let event = match acknowledged.kind {
                    PublishKind::Report => Event::ReportAcknowledged(acknowledged.sent.elapsed()),
                    PublishKind::CommandAck => Event::CommandAcknowledged,
                };
                shard.record(self.slot, event);
            }
            Packet::Publish(publish) => {
                self.on_publish(shard, connection, &publish).await?;
                if publish.qos == QoS::AtLeastOnce {
                    connection
                        .send(Packet::PubAck(PubAck::new(publish.pkid)))
                        .await?;
                }
            }
            Packet::SubAck(suback) => {
                let refused = suback
                    .return_codes
                    .iter()
                    .filter(|code| **code == SubscribeReasonCode::Failure)
                    .count();
                for _ in 0..refused {
                    shard.record(self.slot, Event::SubscribeFailed);
                }
            }
            Packet::Disconnect => return Err(ConnectionError::Closed),
            // PINGRESP, and anything a hub should not send a client, needs no answer.
            _ => {}
        }
        Ok(())
    }

    /// A message on one of the device's subscriptions: a delta to apply or a command to
    /// acknowledge.
    async fn on_publish(
        &mut self,
        shard: &ShardState,
        connection: &mut Connection,
        publish: &Publish,
    ) -> Result<(), ConnectionError> {
        if is_delta(&self.thing, &publish.topic) {
            let Some(delta) = Delta::parse(&publish.payload) else {
                tracing::debug!(thing = %self.thing, "ignoring an unreadable delta");
                return Ok(());
            };
            if delta.version < self.delta_version {
                return Ok(());
            }
            self.delta_version = delta.version;
            let report = delta.apply(&mut self.applied);
            shard.record(self.slot, Event::DeltaApplied);
            self.report(shard, connection, report).await?;
        } else if let Some(id) = command_id(&self.thing, &publish.topic) {
            let topic = topic::command_ack(&self.thing, id);
            self.publish(
                connection,
                topic,
                ACK_SUCCEEDED.to_vec(),
                PublishKind::CommandAck,
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes a shadow update.
    async fn report(
        &mut self,
        shard: &ShardState,
        connection: &mut Connection,
        payload: Vec<u8>,
    ) -> Result<(), ConnectionError> {
        let topic = shadow::request(&self.thing, None, ShadowOp::Update);
        self.publish(connection, topic, payload, PublishKind::Report)
            .await?;
        shard.record(self.slot, Event::ReportSent);
        Ok(())
    }

    /// Publishes at QoS 1 and remembers the publish until its PUBACK.
    async fn publish(
        &mut self,
        connection: &mut Connection,
        topic: String,
        payload: Vec<u8>,
        kind: PublishKind,
    ) -> Result<(), ConnectionError> {
        let packet = self.prepare_publish(topic, payload, kind);
        connection.send(packet).await
    }

    /// The QoS 1 publish of `payload` on `topic`, with its packet id, remembered as in flight.
    fn prepare_publish(&mut self, topic: String, payload: Vec<u8>, kind: PublishKind) -> Packet {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.pkid = self.next_packet_id();
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.remove(0);
        }
        self.in_flight.push(InFlight {
            packet_id: publish.pkid,
            sent: Instant::now(),
            kind,
        });
        Packet::Publish(publish)
    }

    /// The next packet id: 1, 2, ... 65535, 1, ... (0 is not a valid id).
    fn next_packet_id(&mut self) -> u16 {
        self.packet_id = self.packet_id.checked_add(1).unwrap_or(1);
        self.packet_id
    }
}

#[cfg(test)]
mod tests;
