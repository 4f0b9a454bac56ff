use super::*;
use crate::broker::fake::{FakeBroker, NOW, device, key, tenant};
use doppel_wire::shadow::ShadowOp;
use serde_json::json;

fn request(thing: &str, op: ShadowOp) -> ShadowRequest<'_> {
    ShadowRequest {
        thing,
        shadow: None,
        op,
    }
}

async fn send(broker: &FakeBroker, op: ShadowOp, payload: &Value, trace: Option<TraceParent>) {
    let payload = serde_json::to_vec(payload).expect("a JSON payload");
    let request = request("pump-1", op);
    let identity = Arc::new(device("pump-1"));
    prepare(broker, identity, request, &payload, Instant::now(), trace)
        .await
        .answer(broker)
        .await;
}

#[tokio::test]
async fn an_update_is_accepted_with_the_engines_clock_and_its_trace() {
    let broker = FakeBroker::start().await;
    let trace = TraceParent::new([7; 16], [9; 8], 1);
    let update = json!({"state": {"reported": {"temp": 21}}, "clientToken": "c-1"});
    send(&broker, ShadowOp::Update, &update, trace).await;

    let answer = broker.take_one();
    assert_eq!(answer.tenant, tenant());
    assert_eq!(answer.topic, "$aws/things/pump-1/shadow/update/accepted");
    assert_eq!(answer.trace, trace);
    let seconds = NOW.unix_seconds();
    assert_eq!(answer.body["timestamp"], seconds);
    assert_eq!(
        answer.body["metadata"]["reported"]["temp"]["timestamp"],
        seconds
    );
    assert_eq!(answer.body["state"]["reported"]["temp"], 21);
    assert_eq!(answer.body["clientToken"], "c-1");
    assert_eq!(answer.body["version"], 1);
    let twin = broker
        .engine_handle()
        .get(&key("pump-1"))
        .expect("the engine reads")
        .expect("the update made the twin");
    assert_eq!(twin.reported.state["temp"], 21);
    assert_eq!(twin.updated_at, NOW);
    // The device's own twin, which did not exist when it connected, now records it connected.
    assert_eq!(broker.caught_up(), vec![key("pump-1")]);
}

#[tokio::test]
async fn a_malformed_update_is_rejected_in_aws_words_and_changes_nothing() {
    let broker = FakeBroker::start().await;
    send(
        &broker,
        ShadowOp::Update,
        &json!({"state": 5, "clientToken": "c-2"}),
        None,
    )
    .await;

    let answer = broker.take_one();
    assert_eq!(answer.topic, "$aws/things/pump-1/shadow/update/rejected");
    assert_eq!(answer.body["code"], 400);
    assert_eq!(answer.body["message"], "State node must be an object");
    assert_eq!(answer.body["clientToken"], "c-2");
    assert_eq!(answer.body["timestamp"], NOW.unix_seconds());
    let twin = broker
        .engine_handle()
        .get(&key("pump-1"))
        .expect("the engine reads");
    assert!(twin.is_none(), "a rejected update made a twin: {twin:?}");
    assert!(broker.caught_up().is_empty());
}

#[tokio::test]
async fn a_get_of_a_missing_shadow_is_rejected_404() {
    let broker = FakeBroker::start().await;
    send(&broker, ShadowOp::Get, &json!({"clientToken": "c-3"}), None).await;

    let answer = broker.take_one();
    assert_eq!(answer.topic, "$aws/things/pump-1/shadow/get/rejected");
    assert_eq!(answer.body["code"], 404);
    assert_eq!(answer.body["clientToken"], "c-3");
}

#[tokio::test]
async fn a_request_after_the_engine_is_gone_is_answered_503() {
    let broker = FakeBroker::start().await;
    broker.release_engine();
    send(&broker, ShadowOp::Get, &json!({}), None).await;

    let answer = broker.take_one();
    assert_eq!(answer.topic, "$aws/things/pump-1/shadow/get/rejected");
    let expected = Rejection::shutting_down();
    assert_eq!(answer.body["code"], expected.code);
    assert_eq!(answer.body["message"], expected.message.as_str());
}
