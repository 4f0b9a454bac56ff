//! Stale-device detection end to end: a connected device silent past its type's expected
//! activity interval becomes UNKNOWN with a `twin.stale` event, and recovers when it reports.

mod common;

use common::Server;
use common::edge::{CONVERGE_TIMEOUT, EdgeAgent};
use common::http::HttpClient;
use common::metrics::Scrape;
use common::mqtt::login;
use common::topic::{self, ShadowOp};
use serde_json::{Value, json};
use std::time::Duration;

const TWINS: &str = "/v1/tenants/default/twins";

async fn status(http: &HttpClient, device: &str) -> (String, bool) {
    let twin = http.twin(device).await;
    (
        twin["connection"]["status"]
            .as_str()
            .expect("a status")
            .to_owned(),
        twin["connection"]["stale"].as_bool().expect("a stale flag"),
    )
}

/// Waits (bounded) until the twin's status is `wanted`; the status and the stale flag.
async fn until_status(http: &HttpClient, device: &str, wanted: &str) -> (String, bool) {
    common::eventually_value(
        &format!("{device} becoming {wanted}"),
        Duration::from_secs(10),
        || async {
            let seen = status(http, device).await;
            if seen.0 == wanted {
                Ok(seen)
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await
}

/// The `doppel_devices` gauge of `status`, or 0 when absent.
async fn devices(server: &Server, status: &str) -> f64 {
    Scrape::take(server)
        .await
        .value("doppel_devices", &[("status", status)])
}

#[tokio::test]
async fn a_silent_connected_device_goes_unknown_and_comes_back_when_it_reports() {
    let server = Server::start_with(&["--activity-device-types", "fast=1s"]);
    let http = HttpClient::new(&server);
    let client = common::http_client();
    for (device, device_type) in [("fast-1", "fast"), ("slow-1", "slow")] {
        let response = client
            .patch(server.url(&format!("{TWINS}/{device}")))
            .json(&json!({"device_type": device_type}))
            .send()
            .await
            .expect("meta");
        assert!(response.status().is_success(), "{}", response.status());
    }
    let fast_login = http.credential("devices/fast-1").await;
    let slow_login = http.credential("devices/slow-1").await;
    let mut events = client
        .get(server.url("/v1/tenants/default/events?types=twin.stale,twin.connection"))
        .send()
        .await
        .expect("subscribe");
    let mut fast = login(server.mqtt, "fast-1", &fast_login.0, &fast_login.1).await;
    let _slow = login(server.mqtt, "slow-1", &slow_login.0, &slow_login.1).await;

    let (state, stale) = until_status(&http, "fast-1", "UNKNOWN").await;
    assert_eq!((state.as_str(), stale), ("UNKNOWN", true), "silent past 1s");
    assert_eq!(
        status(&http, "slow-1").await.0,
        "CONNECTED",
        "24h is not over"
    );
    // A named shadow is part of its device, not another device of unknown status.
    http.patch_desired("slow-1/shadows/config", &json!({"mode": "eco"}))
        .await;
    assert_eq!(devices(&server, "unknown").await, 1.0);
    assert_eq!(devices(&server, "connected").await, 1.0);
    let found: Value = client
        .get(server.url(TWINS))
        .query(&[("q", "connection.stale = TRUE")])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("a page");
    let devices: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|twin| twin["device_id"].as_str().expect("a device id"))
        .collect();
    assert_eq!(devices, ["fast-1"], "{found}");
    let history = http
        .get(&format!("{TWINS}/fast-1/history?kind=CONNECTION"))
        .await
        .1;
    let last = history["items"]
        .as_array()
        .and_then(|items| items.last())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        last["change_reason"], "silent past its expected activity interval",
        "{history}"
    );

    fast.subscribe(&topic::accepted("fast-1", ShadowOp::Update))
        .await;
    fast.publish_json(
        &topic::request("fast-1", ShadowOp::Update),
        &json!({"state": {"reported": {"alive": true}}}),
    )
    .await;
    fast.recv_on(&topic::accepted("fast-1", ShadowOp::Update))
        .await;
    let (state, stale) = status(&http, "fast-1").await;
    assert_eq!(
        (state.as_str(), stale),
        ("CONNECTED", false),
        "a report revives it"
    );

    // The stream told it all: connected twice (fast, slow), stale, connected again.
    let mut text = String::new();
    while !text.contains("event: twin.stale") || text.matches("event: twin.connection").count() < 3
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("events within the wait")
            .expect("read")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let stale_at = text.find("event: twin.stale").expect("stale");
    let revived_at = text.rfind("event: twin.connection").expect("revived");
    assert!(stale_at < revived_at, "{text}");
}

/// A device reached only through an edge agent says nothing over MQTT itself: the agent's syncs
/// are its signs of life, so its twin stays CONNECTED at the hub past its activity interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_behind_a_syncing_edge_agent_stays_connected() {
    // The agent syncs every second, well within half the interval.
    const INTERVAL_MS: i64 = 5_000;
    let server = Server::start_with(&["--activity-default", "5s"]);
    let http = HttpClient::new(&server);
    let (_, password) = http.credential("devices/pump-1").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let edge = EdgeAgent::start_with_rules(
        server.mqtt,
        "edge-a",
        &[("pump-1", password.as_str())],
        dir.path(),
        None,
    );
    edge.wait_linked(true).await;
    edge.report("pump-1", &json!({"temp": 20})).await;

    // Wait until the last sign of life is more than an interval after the connect: without
    // the syncs counting, the twin would have gone UNKNOWN before that could happen.
    let instant = |twin: &Value, field: &str| {
        twin["connection"][field]
            .as_str()
            .and_then(|text| doppel_model::Millis::parse_rfc3339(text).ok())
            .map(|at| at.0)
    };
    common::eventually("activity past the interval", CONVERGE_TIMEOUT, || async {
        let (_, twin) = http.get(&format!("{TWINS}/pump-1")).await;
        match (
            instant(&twin, "last_connected_at"),
            instant(&twin, "last_activity_at"),
        ) {
            (Some(connected), Some(active)) => active - connected > INTERVAL_MS,
            _ => false,
        }
    })
    .await;
    let (state, stale) = status(&http, "pump-1").await;
    assert_eq!((state.as_str(), stale), ("CONNECTED", false));
    let history = http
        .get(&format!(
            "{TWINS}/pump-1/history?kind=CONNECTION&limit=1000"
        ))
        .await
        .1;
    let items = history["items"].as_array().expect("history items");
    assert!(
        items
            .iter()
            .all(|entry| entry["change_reason"] != "silent past its expected activity interval"),
        "{history}"
    );
}
