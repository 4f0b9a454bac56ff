//! The edge agent end to end: the real hub, real `doppel edge` agents, and links cut, delayed
//! and restored by a fault-injecting TCP proxy between them.

mod common;

use common::edge::{CONVERGE_TIMEOUT, EdgeAgent, EdgeOptions, replicated_state};
use common::http::HttpClient;
use common::{Server, eventually_value};
use doppel_netfault::{ChaosPlan, ChaosStep, FaultProxy, LinkModel};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const DEVICE: &str = "pump-1";

/// Rules the hub and the agents share: `cycles` counts up at every replica (a G-Counter),
/// `alarms` is an add-wins set, `mode` goes to the cloud whatever the edge says.
const RULES: &str = r#"
[default]
policy = "MERGE"
properties = { mode = "CLOUD_WINS" }
crdts = { cycles = "g_counter", alarms = "or_set" }
"#;

struct Fleet {
    hub: Server,
    hub_http: HttpClient,
    password: String,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().expect("temporary folder");
        let config = dir.path().join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "[replication]\n{}",
                RULES.replace("[default]", "[replication.default]")
            ),
        )
        .expect("write the hub configuration");
        let hub = Server::start_with(&["--config", config.to_str().expect("utf-8 path")]);
        let hub_http = HttpClient::new(&hub);
        Fleet {
            hub,
            hub_http,
            password: String::new(),
            _dir: dir,
        }
    }

    async fn with_device(mut self) -> Fleet {
        let (_, password) = self.hub_http.credential(&format!("devices/{DEVICE}")).await;
        self.password = password;
        self
    }

    fn agent(&self, proxy: &FaultProxy, id: &str) -> EdgeAgent {
        let data_dir = self._dir.path().join(id);
        let rules = self._dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).expect("write the rules");
        EdgeAgent::start_with_rules(
            proxy.local_addr(),
            id,
            &[(DEVICE, self.password.as_str())],
            &data_dir,
            Some(&rules),
        )
    }

    async fn hub_twin(&self) -> Value {
        self.hub_http.twin(DEVICE).await
    }
}

/// Waits until the hub and every agent hold the same reported and desired state; returns it.
async fn converged(fleet: &Fleet, agents: &[&EdgeAgent]) -> Value {
    eventually_value("convergence of every replica", CONVERGE_TIMEOUT, || async {
        let hub = replicated_state(&fleet.hub_twin().await);
        for agent in agents {
            let (status, twin) = agent.get(&format!("/v1/twins/{DEVICE}")).await;
            let edge = replicated_state(&twin);
            if status != StatusCode::OK || edge != hub {
                return Err(format!("hub {hub} but {} {status} {edge}", agent.id));
            }
        }
        Ok(hub)
    })
    .await
}

/// Agent "edge-a", linked to the hub through a proxy the test can cut; the proxy comes first
/// so that the agent is dropped before it.
async fn agent_behind_a_proxy(fleet: &Fleet) -> (FaultProxy, EdgeAgent) {
    let proxy = FaultProxy::start(fleet.hub.mqtt).await.expect("proxy");
    let edge = fleet.agent(&proxy, "edge-a");
    edge.wait_linked(true).await;
    (proxy, edge)
}

/// GETs `tail` below the device's twin at the hub.
async fn hub_get(fleet: &Fleet, tail: &str) -> (StatusCode, Value) {
    fleet
        .hub_http
        .get(&format!("/v1/tenants/default/twins/{DEVICE}{tail}"))
        .await
}

async fn hub_history(fleet: &Fleet) -> Vec<Value> {
    let (status, page) = hub_get(fleet, "/history?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "hub history: {page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serves_its_device_through_a_partition_and_syncs_both_ways_when_it_heals() {
    let fleet = Fleet::start().with_device().await;
    let (proxy, edge) = agent_behind_a_proxy(&fleet).await;

    // Connected: a local report reaches the hub, a desired change reaches the edge.
    edge.report(
        DEVICE,
        &json!({"temperature": 20, "cycles": {"increment": 2}}),
    )
    .await;
    fleet
        .hub_http
        .patch_desired(DEVICE, &json!({"setpoint": 21}))
        .await;
    let state = converged(&fleet, &[&edge]).await;
    assert_eq!(state["reported"], json!({"temperature": 20, "cycles": 2}));
    let (status, delta) = edge.get(&format!("/v1/twins/{DEVICE}/delta")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delta["delta"], json!({"setpoint": 21}), "{delta}");

    // Cut: the local API keeps answering, reads and writes alike.
    proxy.cut();
    edge.wait_linked(false).await;
    edge.report(DEVICE, &json!({"temperature": 22})).await;
    edge.report(DEVICE, &json!({"humidity": 40, "cycles": {"increment": 3}}))
        .await;
    edge.report(DEVICE, &json!({"setpoint": 21})).await;
    for path in ["", "/delta", "/history", "/reported"] {
        let method = if path == "/reported" {
            Method::PATCH
        } else {
            Method::GET
        };
        let (status, body) = edge
            .send(
                method,
                &format!("/v1/twins/{DEVICE}{path}"),
                &json!({"state": {"door": "closed"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path} while cut: {body}");
    }
    let (_, command) = fleet
        .hub_http
        .queue_command(
            DEVICE,
            &json!({"type": "reboot", "payload": {"delay_s": 1}}),
        )
        .await;
    let hub_command_id = command["id"].as_str().expect("command id").to_owned();
    assert_eq!(
        fleet.hub_twin().await["reported"]["state"]["temperature"],
        json!(20),
        "the hub cannot know while cut"
    );

    // Healed: what accumulated goes up in order, the command comes down.
    proxy.heal();
    edge.wait_linked(true).await;
    let state = converged(&fleet, &[&edge]).await;
    assert_eq!(
        state["reported"],
        json!({"temperature": 22, "humidity": 40, "cycles": 5, "setpoint": 21, "door": "closed"})
    );
    let (status, next) = edge
        .get(&format!("/v1/twins/{DEVICE}/commands/next?wait=20"))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the hub's command reaches the edge: {next}"
    );
    assert_eq!(next["type"], "reboot");
    assert_eq!(next["payload"], json!({"delay_s": 1}));
    let local_id = next["id"].as_str().expect("local id");
    let (status, acked) = edge
        .send(
            Method::POST,
            &format!("/v1/twins/{DEVICE}/commands/{local_id}/ack"),
            &json!({"status": "SUCCEEDED", "response": {"uptime_s": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    eventually_value(
        "the acknowledgement reaching the hub",
        CONVERGE_TIMEOUT,
        || async {
            let command = fleet.hub_http.command(DEVICE, &hub_command_id).await;
            (command["status"] == "ACKNOWLEDGED" && command["response"] == json!({"uptime_s": 0}))
                .then_some(())
                .ok_or_else(|| command.to_string())
        },
    )
    .await;

    // The hub's history holds each change the edge made while cut, in order, with its clock.
    let from_edge: Vec<Value> = hub_history(&fleet)
        .await
        .into_iter()
        .filter(|entry| entry["replica"]["origin"] == "edge-a")
        .collect();
    let temperatures: Vec<&Value> = from_edge
        .iter()
        .map(|entry| &entry["state"]["temperature"])
        .collect();
    assert!(
        temperatures
            .windows(2)
            .any(|pair| pair == [&json!(20), &json!(22)]),
        "each change is its own entry: {temperatures:?}"
    );
    let clocks: Vec<u64> = from_edge
        .iter()
        .map(|entry| {
            entry["replica"]["clock"]["edge-a"]
                .as_u64()
                .expect("edge-a's count")
        })
        .collect();
    assert!(
        clocks.windows(2).all(|pair| pair[0] < pair[1]),
        "{clocks:?}"
    );

    let status = edge.status().await;
    assert!(
        status["requests"]["during_partition"].as_u64() >= Some(7),
        "{status}"
    );
    assert_eq!(
        status["availability_during_partition"],
        json!(1.0),
        "{status}"
    );
    assert!(status["hub"]["partitions"].as_u64() >= Some(2), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_and_the_hub_change_one_twin_while_cut_and_converge_by_the_policies() {
    let fleet = Fleet::start().with_device().await;
    let proxy_a = FaultProxy::start(fleet.hub.mqtt).await.expect("proxy");
    let proxy_b = FaultProxy::start(fleet.hub.mqtt).await.expect("proxy");
    let a = fleet.agent(&proxy_a, "edge-a");
    let b = fleet.agent(&proxy_b, "edge-b");
    a.wait_linked(true).await;
    b.wait_linked(true).await;
    a.report(
        DEVICE,
        &json!({"temperature": 10, "alarms": {"add": ["low-oil"]}}),
    )
    .await;
    converged(&fleet, &[&a, &b]).await;

    proxy_a.cut();
    proxy_b.cut();
    a.wait_linked(false).await;
    b.wait_linked(false).await;
    // Concurrent changes of the same properties on all three replicas.
    a.report(
        DEVICE,
        &json!({"temperature": 11, "cycles": {"increment": 3}}),
    )
    .await;
    a.set_desired(DEVICE, &json!({"setpoint": 18, "mode": "manual"}))
        .await;
    b.report(
        DEVICE,
        &json!({"cycles": {"increment": 4}, "alarms": {"remove": ["low-oil"], "add": ["hot"]}}),
    )
    .await;
    b.report(DEVICE, &json!({"temperature": 12})).await;
    fleet
        .hub_http
        .patch_desired(DEVICE, &json!({"setpoint": 20, "mode": "auto"}))
        .await;
    a.report(DEVICE, &json!({"alarms": {"add": ["low-oil"]}}))
        .await;

    proxy_a.heal();
    proxy_b.heal();
    let state = converged(&fleet, &[&a, &b]).await;
    // MERGE: configuration (desired) goes to the cloud; CLOUD_WINS for mode; sensor readings
    // from two devices: the newer hybrid timestamp (b's 12 came after a's 11); counters add;
    // the set keeps a's concurrent re-add of low-oil (add wins) and b's hot.
    assert_eq!(state["desired"], json!({"setpoint": 20, "mode": "auto"}));
    assert_eq!(state["reported"]["temperature"], json!(12));
    assert_eq!(state["reported"]["cycles"], json!(7));
    assert_eq!(state["reported"]["alarms"], json!(["hot", "low-oil"]));

    // Every resolution is in history with the losing value and the reason, and no
    // acknowledged update is lost: each reached the hub's history.
    let history = hub_history(&fleet).await;
    let resolutions: Vec<&Value> = history
        .iter()
        .filter_map(|entry| entry["resolutions"].as_array())
        .flatten()
        .collect();
    let lost = |property: &str, value: Value| {
        resolutions
            .iter()
            .find(|resolution| resolution["property"] == property && resolution["lost"] == value)
            .unwrap_or_else(|| {
                panic!("no resolution of {property} losing {value}: {resolutions:?}")
            })
    };
    let setpoint = lost("setpoint", json!(18));
    assert_eq!(setpoint["kept"], json!(20));
    assert_eq!(setpoint["policy"], "MERGE");
    assert!(
        setpoint["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("favours")),
        "{setpoint}"
    );
    assert_eq!(lost("mode", json!("manual"))["policy"], "CLOUD_WINS");
    let temperature = lost("temperature", json!(11));
    assert_eq!(temperature["kept"], json!(12));
    assert_eq!(temperature["lost_from"], "edge-a");
    for (origin, property, value) in [
        ("edge-a", "temperature", json!(11)),
        ("edge-b", "temperature", json!(12)),
        ("edge-a", "setpoint", json!(18)),
    ] {
        assert!(
            reached_the_hub(&history, origin, property, &value),
            "{origin}'s {property} = {value} never reached the hub"
        );
    }

    // The history API tells concurrent changes from causally ordered ones.
    let version_of = |origin: &str, property: &str, value: Value| {
        entry_of(&history, origin, property, &value)
            .and_then(|entry| entry["version"].as_u64())
            .unwrap_or_else(|| panic!("no entry of {origin} with {property} = {value}"))
    };
    let a_first = version_of("edge-a", "temperature", json!(10));
    let a_cut = version_of("edge-a", "temperature", json!(11));
    let b_cut = version_of("edge-b", "temperature", json!(12));
    for ((x, y), relation) in [
        ((a_cut, b_cut), "concurrent"),
        ((a_first, a_cut), "before"),
        ((a_first, b_cut), "before"),
    ] {
        let (status, answer) = hub_get(&fleet, &format!("/history/causality?a={x}&b={y}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["relation"], relation, "{answer}");
    }
    let (status, problem) = hub_get(&fleet, "/history/causality?a=1&b=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "invalid_query");
}

/// The hub's history entry of a change `origin` made, setting `property` to `value`: the entry
/// whose state shows it, or whose recorded resolution lost it.
fn entry_of<'a>(
    history: &'a [Value],
    origin: &str,
    property: &str,
    value: &Value,
) -> Option<&'a Value> {
    history.iter().find(|entry| {
        let state = if entry["kind"] == "STATE" {
            let reported = &entry["state"]["reported"]["state"][property];
            if reported.is_null() {
                &entry["state"]["desired"]["state"][property]
            } else {
                reported
            }
        } else {
            &entry["state"][property]
        };
        entry["replica"]["origin"] == origin
            && (state == value
                || entry["resolutions"].as_array().is_some_and(|resolutions| {
                    resolutions.iter().any(|resolution| {
                        resolution["property"] == property
                            && resolution["lost"] == *value
                            && resolution["lost_from"] == origin
                    })
                }))
    })
}

fn reached_the_hub(history: &[Value], origin: &str, property: &str, value: &Value) -> bool {
    entry_of(history, origin, property, value).is_some()
}

/// One write the test made and was answered for: where, what, and the value it set.
struct Acknowledged {
    origin: String,
    property: String,
    value: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_schedules_of_cuts_delays_and_restarts_lose_no_acknowledged_update() {
    for seed in [7_u64, 2026] {
        let fleet = Fleet::start().with_device().await;
        let proxies = [
            FaultProxy::start(fleet.hub.mqtt).await.expect("proxy"),
            FaultProxy::start(fleet.hub.mqtt).await.expect("proxy"),
        ];
        let mut agents = [
            fleet.agent(&proxies[0], "edge-a"),
            fleet.agent(&proxies[1], "edge-b"),
        ];
        let plans = [
            ChaosPlan::generate(seed, 8, Duration::from_millis(400)),
            ChaosPlan::generate(
                seed.wrapping_mul(31).wrapping_add(1),
                8,
                Duration::from_millis(400),
            ),
        ];
        let mut acknowledged = Vec::new();
        let mut increments = 0_u64;
        for step in 0..8 {
            for (index, agent) in agents.iter_mut().enumerate() {
                let proxy = &proxies[index];
                match plans[index].steps.get(step).copied() {
                    Some(ChaosStep::Cut(_)) => proxy.cut(),
                    Some(ChaosStep::Heal(_)) => proxy.heal(),
                    Some(ChaosStep::Delay(delay, _)) => proxy.set_delay(delay),
                    Some(ChaosStep::Restart) => agent.restart(),
                    None => {}
                }
                let value = json!(format!("{}-{seed}-{step}", agent.id));
                agent
                    .report(
                        DEVICE,
                        &json!({"reading": value, "cycles": {"increment": 1}}),
                    )
                    .await;
                increments += 1;
                acknowledged.push(Acknowledged {
                    origin: agent.id.clone(),
                    property: "reading".into(),
                    value,
                });
            }
            let value = json!(step);
            fleet
                .hub_http
                .patch_desired(DEVICE, &json!({"target": value}))
                .await;
            let longest = plans
                .iter()
                .filter_map(|plan| match plan.steps.get(step) {
                    Some(
                        ChaosStep::Cut(phase) | ChaosStep::Heal(phase) | ChaosStep::Delay(_, phase),
                    ) => Some(*phase),
                    _ => None,
                })
                .max()
                .unwrap_or_default();
            // A fault is under test for as long as its phase lasts: real time has to pass.
            tokio::time::sleep(longest).await;
        }
        for proxy in &proxies {
            proxy.heal();
            proxy.set_delay(Duration::ZERO);
        }
        let state = converged(&fleet, &[&agents[0], &agents[1]]).await;
        assert_eq!(
            state["reported"]["cycles"],
            json!(increments),
            "seed {seed}: {state}"
        );
        assert_eq!(state["desired"]["target"], json!(7), "seed {seed}: {state}");
        let history = hub_history(&fleet).await;
        for write in &acknowledged {
            assert!(
                reached_the_hub(&history, &write.origin, &write.property, &write.value),
                "seed {seed}: {}'s acknowledged {} = {} never reached the hub",
                write.origin,
                write.property,
                write.value
            );
        }
        let clocks: BTreeMap<&str, Value> =
            [("hub", fleet.hub_twin().await["replica"]["clock"].clone())]
                .into_iter()
                .collect();
        for agent in &agents {
            assert_eq!(
                agent.twin(DEVICE).await["replica"]["clock"],
                clocks["hub"],
                "seed {seed}: {} has seen the same changes as the hub",
                agent.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_model_drives_the_proxy_and_the_agent_serves_every_request_meanwhile() {
    let fleet = Fleet::start().with_device().await;
    let (proxy, edge) = agent_behind_a_proxy(&fleet).await;
    let model = LinkModel {
        disconnect_rate: 1.0,
        reconnect_rate: 2.0,
    };
    let window = Duration::from_secs(12);
    let before = edge.status().await;
    let started = tokio::time::Instant::now();
    let following = proxy.follow(&model, 42, window);
    let mut written = 0;
    while started.elapsed() < window {
        written += 1;
        edge.report(DEVICE, &json!({"sample": written})).await;
        let (status, _) = edge.get(&format!("/v1/twins/{DEVICE}")).await;
        assert_eq!(status, StatusCode::OK);
        // The pace of the requests that must be served all through the faults.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    following.finished().await;
    edge.wait_linked(true).await;
    let after = edge.status().await;
    let elapsed = started.elapsed().as_secs_f64();

    let proxy_fraction = proxy.time_cut().as_secs_f64() / elapsed;
    let edge_seconds = after["hub"]["partitioned_seconds"]
        .as_f64()
        .unwrap_or_default()
        - before["hub"]["partitioned_seconds"]
            .as_f64()
            .unwrap_or_default();
    let edge_fraction = edge_seconds / elapsed;
    let expected = model.expected_down_fraction();
    eprintln!(
        "link model λ=1/s μ=2/s over {elapsed:.1} s: expected {expected:.3}, proxy cut {proxy_fraction:.3}, agent partitioned {edge_fraction:.3}"
    );
    // The schedule is seeded, so the proxy's fraction is the same every run up to timer jitter.
    assert!(
        (proxy_fraction - expected).abs() < 0.15,
        "proxy {proxy_fraction} vs λ/(λ+μ) {expected}"
    );
    // The agent notices a cut at once (the proxy resets) and a heal within its reconnect delay.
    assert!(
        (edge_fraction - proxy_fraction).abs() < 0.12,
        "agent {edge_fraction} vs proxy {proxy_fraction}"
    );
    let served = after["requests"]["served_during_partition"]
        .as_u64()
        .unwrap_or_default();
    let during = after["requests"]["during_partition"]
        .as_u64()
        .unwrap_or_default();
    assert!(during > 0, "{after}");
    assert_eq!(
        served, during,
        "every local request during a partition is served: {after}"
    );
    converged(&fleet, &[&edge]).await;
    assert_eq!(
        fleet.hub_twin().await["reported"]["state"]["sample"],
        json!(written)
    );
}

/// At info level the agent's log is its own: no ingestion lines of the store's crates, and a
/// shutdown said in the agent's words rather than the hub's.
#[test]
fn the_agents_log_at_info_hides_the_stores_chatter_and_names_its_own_shutdown() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = EdgeOptions {
        extra_args: &["--log-level", "info"],
        capture_log: true,
        ..EdgeOptions::default()
    };
    let mut edge = EdgeAgent::start(
        "127.0.0.1:1",
        "edge-a",
        &[(DEVICE, "pw")],
        &dir.path().join("edge-a"),
        options,
    );
    let log = edge.stop_and_read_log();
    assert!(
        log.iter().any(|line| line.contains("doppel edge stopped")),
        "{log:#?}"
    );
    for foreign in ["fjall", "lsm_tree", "doppel::serve"] {
        assert!(
            log.iter().all(|line| !line.contains(foreign)),
            "{foreign} in {log:#?}"
        );
    }
}

#[test]
fn the_agent_refuses_a_bad_setup_with_one_line() {
    // Each case spoils one part of an otherwise valid setup.
    for (hub, id, device, password, message) in [
        (
            "nowhere",
            "edge-a",
            "pump-1",
            Some("pw"),
            "must be host:port",
        ),
        (
            "127.0.0.1:1",
            "hub",
            "pump-1",
            Some("pw"),
            "not the hub's name",
        ),
        (
            "127.0.0.1:1",
            "edge-a",
            "pump-1",
            None,
            "no password for device",
        ),
        ("127.0.0.1:1", "edge-a", "bad id!", Some("pw"), "--device"),
    ] {
        let mut args = vec!["--hub", hub, "--id", id, "--device", device];
        if let Some(password) = password {
            args.extend(["--password", password]);
        }
        let output = common::doppel_command()
            .arg("edge")
            .args(&args)
            .output()
            .expect("run doppel edge");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_holds_the_twins_of_several_devices_behind_a_gateway() {
    let fleet = Fleet::start();
    let mut devices = Vec::new();
    for device in ["valve-1", "valve-2"] {
        let (_, password) = fleet
            .hub_http
            .credential(&format!("devices/{device}"))
            .await;
        devices.push((device, password));
    }
    let proxy = FaultProxy::start(fleet.hub.mqtt).await.expect("proxy");
    let credentials: Vec<(&str, &str)> = devices
        .iter()
        .map(|(device, password)| (*device, password.as_str()))
        .collect();
    let edge = EdgeAgent::start_with_rules(
        proxy.local_addr(),
        "gateway-7",
        &credentials,
        &fleet._dir.path().join("gateway-7"),
        None,
    );
    edge.wait_linked(true).await;
    assert_eq!(edge.status().await["hub"]["links"], json!(2));
    for (index, (device, _)) in devices.iter().enumerate() {
        edge.report(device, &json!({"open": index == 0})).await;
    }
    for (index, (device, _)) in devices.iter().enumerate() {
        eventually_value(
            &format!("{device}'s report reaching the hub"),
            CONVERGE_TIMEOUT,
            || async {
                let twin = fleet.hub_http.twin(device).await;
                (twin["reported"]["state"]["open"] == json!(index == 0))
                    .then_some(())
                    .ok_or_else(|| twin.to_string())
            },
        )
        .await;
    }
    // Only the agent's own devices, and only without the tenant segment.
    let (status, problem) = edge
        .send(
            Method::PATCH,
            "/v1/twins/valve-9/reported",
            &json!({"state": {"open": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["code"], "device_not_on_this_edge");
    let (status, problem) = edge.get("/v1/tenants/default/twins/valve-1").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "tenant routes are not served at the edge"
    );
    assert_eq!(problem["code"], "route_not_found");
}
