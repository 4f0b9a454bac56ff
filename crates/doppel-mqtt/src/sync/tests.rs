use super::*;
use crate::broker::fake::{FakeBroker, NOW, device};
use serde_json::json;

async fn send(broker: &FakeBroker, request: &Value) {
    let payload = serde_json::to_vec(request).expect("a JSON payload");
    handle(broker, &device("pump-1"), "pump-1", &payload).await;
}

/// The body of the one answer published, which must be on the rejected topic.
fn rejection(broker: &FakeBroker) -> Value {
    broker.take_on(&topic::sync_answer("pump-1", topic::Verdict::Rejected))
}

fn changes(count: usize, origin: &str) -> Vec<ReplicaDelta> {
    let change = ReplicaDelta {
        origin: origin.into(),
        ..ReplicaDelta::default()
    };
    vec![change; count]
}

#[tokio::test]
async fn more_than_max_sync_changes_are_rejected_400_with_the_token() {
    let broker = FakeBroker::start().await;
    let request = json!({"token": "s-1", "changes": changes(MAX_SYNC_CHANGES + 1, "edge-1")});
    send(&broker, &request).await;

    let answer = rejection(&broker);
    assert_eq!(answer["code"], 400);
    assert_eq!(answer["token"], "s-1");
    assert_eq!(answer["timestamp"], NOW.unix_seconds());
}

#[tokio::test]
async fn a_change_claiming_the_hubs_origin_is_rejected_400() {
    let broker = FakeBroker::start().await;
    let hub = broker.engine_handle().replica().id.clone();
    send(&broker, &json!({"token": 2, "changes": changes(1, &hub)})).await;

    let answer = rejection(&broker);
    assert_eq!(answer["code"], 400);
    assert_eq!(answer["token"], 2);
}

#[tokio::test]
async fn a_request_that_does_not_parse_is_rejected_400_with_its_token() {
    let broker = FakeBroker::start().await;
    send(&broker, &json!({"token": "s-3", "changes": 7})).await;

    let answer = rejection(&broker);
    assert_eq!(answer["code"], 400);
    assert_eq!(answer["token"], "s-3");
}

#[tokio::test]
async fn a_fetch_of_a_missing_twin_is_accepted_with_no_state() {
    let broker = FakeBroker::start().await;
    send(&broker, &json!({"token": "s-4"})).await;

    let answer = broker.take_on(&topic::sync_answer("pump-1", topic::Verdict::Accepted));
    let accepted: SyncAccepted = serde_json::from_value(answer).expect("a sync answer");
    assert_eq!(accepted.merged, 0);
    assert_eq!(accepted.state, None);
    assert_eq!(accepted.token, "s-4");
}

#[tokio::test]
async fn a_sync_after_the_engine_is_gone_is_answered_503() {
    let broker = FakeBroker::start().await;
    broker.release_engine();
    send(&broker, &json!({"token": "s-5", "changes": []})).await;

    let answer = rejection(&broker);
    let expected = Rejection::shutting_down();
    assert_eq!(answer["code"], expected.code);
    assert_eq!(answer["message"], expected.message.as_str());
    assert_eq!(answer["token"], "s-5");
}
