//! A twin's meta reaches the edge agents from the hub, and with it the device type whose rules
//! make a property a CRDT: the rules of docs/EDGE.md, on a hub and an agent, as written there.

mod common;

use common::Server;
use common::edge::{CONVERGE_TIMEOUT, EdgeAgent};
use common::http::HttpClient;
use doppel_netfault::FaultProxy;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEVICE: &str = "pump-7";
const HUB_TWIN: &str = "/v1/tenants/default/twins/pump-7";
const EDGE_TWIN: &str = "/v1/twins/pump-7";

/// The hub's configuration in docs/EDGE.md ("Rules").
const HUB_RULES: &str = r#"
[replication.default]
policy = "MERGE"

[replication.device_types.pump]
policy = "TIMESTAMP_WINS"
properties = { mode = "CLOUD_WINS", local_override = "DEVICE_WINS" }
crdts = { cycles = "g_counter", alarms = "or_set", peak_pressure = "max_register" }
"#;

/// The agent's `rules.toml` in docs/EDGE.md.
const EDGE_RULES: &str = r#"
[device_types.pump]
policy = "TIMESTAMP_WINS"
properties = { mode = "CLOUD_WINS", local_override = "DEVICE_WINS" }
crdts = { cycles = "g_counter", alarms = "or_set", peak_pressure = "max_register" }
"#;

/// A hub with the docs' rules and a credential for [`DEVICE`], and a fault proxy in front of
/// its MQTT listener for the agent to reach it through.
struct Setup {
    /// Held for its drop, which stops the hub: the setup's calls reach it through `http`.
    _hub: Server,
    http: HttpClient,
    password: String,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("temporary folder");
        let config = dir.path().join("hub.toml");
        std::fs::write(&config, HUB_RULES).expect("write the hub configuration");
        let hub = Server::start_with(&["--config", config.to_str().expect("utf-8 path")]);
        let http = HttpClient::new(&hub);
        let (_, password) = http.credential(&format!("devices/{DEVICE}")).await;
        let proxy = FaultProxy::start(hub.mqtt).await.expect("proxy");
        Setup {
            _hub: hub,
            http,
            password,
            proxy,
            dir,
        }
    }

    fn agent(&self) -> EdgeAgent {
        let rules = self.dir.path().join("rules.toml");
        std::fs::write(&rules, EDGE_RULES).expect("write the rules");
        EdgeAgent::start_with_rules(
            self.proxy.local_addr(),
            "edge-a",
            &[(DEVICE, self.password.as_str())],
            &self.dir.path().join("edge-a"),
            Some(&rules),
        )
    }

    /// `PATCH` at the hub with the admin token, which must succeed.
    async fn hub_patch(&self, path: &str, body: &Value) {
        let (status, _) = self.http.patch(path, body).await;
        assert!(status.is_success(), "PATCH {path} {body}: {status}");
    }
}

/// Waits until the agent's twin satisfies `holds`.
async fn at_the_edge(edge: &EdgeAgent, what: &str, holds: impl Fn(&Value) -> bool) {
    common::eventually(what, CONVERGE_TIMEOUT, || async {
        let (status, twin) = edge.get(EDGE_TWIN).await;
        status == StatusCode::OK && holds(&twin)
    })
    .await;
}

/// Waits until the hub's twin satisfies `holds`.
async fn at_the_hub(setup: &Setup, what: &str, holds: impl Fn(&Value) -> bool) {
    common::eventually(what, CONVERGE_TIMEOUT, || async {
        let (status, twin) = setup.http.get(HUB_TWIN).await;
        status == StatusCode::OK && holds(&twin)
    })
    .await;
}

/// docs/EDGE.md's steps: the device type set on the hub reaches the agent, so an increment at
/// the edge is counted as one, and the hub's later increment adds to it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_at_the_edge_counts_once_the_hub_has_named_the_device_type() {
    let setup = Setup::start().await;
    setup
        .hub_patch(
            HUB_TWIN,
            &json!({"device_type": "pump", "tags": {"site": "berlin"}}),
        )
        .await;
    let edge = setup.agent();
    at_the_edge(&edge, "the hub's meta at the edge", |twin| {
        twin["device_type"] == "pump" && twin["tags"] == json!({"site": "berlin"})
    })
    .await;

    edge.report(DEVICE, &json!({"cycles": {"increment": 3}}))
        .await;
    at_the_hub(&setup, "the edge's increment at the hub", |twin| {
        twin["reported"]["state"]["cycles"] == 3
    })
    .await;
    setup
        .hub_patch(
            &format!("{HUB_TWIN}/reported"),
            &json!({"state": {"cycles": {"increment": 10}}}),
        )
        .await;
    at_the_hub(&setup, "13 cycles at the hub", |twin| {
        twin["reported"]["state"]["cycles"] == 13
    })
    .await;
    at_the_edge(&edge, "13 cycles at the edge", |twin| {
        twin["reported"]["state"]["cycles"] == 13
    })
    .await;
}

/// An agent that has not heard the twin's device type from the hub refuses a CRDT operation
/// (the device type decides whether it is one) and any meta change of its own, storing
/// nothing; plain values it takes. Once linked, it learns the type and counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_crdt_operations_until_it_knows_the_device_type() {
    let setup = Setup::start().await;
    setup
        .hub_patch(HUB_TWIN, &json!({"device_type": "pump"}))
        .await;
    setup.proxy.cut();
    let edge = setup.agent();

    let (status, problem) = edge
        .send(
            Method::PATCH,
            &format!("{EDGE_TWIN}/reported"),
            &json!({"state": {"temp": 20, "cycles": {"increment": 3}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "device_type_unknown", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("cycles")),
        "{problem}"
    );
    let (status, problem) = edge
        .send(Method::PATCH, EDGE_TWIN, &json!({"device_type": "fan"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "meta_owned_by_hub", "{problem}");
    let (status, _) = edge.get(EDGE_TWIN).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the refused writes stored nothing"
    );
    edge.report(DEVICE, &json!({"temp": 20})).await;

    setup.proxy.heal();
    at_the_edge(&edge, "the hub's device type at the edge", |twin| {
        twin["device_type"] == "pump"
    })
    .await;
    edge.report(DEVICE, &json!({"cycles": {"increment": 3}}))
        .await;
    at_the_hub(
        &setup,
        "the increment and the plain value at the hub",
        |twin| twin["reported"]["state"] == json!({"temp": 20, "cycles": 3}),
    )
    .await;
}
