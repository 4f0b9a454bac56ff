//! A real MQTT client (rumqttc, MQTT 3.1.1) for end-to-end tests, with bounded waits.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, SubscribeReasonCode,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest wait for one expected message.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|err| panic!("{} is not JSON ({err}): {:?}", self.topic, self.payload))
    }
}

/// A connected client; dropping it closes the socket without DISCONNECT.
pub struct Mqtt {
    pub client: AsyncClient,
    /// What the CONNACK said of a kept session.
    pub session_present: bool,
    messages: mpsc::UnboundedReceiver<Received>,
    /// Messages received while waiting for another topic, oldest first.
    unclaimed: VecDeque<Received>,
    /// Fires when DISCONNECT has been written.
    disconnect_sent: mpsc::UnboundedReceiver<()>,
    /// One item per PUBACK received.
    pubacks: mpsc::UnboundedReceiver<()>,
    acks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    /// Resolves with the error that ended the connection.
    ended: mpsc::UnboundedReceiver<ConnectionError>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
pub struct Options {
    pub credentials: Option<(String, String)>,
    pub clean_session: bool,
    pub keep_alive: Duration,
    pub last_will: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            credentials: None,
            clean_session: true,
            keep_alive: Duration::from_secs(30),
            last_will: None,
        }
    }
}

/// Connects anonymously.
pub async fn connect(addr: SocketAddr, client_id: &str) -> Mqtt {
    connect_with(addr, client_id, Options::default())
        .await
        .unwrap_or_else(|err| panic!("{client_id} could not connect: {err:?}"))
}

/// A device connected anonymously as `thing` and subscribed to every answer of its classic
/// shadow and of its named shadows.
pub async fn device(server: &super::Server, thing: &str) -> Mqtt {
    let mut device = connect(server.mqtt, thing).await;
    device.subscribe(&super::topic::everything(thing)).await;
    device
}

/// Connects as `username`.
pub async fn login(addr: SocketAddr, client_id: &str, username: &str, password: &str) -> Mqtt {
    let options = Options {
        credentials: Some((username.into(), password.into())),
        ..Options::default()
    };
    connect_with(addr, client_id, options)
        .await
        .unwrap_or_else(|err| panic!("{client_id} could not log in: {err:?}"))
}

/// Connects; `Err` with the refusal code when the broker refuses.
pub async fn connect_with(
    addr: SocketAddr,
    client_id: &str,
    options: Options,
) -> Result<Mqtt, ConnectReturnCode> {
    let mut mqtt = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    mqtt.set_keep_alive(options.keep_alive);
    mqtt.set_clean_session(options.clean_session);
    mqtt.set_max_packet_size(1024 * 1024, 1024 * 1024);
    if let Some((username, password)) = options.credentials {
        mqtt.set_credentials(username, password);
    }
    if let Some((topic, message)) = options.last_will {
        mqtt.set_last_will(LastWill::new(topic, message, QoS::AtLeastOnce, false));
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, 256);
    // rumqttc writes a PUBACK and the next PUBLISH separately: with Nagle on, the second waits
    // ~40 ms for the broker's delayed ACK, which would make every request-answer test slow.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let session_present = match tokio::time::timeout(WAIT, eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => ack.session_present,
        Ok(Err(ConnectionError::ConnectionRefused(code))) => return Err(code),
        other => panic!("{client_id}: expected a CONNACK, got {other:?}"),
    };
    let (messages_tx, messages) = mpsc::unbounded_channel();
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let (disconnect_tx, disconnect_sent) = mpsc::unbounded_channel();
    let (puback_tx, pubacks) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let _ = messages_tx.send(Received {
                        topic: publish.topic.clone(),
                        payload: publish.payload.to_vec(),
                        retain: publish.retain,
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let _ = acks_tx.send(ack.return_codes);
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let _ = puback_tx.send(());
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let _ = disconnect_tx.send(());
                }
                Ok(_) => {}
                Err(err) => {
                    let _ = ended_tx.send(err);
                    return;
                }
            }
        }
    });
    Ok(Mqtt {
        client,
        session_present,
        messages,
        unclaimed: VecDeque::new(),
        disconnect_sent,
        pubacks,
        acks,
        ended,
        task,
    })
}

impl Mqtt {
    /// Subscribes at QoS 1 and returns whether the broker granted it.
    pub async fn try_subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        let codes = tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter}"))
            .expect("connection alive");
        matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)])
    }

    pub async fn subscribe(&mut self, filter: &str) {
        assert!(
            self.try_subscribe(filter).await,
            "SUBSCRIBE {filter} refused"
        );
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue PUBLISH");
    }

    /// Publishes `payload` as an update of `thing`'s classic shadow and waits for its accepted
    /// answer, which the caller subscribed to.
    pub async fn update_accepted(&mut self, thing: &str, payload: impl Into<Vec<u8>>) -> Value {
        use super::topic::{ShadowOp, accepted, request};
        self.publish(&request(thing, ShadowOp::Update), payload)
            .await;
        self.recv_json(&accepted(thing, ShadowOp::Update)).await
    }

    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .expect("queue PUBLISH");
    }

    /// Waits for the broker's PUBACK of an earlier QoS 1 publish: it has taken the message.
    pub async fn acked(&mut self) {
        tokio::time::timeout(WAIT, self.pubacks.recv())
            .await
            .expect("a PUBACK")
            .expect("connection alive");
    }

    /// Publishes at QoS 1 unless the connection has ended; returns whether it was queued.
    pub async fn try_publish_json(&self, topic: &str, body: &Value) -> bool {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await
            .is_ok()
    }

    pub async fn publish_json(&self, topic: &str, body: &Value) {
        self.publish(topic, body.to_string()).await;
    }

    /// The next message on exactly `topic` within `wait`, or `None` when none came or the
    /// connection ended (a server that was killed).
    pub async fn try_recv_on(&mut self, topic: &str, wait: Duration) -> Option<Received> {
        if let Some(index) = self.unclaimed.iter().position(|m| m.topic == topic) {
            return self.unclaimed.remove(index);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .ok()??;
            if message.topic == topic {
                return Some(message);
            }
            self.unclaimed.push_back(message);
        }
    }

    /// The next message on exactly `topic`; messages on other topics stay for later calls.
    pub async fn recv_on(&mut self, topic: &str) -> Received {
        self.recv_where(topic, |t| t == topic).await
    }

    /// The first message whose topic `wanted` accepts (`what` names them in a failure).
    pub async fn recv_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Received {
        if let Some(index) = self.unclaimed.iter().position(|m| wanted(&m.topic))
            && let Some(message) = self.unclaimed.remove(index)
        {
            return message;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no message on {what} within {WAIT:?}"))
                .expect("connection alive");
            if wanted(&message.topic) {
                return message;
            }
            self.unclaimed.push_back(message);
        }
    }

    /// The next message on any topic, in arrival order.
    pub async fn recv_any(&mut self) -> Received {
        if let Some(message) = self.unclaimed.pop_front() {
            return message;
        }
        tokio::time::timeout(WAIT, self.messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?}"))
            .expect("connection alive")
    }

    pub async fn recv_json(&mut self, topic: &str) -> Value {
        self.recv_on(topic).await.json()
    }

    /// Asserts that nothing arrives on `topic` for `quiet`.
    pub async fn expect_silence(&mut self, topic: &str, quiet: Duration) {
        if let Some(message) = self.unclaimed.iter().find(|m| m.topic == topic) {
            panic!(
                "unexpected message on {topic}: {}",
                String::from_utf8_lossy(&message.payload)
            );
        }
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.messages.recv()).await
        {
            assert_ne!(
                message.topic,
                topic,
                "unexpected message on {topic}: {}",
                String::from_utf8_lossy(&message.payload)
            );
        }
    }

    /// Asserts that no message at all arrives for `quiet`.
    pub async fn expect_nothing(&mut self, quiet: Duration) {
        if let Some(message) = self.unclaimed.front() {
            panic!("unexpected message on {}", message.topic);
        }
        if let Ok(Some(message)) = tokio::time::timeout(quiet, self.messages.recv()).await {
            panic!(
                "unexpected message on {}: {}",
                message.topic,
                String::from_utf8_lossy(&message.payload)
            );
        }
    }

    /// Whether the connection is still up: the broker has not ended it.
    pub fn is_open(&mut self) -> bool {
        matches!(
            self.ended.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty)
        )
    }

    /// Waits until the broker ends the connection.
    pub async fn closed(&mut self) -> ConnectionError {
        tokio::time::timeout(WAIT, self.ended.recv())
            .await
            .expect("the broker did not close the connection")
            .expect("one ending")
    }

    /// Sends DISCONNECT and waits until it is out; then closes the socket.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        tokio::time::timeout(WAIT, self.disconnect_sent.recv())
            .await
            .expect("DISCONNECT written");
    }
}
