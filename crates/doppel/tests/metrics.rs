//! `GET /metrics` end to end: the real binary, real HTTP and MQTT clients, and the Prometheus
//! text format read back. Counters start wherever start-up left them, so every check compares a
//! scrape after the work with one before it.

mod common;

use common::Server;
use common::http::HttpClient;
use common::metrics::{Scrape, parse_sample};
use common::mqtt::login;
use serde_json::json;

const DESIRED_ROUTE: &str = "/v1/tenants/{tenant}/twins/{device}/desired";

#[test]
fn the_label_parser_reads_escapes() {
    let sample = parse_sample(r#"m{a="x,\"y\"",b="/v1/{t}"} 2.5"#).expect("a sample");
    assert_eq!(sample.name, "m");
    assert_eq!(sample.labels["a"], "x,\"y\"");
    assert_eq!(sample.labels["b"], "/v1/{t}");
    assert_eq!(sample.value, 2.5);
    assert!(parse_sample("# TYPE m counter").is_none());
}

#[tokio::test]
async fn metrics_follow_http_mqtt_and_command_work() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let (username, password) = http.credential("devices/pump-1").await;
    let before = Scrape::take(&server).await;

    const PATCHES: usize = 3;
    for n in 0..PATCHES {
        http.patch_desired("meter-1", &json!({ "setpoint": n }))
            .await;
    }

    let mut device = login(server.mqtt, "pump-1", &username, &password).await;
    device
        .subscribe("$aws/things/pump-1/shadow/update/accepted")
        .await;
    device
        .publish_json(
            "$aws/things/pump-1/shadow/update",
            &json!({ "state": { "reported": { "rpm": 1200 } } }),
        )
        .await;
    // The hub answers a request inside the publish hook, and acknowledges the publish only
    // after it: once the PUBACK is here, the request is counted.
    device.acked().await;
    device
        .recv_json("$aws/things/pump-1/shadow/update/accepted")
        .await;

    http.queue_command("pump-1", &json!({ "type": "reboot" }))
        .await;
    let after = Scrape::take(&server).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(
        delta("doppel_twin_updates_total", &[("kind", "desired")]),
        PATCHES as f64
    );
    assert_eq!(
        delta(
            "doppel_http_requests_total",
            &[
                ("method", "PATCH"),
                ("route", DESIRED_ROUTE),
                ("status", "200")
            ]
        ),
        PATCHES as f64
    );
    assert_eq!(
        delta(
            "doppel_http_request_duration_seconds_count",
            &[("method", "PATCH"), ("route", DESIRED_ROUTE)]
        ),
        PATCHES as f64
    );
    assert_eq!(
        delta(
            "doppel_shadow_requests_total",
            &[("op", "update"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(delta("doppel_sync_latency_seconds_count", &[]), 1.0);
    assert_eq!(
        delta(
            "doppel_shadow_request_duration_seconds_count",
            &[("op", "update"), ("outcome", "accepted")]
        ),
        1.0
    );
    // The fleet gauges follow the twins the test made: one with a delta from the patches.
    assert!(after.value("doppel_twins", &[]) >= 1.0);
    assert!(after.value("doppel_twins_with_delta", &[]) >= 1.0);
    assert!(delta("doppel_mqtt_messages_received_total", &[]) >= 1.0);
    assert!(delta("doppel_mqtt_messages_published_total", &[]) >= 1.0);
    assert_eq!(after.value("doppel_mqtt_connections", &[]), 1.0);
    assert_eq!(delta("doppel_commands_total", &[("event", "queued")]), 1.0);
    assert_eq!(delta("doppel_commands_open", &[]), 1.0);
    // Every durable change went through a commit that is measured.
    assert!(delta("doppel_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(delta("doppel_store_commit_writes_sum", &[]) >= PATCHES as f64 + 1.0);
    assert_eq!(after.value("doppel_store_commit_failures_total", &[]), 0.0);

    // Paths the router does not know are one series, whatever they are.
    let (status, _) = http.get("/no/such/route").await;
    assert_eq!(status, 404);
    let last = Scrape::take(&server).await;
    assert_eq!(
        last.value(
            "doppel_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        last.0.iter().all(|sample| !sample
            .labels
            .values()
            .any(|value| value.contains("no/such"))),
        "a raw path became a label"
    );
    device.disconnect().await;
}
