//! MQTT 5 end to end with rumqttc's v5 client: QoS 2, reason codes for refused publishes and
//! subscriptions, and the reason a too-large packet closes a connection with.

mod common;

use common::Server;
use common::mqtt5::Client5;
use common::topic::{self, ShadowOp};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};
use std::time::Duration;

const WAIT: Duration = common::mqtt::WAIT;

#[tokio::test(flavor = "multi_thread")]
async fn qos2_and_shadow_topics_work_over_mqtt5() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    let mut pump = Client5::connect(&server, "pump-51").await;
    let granted = pump
        .subscribe(
            &topic::accepted("pump-51", ShadowOp::Update),
            QoS::ExactlyOnce,
        )
        .await;
    assert_eq!(granted, SubscribeReasonCode::Success(QoS::ExactlyOnce));
    pump.publish(
        &topic::request("pump-51", ShadowOp::Update),
        QoS::ExactlyOnce,
        r#"{"state":{"reported":{"v":5}}}"#,
    )
    .await;
    let accepted = pump.next_message().await;
    assert_eq!(
        &accepted.topic[..],
        topic::accepted("pump-51", ShadowOp::Update).as_bytes()
    );
    let body: serde_json::Value = serde_json::from_slice(&accepted.payload).unwrap();
    assert_eq!(body["state"]["reported"]["v"], 5);

    let granted = pump.subscribe("telemetry/#", QoS::ExactlyOnce).await;
    assert_eq!(granted, SubscribeReasonCode::Success(QoS::ExactlyOnce));
    pump.publish("telemetry/q2", QoS::ExactlyOnce, "exactly once")
        .await;
    let message = pump.next_message().await;
    assert_eq!(message.qos, QoS::ExactlyOnce);
    assert_eq!(&message.payload[..], b"exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_mqtt5_reason_codes() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    let mut pump = Client5::connect(&server, "pump-52").await;
    let refused = pump
        .subscribe(&topic::everything("pump-53"), QoS::AtLeastOnce)
        .await;
    assert_eq!(refused, SubscribeReasonCode::NotAuthorized);
    let reason = pump
        .publish_acked(
            &topic::request("pump-53", ShadowOp::Update),
            r#"{"state":{"reported":{"x":1}}}"#,
        )
        .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);
    // Nobody may forge the hub's answers, not even on its own thing's topics.
    let reason = pump
        .publish_acked(&topic::delta("pump-52"), r#"{"state":{"x":1}}"#)
        .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);
    // The connection stays usable after a refusal.
    let reason = pump.publish_acked("telemetry/ok", "fine").await;
    assert_eq!(reason, PubAckReason::Success);
}

/// Connects over MQTT 5 with raw bytes, sends `offence`, and returns the reason code of the
/// DISCONNECT the broker answers with (raw, because a well-behaved client library refuses to
/// send what the broker said it won't take).
fn disconnect_reason_for(server: &Server, client_id: &str, offence: &[u8]) -> u8 {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(server.mqtt).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0];
    connect.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    connect.extend_from_slice(client_id.as_bytes());
    socket
        .write_all(&common::raw::packet(0x10, &connect))
        .unwrap();
    socket.write_all(offence).unwrap();
    let mut received = Vec::new();
    let _ = socket.read_to_end(&mut received);
    // CONNACK first; then a DISCONNECT (0xE0) whose first byte is the reason code.
    assert_eq!(received.first(), Some(&0x20), "{received:x?}");
    let connack_len = usize::from(received[1]) + 2;
    let rest = &received[connack_len..];
    assert_eq!(
        rest.first(),
        Some(&0xE0),
        "expected DISCONNECT after CONNACK: {received:x?}"
    );
    rest[2]
}

#[test]
fn protocol_violations_close_the_connection_with_their_mqtt5_reason_code() {
    let server = Server::start_with(&[
        "--mqtt-allow-anonymous",
        "true",
        "--mqtt-max-packet-bytes",
        "2048",
    ]);
    // Only the fixed header of a 4 KiB PUBLISH: the broker refuses it from the announced length
    // alone, and bytes it never read would make the kernel reset the connection and drop the
    // DISCONNECT before we could read it.
    let mut too_large = vec![0x30];
    too_large.extend(common::raw::remaining_length(4096));
    assert_eq!(
        disconnect_reason_for(&server, "big-5", &too_large),
        0x95,
        "packet too large"
    );

    // A PUBLISH whose topic name holds a wildcard.
    let mut publish = vec![0, 3, b'a', b'/', b'+', 0];
    publish.extend_from_slice(b"x");
    let reason = disconnect_reason_for(&server, "wild-5", &common::raw::packet(0x30, &publish));
    assert_eq!(reason, 0x90, "topic name invalid");
}
