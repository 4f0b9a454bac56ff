//! `GET /metrics` end to end: the real binary, real HTTP and MQTT clients, and the Prometheus
//! text format read back. Counters start wherever start-up left them, so every check compares a
//! scrape after the work with one before it.

mod common;

use common::Server;
use common::http::HttpClient;
use common::metrics::{Scrape, exposition, parse_sample};
use common::mqtt::login;
use common::topic::{self, ShadowOp};
use serde_json::json;
use std::collections::BTreeMap;

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

/// The metric table of docs/OPERATIONS.md: name to (type, labels), read from its rows.
fn documented_metrics() -> BTreeMap<String, (String, Vec<String>)> {
    let doc = include_str!("../../../docs/OPERATIONS.md");
    let section = doc
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("OPERATIONS.md has a Metrics section");
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
    section
        .lines()
        .filter(|line| line.starts_with("| `doppel_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            let labels = cells[3]
                .split(',')
                .map(unquote)
                .filter(|label| !label.is_empty())
                .collect();
            (unquote(cells[1]), (unquote(cells[2]), labels))
        })
        .collect()
}

/// The family a sample line belongs to: a histogram's `_bucket`, `_sum` and `_count` lines
/// belong to the histogram.
fn family<'a>(name: &'a str, families: &BTreeMap<String, String>) -> &'a str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|base| families.get(*base).is_some_and(|kind| kind == "histogram"))
        })
        .unwrap_or(name)
}

/// What an operator's alerts read must be there before anything happened: every documented
/// metric at 0 with its labels (the HTTP request series excepted, which come one per route and
/// status), every exposed family described and documented.
#[tokio::test]
async fn a_fresh_server_describes_every_metric_and_starts_the_documented_ones_at_zero() {
    let server = Server::start();
    let text = exposition(&server).await;
    let mut families = BTreeMap::new();
    let mut described = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["#", "TYPE", name, kind] => {
                families.insert(name.to_string(), kind.to_string());
            }
            ["#", "HELP", name, _, ..] => described.push(name.to_string()),
            _ => {}
        }
    }
    let scrape = Scrape::of(&text);
    for sample in &scrape.0 {
        let name = family(&sample.name, &families);
        assert!(
            families.contains_key(name),
            "{} has no TYPE line",
            sample.name
        );
    }
    for name in families.keys() {
        assert!(described.contains(name), "{name} has no HELP line:\n{text}");
    }

    let documented = documented_metrics();
    assert!(documented.len() >= 20, "the table was read: {documented:?}");
    for name in families.keys() {
        assert!(
            documented.contains_key(name),
            "{name} is exposed but not in OPERATIONS.md's table"
        );
    }
    for (name, (kind, labels)) in &documented {
        // One series per route and status, made by requests.
        if labels.iter().any(|label| label == "route") {
            continue;
        }
        assert_eq!(
            families.get(name),
            Some(kind),
            "{name} is a {kind} from the start"
        );
        let series = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.clone()
        };
        let samples: Vec<_> = scrape.0.iter().filter(|s| s.name == series).collect();
        assert!(!samples.is_empty(), "{series} is exposed from the start");
        for sample in samples {
            assert_eq!(
                sample.value, 0.0,
                "{series} {:?} starts at 0",
                sample.labels
            );
            let keys: Vec<&String> = sample.labels.keys().collect();
            assert_eq!(keys, labels.iter().collect::<Vec<_>>(), "{series}'s labels");
        }
    }
    // The series the issue's alerts missed, by their labels.
    for status in ["connected", "disconnected", "unknown"] {
        assert!(
            scrape.0.iter().any(|s| s.name == "doppel_devices"
                && s.labels.get("status").map(String::as_str) == Some(status)),
            "doppel_devices{{status={status:?}}} exists"
        );
    }
    for reason in ["wrong_password", "missing_password", "invalid_token"] {
        assert!(
            scrape
                .0
                .iter()
                .any(|s| s.name == "doppel_mqtt_login_failures_total"
                    && s.labels.get("reason").map(String::as_str) == Some(reason)),
            "doppel_mqtt_login_failures_total{{reason={reason:?}}} exists"
        );
    }
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
        .subscribe(&topic::accepted("pump-1", ShadowOp::Update))
        .await;
    device
        .publish_json(
            &topic::request("pump-1", ShadowOp::Update),
            &json!({ "state": { "reported": { "rpm": 1200 } } }),
        )
        .await;
    // The hub counts a request before it publishes the answer: once the answer is here, the
    // request is counted.
    device
        .recv_json(&topic::accepted("pump-1", ShadowOp::Update))
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
