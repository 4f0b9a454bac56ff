use super::*;
use crate::broker::fake::{FakeBroker, NOW, device, key};
use doppel_model::command::NewCommand;
use std::time::Duration;

async fn ack(broker: &FakeBroker, id: &str, payload: &[u8]) {
    handle_ack(broker, &device("pump-1"), "pump-1", id, payload).await;
}

/// The one answer published, which must be on the rejected topic of the ack of `id`; its body.
fn rejection_of(broker: &FakeBroker, id: &str) -> Value {
    broker.take_on(&topic::command_ack_answer("pump-1", id, Verdict::Rejected))
}

#[tokio::test]
async fn a_delivered_command_is_acknowledged_and_the_ack_accepted() {
    let broker = FakeBroker::start().await;
    let queued = broker
        .engine_handle()
        .commands()
        .queue(
            key("pump-1"),
            NewCommand {
                kind: "reboot".into(),
                payload: json!({"delay": 5}),
                priority: 0,
                ttl: Duration::from_secs(3600),
                idempotency_key: None,
            },
        )
        .await
        .expect("the command is queued");
    let id = queued.command.id.clone();

    deliver(&broker, &key("pump-1"), false).await;
    let delivery = broker.take_one();
    assert_eq!(delivery.topic, topic::command_delivery("pump-1", &id));
    assert_eq!(delivery.body["type"], "reboot");
    assert_eq!(delivery.body["payload"], json!({"delay": 5}));
    assert_eq!(delivery.body["attempt"], 1);
    assert_eq!(delivery.body["repeat"], false);

    ack(
        &broker,
        &id,
        br#"{"status": "SUCCEEDED", "response": {"ok": true}}"#,
    )
    .await;
    let answer = broker.take_one();
    assert_eq!(
        answer.topic,
        topic::command_ack_answer("pump-1", &id, Verdict::Accepted)
    );
    assert_eq!(answer.body["id"], id.as_str());
    assert_eq!(answer.body["status"], "ACKNOWLEDGED");
}

#[tokio::test]
async fn an_ack_of_an_unknown_command_is_rejected_404() {
    let broker = FakeBroker::start().await;
    ack(&broker, "no-such-command", br#"{"status": "SUCCEEDED"}"#).await;

    let rejection = rejection_of(&broker, "no-such-command");
    assert_eq!(rejection["code"], 404);
    assert_eq!(rejection["timestamp"], NOW.unix_seconds());
}

#[tokio::test]
async fn a_malformed_ack_is_rejected_400_before_the_engine_is_asked() {
    let broker = FakeBroker::start().await;
    // Were the engine asked, it would answer 503.
    broker.release_engine();
    ack(&broker, "c-1", br#"{"status": "DONE"}"#).await;

    assert_eq!(rejection_of(&broker, "c-1")["code"], 400);
}

#[tokio::test]
async fn an_ack_after_the_engine_is_gone_is_answered_503() {
    let broker = FakeBroker::start().await;
    broker.release_engine();
    ack(&broker, "c-1", br#"{"status": "FAILED"}"#).await;

    let rejection = rejection_of(&broker, "c-1");
    let expected = Rejection::shutting_down();
    assert_eq!(rejection["code"], expected.code);
    assert_eq!(rejection["message"], expected.message.as_str());
}
