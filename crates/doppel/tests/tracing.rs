//! Trace context end to end: a W3C `traceparent` sent with an HTTP write or as an MQTT 5 user
//! property comes out on the change-stream events and MQTT messages the change causes, and the
//! JSON log lines of the request carry its trace id. And the request log: what a caller is told
//! on purpose (a refusal, "not ready yet") is no error in the server's log.

mod common;

use common::mqtt5::Client5;
use common::sse::SseClient;
use common::topic::{self, ShadowOp};
use common::{Server, Serving, doppel_command, http_client};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TWINS: &str = "/v1/tenants/default/twins";

async fn patch_desired(server: &Server, device: &str, traceparent: &str) {
    let response = common::http_client()
        .patch(server.url(&format!("{TWINS}/{device}/desired")))
        .header("traceparent", traceparent)
        .json(&json!({"speed": 3}))
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), 200, "an invalid traceparent is ignored");
}

#[tokio::test]
async fn an_http_traceparent_reaches_the_change_stream() {
    let server = Server::start();
    let mut stream = SseClient::open(&server, "?types=twin.*", None).await;
    patch_desired(&server, "pump-1", TRACEPARENT).await;
    for expected in ["twin.desired", "twin.delta"] {
        let event = stream.expect().await;
        assert_eq!(event.event, expected);
        assert_eq!(event.data["traceparent"], TRACEPARENT, "{}", event.data);
    }
    // W3C: a malformed header starts a new trace; the write still succeeds, untraced.
    patch_desired(&server, "pump-2", "00-not-a-trace-01").await;
    let event = stream.expect().await;
    assert_eq!(event.data["device_id"], "pump-2");
    assert_eq!(event.data.get("traceparent"), None, "{}", event.data);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mqtt5_traceparent_reaches_the_stream_and_the_messages_it_causes() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    let mut stream = SseClient::open(&server, "?types=twin.reported", None).await;
    let mut pump = Client5::connect(&server, "pump-7").await;
    pump.subscribe(&topic::documents("pump-7"), QoS::AtLeastOnce)
        .await;
    pump.publish_with_user_properties(
        &topic::request("pump-7", ShadowOp::Update),
        r#"{"state":{"reported":{"t":21}}}"#,
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    let event = stream.expect().await;
    assert_eq!(event.data["device_id"], "pump-7");
    assert_eq!(event.data["traceparent"], TRACEPARENT, "{}", event.data);
    let documents = pump.next_message().await;
    assert_eq!(&documents.topic[..], topic::documents("pump-7").as_bytes());
    let properties = documents.properties.expect("MQTT 5 properties");
    assert!(
        properties
            .user_properties
            .contains(&("traceparent".to_owned(), TRACEPARENT.to_owned())),
        "{:?}",
        properties.user_properties
    );
}

#[tokio::test]
async fn json_logs_of_a_traced_request_carry_its_trace_id() {
    let (server, stderr) =
        Server::start_capturing_stderr(&["--log-format", "json", "--log-level", "debug"]);
    patch_desired(&server, "pump-1", TRACEPARENT).await;
    // The request's last log line ("finished processing request") may follow the response.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut traced = Vec::new();
    while traced.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = stderr.recv_timeout(left) else {
            break;
        };
        let entry: Value = serde_json::from_str(&line).expect("every log line is JSON");
        if line.contains(TRACE_ID) {
            traced.push(entry);
        }
    }
    assert!(
        !traced.is_empty(),
        "no log line carries the trace id {TRACE_ID}"
    );
    let spans: Vec<&str> = traced
        .iter()
        .flat_map(|entry| entry["spans"].as_array().into_iter().flatten())
        .filter(|span| span["trace_id"] == TRACE_ID)
        .filter_map(|span| span["name"].as_str())
        .collect();
    assert!(
        spans.contains(&"request") && spans.contains(&"engine.update"),
        "the request and engine spans record the trace id: {traced:?}"
    );
}

/// Twins in the store of the readiness test: enough that loading them keeps `/readyz` at 503
/// for a while (about 0.3 s on a debug build), few enough to seed in seconds.
const TWINS_TO_LOAD: usize = 10_000;

#[tokio::test]
async fn refusals_and_readiness_probes_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = dir.path().join("store");
    common::seed_store(&store, TWINS_TO_LOAD);
    // The default log level, as an operator runs it; the harness's servers log at warn.
    let mut serving = Serving::spawn(&store, &[]);
    let base = serving.base();
    let http = http_client();
    let deadline = Instant::now() + common::START_TIMEOUT;
    let mut not_ready = 0;
    loop {
        let response = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("/readyz answers");
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.expect("a problem document");
        assert_eq!(body["code"], "not_ready", "{body}");
        not_ready += 1;
        assert!(Instant::now() < deadline, "the hub never became ready");
    }
    assert!(
        not_ready > 0,
        "the store loaded before /readyz was asked: seed more than {TWINS_TO_LOAD} twins"
    );
    let bad_json = http
        .patch(format!("{base}{TWINS}/pump-1/desired"))
        .header("content-type", "application/json")
        .body("{\"speed\": ")
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad_json.status(), 400);
    let unknown = http.get(format!("{base}/v1/nothing-here")).send().await;
    assert_eq!(unknown.expect("an answer").status(), 404);
    let anonymous = common::anonymous_http_client()
        .get(format!("{base}{TWINS}/pump-1"))
        .send()
        .await;
    assert_eq!(anonymous.expect("an answer").status(), 401);

    // Stopped, the hub has written every line: the reader ends at the closed pipe.
    serving.stop();
    let loud: Vec<String> = serving
        .stderr
        .iter()
        .filter(|line| line.contains("request{"))
        .filter(|line| line.contains(" ERROR ") || line.contains(" WARN "))
        .collect();
    assert!(
        loud.is_empty(),
        "{not_ready} probes during loading, a 400, a 404 and a 401 were logged as: {loud:#?}"
    );
}

#[test]
fn an_otlp_endpoint_needs_a_binary_built_with_the_feature() {
    if cfg!(feature = "otlp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = doppel_command()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--log-otlp-endpoint", "http://127.0.0.1:4318"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("built without `--features otlp`"),
        "{stderr}"
    );
}
