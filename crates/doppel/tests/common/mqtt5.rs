//! An MQTT 5 client (rumqttc's v5) for end-to-end tests: every incoming packet lands in a
//! channel, so a test can wait for the one it expects.

use super::Server;
use super::mqtt::WAIT;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Packet, PubAckReason, Publish, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::time::Duration;
use tokio::sync::mpsc;

/// A v5 client whose every incoming packet (or the error that ended it) lands in a channel.
pub struct Client5 {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client5 {
    pub async fn connect(server: &Server, client_id: &str) -> Client5 {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", server.mqtt.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        let _ = tx.send(Ok(packet));
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(err) => {
                        let _ = tx.send(Err(err.to_string()));
                        return;
                    }
                }
            }
        });
        let mut client = Client5 {
            client,
            incoming,
            task,
        };
        let connack = client.next(|p| matches!(p, Packet::ConnAck(_))).await;
        assert!(matches!(connack, Ok(Packet::ConnAck(_))), "{connack:?}");
        client
    }

    /// The next incoming packet that `wanted` accepts, or the error that ended the connection.
    pub async fn next(&mut self, wanted: impl Fn(&Packet) -> bool) -> Result<Packet, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Ok(packet))) if wanted(&packet) => return Ok(packet),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(err))) => return Err(err),
                Ok(None) => return Err("event loop ended".into()),
                Err(_) => panic!("nothing wanted arrived within {WAIT:?}"),
            }
        }
    }

    /// Publishes `payload` on `topic` at `qos`, not retained.
    pub async fn publish(&self, topic: &str, qos: QoS, payload: &str) {
        self.client
            .publish(topic, qos, false, payload.to_owned())
            .await
            .unwrap();
    }

    /// Publishes at QoS 1 and returns the reason code of the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.publish(topic, QoS::AtLeastOnce, payload).await;
        match self.next(|p| matches!(p, Packet::PubAck(_))).await {
            Ok(Packet::PubAck(ack)) => ack.reason,
            other => panic!("no PUBACK: {other:?}"),
        }
    }

    /// The next message delivered to this client.
    pub async fn next_message(&mut self) -> Publish {
        match self.next(|p| matches!(p, Packet::Publish(_))).await {
            Ok(Packet::Publish(message)) => message,
            other => panic!("no delivery: {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.client.subscribe(filter, qos).await.unwrap();
        match self.next(|p| matches!(p, Packet::SubAck(_))).await {
            Ok(Packet::SubAck(ack)) => ack.return_codes[0],
            other => panic!("no SUBACK: {other:?}"),
        }
    }

    /// Publishes at QoS 1 with MQTT 5 user properties, not retained.
    pub async fn publish_with_user_properties(
        &self,
        topic: &str,
        payload: &str,
        user_properties: &[(&str, &str)],
    ) {
        let properties = PublishProperties {
            user_properties: user_properties
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                payload.to_owned(),
                properties,
            )
            .await
            .unwrap();
    }
}
