//! MQTT end to end with the clients devices and operators really use: Python's paho-mqtt 2.x
//! acting as AWS IoT device firmware (the scripts in `tests/external/`) and the mosquitto
//! command-line clients, against the real binary on port 0. Each test checks what the clients
//! received and what the twin says over HTTP.
//!
//! `scripts/test` installs the clients. When one is missing the tests fail, never skip: a suite
//! that silently ran nothing would look green.

mod common;

use common::http::HttpClient;
use common::process::{
    Running, assert_success, describe, json_lines, python_script, python_succeeds, require_clients,
    run, run_fed, tool_starts,
};
use common::topic::{self, ShadowOp};
use common::{Server, unix_seconds};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Output;
use std::sync::OnceLock;
use tokio::process::Command;

/// `mosquitto_sub -W`: seconds it waits for its messages before giving up.
const SUB_WAIT_SECONDS: &str = "10";

/// Fails the test, with what to do about it, when a client is not installed.
fn require_mqtt_clients() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let check = || {
        for tool in ["mosquitto_pub", "mosquitto_sub", "stdbuf"] {
            tool_starts(tool)?;
        }
        python_succeeds(
            "import paho.mqtt, sys; sys.exit(int(paho.mqtt.__version__.split('.')[0]) < 2)",
            "python3 has no paho-mqtt 2.x",
            "its version is older",
        )
    };
    require_clients(&CHECKED, check, "mosquitto-clients and paho-mqtt");
}

/// Asserts that `value` is an AWS timestamp (Unix seconds) between `from` and `to` inclusive.
fn assert_seconds(value: &Value, from: i64, to: i64, what: &str) {
    let seconds = value
        .as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {value}"));
    assert!(
        (from..=to).contains(&seconds),
        "{what} = {seconds} is not Unix seconds between {from} and {to}"
    );
}

/// Every `timestamp` in an AWS metadata tree, by path.
fn metadata_timestamps(metadata: &Value, path: &str, found: &mut Vec<(String, Value)>) {
    if let Value::Object(members) = metadata {
        for (name, value) in members {
            let path = format!("{path}.{name}");
            if name == "timestamp" {
                found.push((path, value.clone()));
            } else {
                metadata_timestamps(value, &path, found);
            }
        }
    }
}

/// Asserts that an AWS document's `timestamp` and every metadata timestamp are Unix seconds
/// taken between `from` and `to`, and that the metadata has at least one.
fn assert_aws_times(document: &Value, from: i64, to: i64) {
    assert_seconds(&document["timestamp"], from, to, "timestamp");
    let mut found = Vec::new();
    metadata_timestamps(&document["metadata"], "metadata", &mut found);
    assert!(!found.is_empty(), "no metadata timestamps in {document}");
    for (path, value) in found {
        assert_seconds(&value, from, to, &path);
    }
}

/// A server with anonymous MQTT on, and an HTTP client for it.
struct Hub {
    server: Server,
    http: HttpClient,
}

impl Hub {
    fn start() -> Hub {
        require_mqtt_clients();
        let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
        let http = HttpClient::new(&server);
        Hub { server, http }
    }

    fn host(&self) -> String {
        self.server.mqtt.ip().to_string()
    }

    fn port(&self) -> String {
        self.server.mqtt.port().to_string()
    }

    /// A Python script's arguments: host, port, thing, then `args`.
    fn script_command(&self, name: &str, thing: &str, args: &[&str]) -> Command {
        let mut command = python_script(name);
        command
            .args([self.host(), self.port(), thing.to_owned()])
            .args(args);
        command
    }

    /// Runs `shadow_device.py` to completion: one JSON line per answered step. The device's
    /// client id is `thing` unless `args` says otherwise.
    async fn device(&self, thing: &str, args: &[&str]) -> Vec<Value> {
        let output = run(
            "shadow_device.py",
            self.script_command("shadow_device.py", thing, args),
        )
        .await;
        assert_success("shadow_device.py", &output);
        json_lines(&output.stdout)
    }

    fn mosquitto(&self, tool: &str, client_id: &str) -> Command {
        let mut command = Command::new(tool);
        self.mosquitto_connection(&mut command, client_id);
        command
    }

    fn mosquitto_connection(&self, command: &mut Command, client_id: &str) {
        command.args(["-h", &self.host(), "-p", &self.port(), "-i", client_id]);
    }

    /// `mosquitto_pub` at QoS 1 (so it waits for the PUBACK) with `extra` arguments.
    async fn mosquitto_pub(
        &self,
        client_id: &str,
        topic: &str,
        message: &str,
        extra: &[&str],
    ) -> Output {
        let mut command = self.mosquitto("mosquitto_pub", client_id);
        command
            .args(["-t", topic, "-m", message, "-q", "1"])
            .args(extra);
        run("mosquitto_pub", command).await
    }

    /// Starts `mosquitto_sub -v` on `filter` for `count` messages, and returns once the broker
    /// acknowledged the subscription (its `-d` output says so).
    async fn mosquitto_sub(
        &self,
        client_id: &str,
        filter: &str,
        count: usize,
        extra: &[&str],
    ) -> Running {
        // Line-buffered: on a pipe, stdio would hold the SUBACK line back until the exit.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        self.mosquitto_connection(&mut command, client_id);
        command
            .args(["-t", filter, "-q", "1", "-v", "-d"])
            .args(["-C", &count.to_string(), "-W", SUB_WAIT_SECONDS])
            .args(extra);
        let mut sub = Running::spawn("mosquitto_sub", command);
        sub.line_where(|line| line.ends_with("received SUBACK"), "its SUBACK")
            .await;
        sub
    }
}

/// The `(topic, JSON payload)` of each message `mosquitto_sub -v -d` printed, leaving out its
/// debug lines.
fn sub_messages(lines: &[String], topic_prefix: &str) -> Vec<(String, Value)> {
    lines
        .iter()
        .filter(|line| line.starts_with(topic_prefix))
        .map(|line| {
            let (topic, payload) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no payload on {line}"));
            let payload = serde_json::from_str(payload)
                .unwrap_or_else(|_| panic!("{topic} carried no JSON: {payload}"));
            (topic.to_owned(), payload)
        })
        .collect()
}

/// Asserts one answer of `shadow_device.py`: its topic and outcome; returns the document.
fn answer<'a>(line: &'a Value, topic: &str, outcome: &str) -> &'a Value {
    assert_eq!(
        (line["topic"].as_str(), line["outcome"].as_str()),
        (Some(topic), Some(outcome)),
        "unexpected answer: {line}"
    );
    &line["document"]
}

#[tokio::test]
async fn a_paho_device_update_is_accepted_in_aws_format_and_visible_over_http() {
    let hub = Hub::start();
    let thing = "paho-update-1";
    let update = json!({
        "state": {
            "reported": {"temp": 21.5, "fan": {"speed": 2}},
            "desired": {"temp": 22},
        },
        "clientToken": "token-a1",
    });
    let before = unix_seconds();
    let answers = hub.device(thing, &[&format!("update={update}")]).await;
    let after = unix_seconds();

    assert_eq!(answers.len(), 1, "{answers:?}");
    let accepted = answer(
        &answers[0],
        &topic::accepted(thing, ShadowOp::Update),
        "accepted",
    );
    assert_eq!(accepted["version"], json!(1), "{accepted}");
    assert_eq!(accepted["clientToken"], json!("token-a1"));
    assert_eq!(
        accepted["state"], update["state"],
        "the update's state is echoed"
    );
    assert_eq!(
        accepted["metadata"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["desired".to_owned(), "reported".to_owned()])
    );
    assert!(accepted["metadata"]["reported"]["fan"]["speed"]["timestamp"].is_i64());
    assert_aws_times(accepted, before, after);

    let twin = hub.http.twin(thing).await;
    assert_eq!(twin["reported"]["state"], update["state"]["reported"]);
    assert_eq!(twin["desired"]["state"], update["state"]["desired"]);
    assert_eq!(twin["delta"], json!({"temp": 22}));
    // HTTP keeps milliseconds; the MQTT answer said the same instant in seconds.
    let millis = twin["reported"]["metadata"]["temp"]["timestamp"]
        .as_i64()
        .expect("a millisecond timestamp");
    assert_eq!(
        json!(millis.div_euclid(1000)),
        accepted["metadata"]["reported"]["temp"]["timestamp"]
    );
}

#[tokio::test]
async fn paho_get_shows_the_delta_and_rejections_carry_aws_codes() {
    let hub = Hub::start();
    let thing = "paho-reject-1";
    let answers = hub
        .device(
            thing,
            &[
                r#"get={"clientToken":"get-missing"}"#,
                r#"update={"state":{"desired":{"mode":"eco"},"reported":{"mode":"off"}}}"#,
                r#"get={"clientToken":"get-1"}"#,
                r#"update={"state":{"reported":{"level":1}},"version":1,"clientToken":"current"}"#,
                r#"update={"state":{"reported":{"mode":"eco"}},"version":1,"clientToken":"stale"}"#,
                "update=this is not JSON",
                r#"update={"clientToken":"no-state"}"#,
                r#"delete={"clientToken":"delete-1"}"#,
                "get",
            ],
        )
        .await;
    assert_eq!(answers.len(), 9, "{answers:#?}");

    let missing = answer(
        &answers[0],
        &topic::rejected(thing, ShadowOp::Get),
        "rejected",
    );
    assert_eq!(missing["code"], json!(404));
    assert_eq!(
        missing["message"],
        json!(format!("No shadow exists with name: '{thing}'"))
    );
    assert_eq!(missing["clientToken"], json!("get-missing"));

    let created = answer(
        &answers[1],
        &topic::accepted(thing, ShadowOp::Update),
        "accepted",
    );
    assert_eq!(created["version"], json!(1));

    let got = answer(
        &answers[2],
        &topic::accepted(thing, ShadowOp::Get),
        "accepted",
    );
    assert_eq!(
        got["state"],
        json!({"desired": {"mode": "eco"}, "reported": {"mode": "off"}, "delta": {"mode": "eco"}})
    );
    assert_eq!(got["version"], json!(1));
    assert_eq!(got["clientToken"], json!("get-1"));

    let current = answer(
        &answers[3],
        &topic::accepted(thing, ShadowOp::Update),
        "accepted",
    );
    assert_eq!(current["version"], json!(2), "the version matched: applied");

    let stale = answer(
        &answers[4],
        &topic::rejected(thing, ShadowOp::Update),
        "rejected",
    );
    assert_eq!(
        (&stale["code"], &stale["message"], &stale["clientToken"]),
        (&json!(409), &json!("Version conflict"), &json!("stale"))
    );

    let invalid = answer(
        &answers[5],
        &topic::rejected(thing, ShadowOp::Update),
        "rejected",
    );
    assert_eq!(
        (&invalid["code"], &invalid["message"]),
        (&json!(400), &json!("Invalid JSON"))
    );
    assert!(invalid.get("clientToken").is_none(), "{invalid}");

    let no_state = answer(
        &answers[6],
        &topic::rejected(thing, ShadowOp::Update),
        "rejected",
    );
    assert_eq!(
        (
            &no_state["code"],
            &no_state["message"],
            &no_state["clientToken"]
        ),
        (
            &json!(400),
            &json!("Missing required node: state"),
            &json!("no-state")
        )
    );

    let deleted = answer(
        &answers[7],
        &topic::accepted(thing, ShadowOp::Delete),
        "accepted",
    );
    assert_eq!(deleted["clientToken"], json!("delete-1"));
    assert!(deleted["version"].is_u64(), "{deleted}");
    let gone = answer(
        &answers[8],
        &topic::rejected(thing, ShadowOp::Get),
        "rejected",
    );
    assert_eq!(gone["code"], json!(404));

    hub.http.assert_no_twin(thing).await;
}

#[tokio::test]
async fn rejected_updates_leave_the_twin_unchanged() {
    let hub = Hub::start();
    let thing = "paho-reject-2";
    let answers = hub
        .device(
            thing,
            &[
                r#"update={"state":{"reported":{"mode":"off"}}}"#,
                r#"update={"state":{"reported":{"mode":"stale"}},"version":7}"#,
                r#"update={"state":{"reported":{"mode":"broken"}"#,
            ],
        )
        .await;
    let outcomes: Vec<_> = answers.iter().map(|a| a["outcome"].clone()).collect();
    assert_eq!(
        outcomes,
        [json!("accepted"), json!("rejected"), json!("rejected")]
    );
    let twin = hub.http.twin(thing).await;
    assert_eq!(twin["reported"]["state"], json!({"mode": "off"}));
}

#[tokio::test]
async fn http_desired_reaches_a_paho_device_as_a_delta_and_its_report_clears_it() {
    let hub = Hub::start();
    let thing = "paho-delta-1";
    let mut device = Running::spawn(
        "delta_device.py",
        hub.script_command("delta_device.py", thing, &["--mqtt5", "--count", "1"]),
    );
    device
        .line_where(|line| line == r#"{"event":"ready"}"#, "ready line")
        .await;

    let before = unix_seconds();
    let desired = json!({"light": {"on": true, "level": 7}});
    let patched = hub.http.patch_desired(thing, &desired).await;
    assert_eq!(patched["version"], json!(1));

    let delta_line = device
        .line_where(|line| line.contains("/update/delta"), "delta")
        .await;
    let (output, _) = device.finish().await;
    let after = unix_seconds();
    assert_success("delta_device.py", &output);
    let delta: Value = serde_json::from_str(&delta_line).expect("a JSON line");
    assert_eq!(delta["topic"], json!(topic::delta(thing)));
    let delta = &delta["document"];
    assert_eq!(delta["state"], desired, "{delta}");
    assert_eq!(delta["version"], json!(1));
    assert_aws_times(delta, before, after);

    let report = json_lines(&output.stdout)
        .into_iter()
        .last()
        .expect("the answer to the report");
    let accepted = answer(
        &report,
        &topic::accepted(thing, ShadowOp::Update),
        "accepted",
    );
    assert_eq!(accepted["state"]["reported"], desired);
    assert_eq!(accepted["version"], json!(2));

    let twin = hub.http.twin(thing).await;
    assert_eq!(twin["reported"]["state"], desired);
    assert_eq!(twin["delta"], json!({}));
}

#[tokio::test]
async fn a_paho_device_that_subscribes_later_still_gets_the_pending_delta() {
    let hub = Hub::start();
    let thing = "paho-delta-2";
    hub.http.patch_desired(thing, &json!({"mode": "eco"})).await;

    let device = Running::spawn(
        "delta_device.py",
        hub.script_command("delta_device.py", thing, &["--count", "1"]),
    );
    let (output, _) = device.finish().await;
    assert_success("delta_device.py", &output);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3, "ready, delta, report answer: {lines:#?}");
    assert_eq!(lines[1]["document"]["state"], json!({"mode": "eco"}));
    assert_eq!(lines[2]["outcome"], json!("accepted"), "{:?}", lines[2]);
    assert_eq!(hub.http.twin(thing).await["delta"], json!({}));
}

#[tokio::test]
async fn mosquitto_sub_sees_a_paho_client_connect() {
    let hub = Hub::start();
    let client = "paho-presence-1";
    let sub = hub
        .mosquitto_sub(
            "presence-watch-1",
            "$aws/events/presence/connected/+",
            1,
            &[],
        )
        .await;
    let before_millis = unix_seconds() * 1000;
    hub.device(client, &[]).await;
    let (output, lines) = sub.finish().await;
    assert_success("mosquitto_sub", &output);
    let after_millis = (unix_seconds() + 1) * 1000;

    let events = sub_messages(&lines, "$aws/events/presence/");
    assert_eq!(events.len(), 1, "{lines:#?}");
    let (topic, event) = &events[0];
    assert_eq!(topic, &topic::presence_event("connected", client));
    assert_eq!(event["eventType"], json!("connected"));
    assert_eq!(event["clientId"], json!(client));
    assert_eq!(event["principalIdentifier"], json!(client));
    assert_eq!(event["ipAddress"], json!("127.0.0.1"));
    // Lifecycle events, unlike shadow documents, carry milliseconds on AWS.
    let timestamp = event["timestamp"].as_i64().expect("a timestamp");
    assert!(
        (before_millis..=after_millis).contains(&timestamp),
        "timestamp {timestamp} is not milliseconds between {before_millis} and {after_millis}"
    );
    assert!(event["sessionIdentifier"].is_string(), "{event}");
    assert!(event["versionNumber"].is_u64(), "{event}");
}

#[tokio::test]
async fn presence_events_of_one_session_share_its_session_identifier() {
    let hub = Hub::start();
    let client = "paho-presence-2";
    let sub = hub
        .mosquitto_sub(
            "presence-watch-2",
            &topic::presence_event("+", client),
            2,
            &[],
        )
        .await;
    hub.device(client, &[]).await;
    let (output, lines) = sub.finish().await;
    assert_success("mosquitto_sub", &output);

    let events = sub_messages(&lines, "$aws/events/presence/");
    let kinds: Vec<_> = events.iter().map(|(_, e)| e["eventType"].clone()).collect();
    assert_eq!(
        kinds,
        [json!("connected"), json!("disconnected")],
        "{lines:#?}"
    );
    let (connected, disconnected) = (&events[0].1, &events[1].1);
    assert_eq!(disconnected["clientId"], json!(client));
    assert_eq!(
        disconnected["disconnectReason"],
        json!("CLIENT_INITIATED_DISCONNECT")
    );
    assert_eq!(disconnected["clientInitiatedDisconnect"], json!(true));
    assert!(
        disconnected["versionNumber"].as_u64() > connected["versionNumber"].as_u64(),
        "versionNumber orders a client's events: {connected} then {disconnected}"
    );
    // AWS: "a globally unique identifier ... that exists for the life of the session".
    assert_eq!(
        connected["sessionIdentifier"], disconnected["sessionIdentifier"],
        "one session, one sessionIdentifier"
    );
}

/// `mosquitto_pub -l` streams one shadow update per line on one connection, each sent as soon as
/// the previous one is acknowledged: every line is applied, in the order of the lines.
#[tokio::test]
async fn mosquitto_pub_streaming_lines_has_every_update_applied_in_order() {
    const LINES: u64 = 200;
    let hub = Hub::start();
    let thing = "mosq-stream";
    let mut lines = tempfile::NamedTempFile::new().expect("a temporary file");
    for seq in 0..LINES {
        writeln!(lines, r#"{{"state":{{"reported":{{"seq":{seq}}}}}}}"#).expect("write a line");
    }
    let mut command = hub.mosquitto("mosquitto_pub", thing);
    command.args([
        "-t",
        &topic::request(thing, ShadowOp::Update),
        "-l",
        "-q",
        "1",
    ]);
    let stdin = std::fs::File::open(lines.path()).expect("the lines");
    let output = run_fed("mosquitto_pub -l", command, stdin.into()).await;
    assert_success("mosquitto_pub -l", &output);

    // The lines apply in order, so once the last one shows, all have applied.
    let twin = hub
        .http
        .twin_reporting(thing, &json!({"seq": LINES - 1}))
        .await;
    assert_eq!(twin["shadow_version"], LINES);
    let (_, history) = hub
        .http
        .get(&format!(
            "/v1/tenants/default/twins/{thing}/history?kind=REPORTED&limit=1000"
        ))
        .await;
    let applied: Vec<Value> = history["items"]
        .as_array()
        .expect("a history page")
        .iter()
        .map(|entry| entry["state"]["seq"].clone())
        .collect();
    let sent: Vec<Value> = (0..LINES).map(|seq| json!(seq)).collect();
    assert_eq!(applied, sent, "history: {history}");
}

#[tokio::test]
async fn a_thing_cannot_touch_another_things_shadow_but_updates_its_own() {
    let hub = Hub::start();
    let (a, b) = ("mosq-acl-a", "mosq-acl-b");
    let foreign = topic::request(b, ShadowOp::Update);
    let payload = r#"{"state":{"reported":{"hijacked":true}}}"#;

    // MQTT 3.1.1 has no way to refuse a publish: the broker acknowledges and drops it.
    let v311 = hub.mosquitto_pub(a, &foreign, payload, &[]).await;
    assert_success("mosquitto_pub (3.1.1) to another thing", &v311);
    // MQTT 5 says why in the PUBACK.
    let v5 = hub
        .mosquitto_pub(a, &foreign, payload, &["-V", "mqttv5"])
        .await;
    assert!(
        String::from_utf8_lossy(&v5.stderr).contains("Not authorized"),
        "MQTT 5 PUBACK should say not authorized: {}",
        describe(&v5)
    );
    let own = topic::request(a, ShadowOp::Update);
    let mine = hub
        .mosquitto_pub(a, &own, r#"{"state":{"reported":{"mine":true}}}"#, &[])
        .await;
    assert_success("mosquitto_pub to its own shadow", &mine);

    // The PUBACK says the hub took the update, not that it is durable: wait for the twin. The
    // refused publishes were dropped before their PUBACKs, so they are settled already.
    hub.http.twin_reporting(a, &json!({"mine": true})).await;
    hub.http.assert_no_twin(b).await;

    // The same message from a client allowed there does create the twin: the refusals above
    // were the ACL's doing, not a message the hub would have ignored anyway.
    let (app, secret) = hub.http.credential("apps/acl-control").await;
    let control = hub
        .mosquitto_pub(
            "acl-control-1",
            &foreign,
            payload,
            &["-u", &app, "-P", &secret],
        )
        .await;
    assert_success("mosquitto_pub as an application", &control);
    hub.http.twin_reporting(b, &json!({"hijacked": true})).await;
}

#[tokio::test]
async fn a_thing_cannot_subscribe_to_another_things_shadow() {
    let hub = Hub::start();
    let (a, b) = ("mosq-acl-c", "mosq-acl-d");
    let mut command = hub.mosquitto("mosquitto_sub", a);
    command
        .args(["-t", &topic::accepted(b, ShadowOp::Update)])
        .args(["-C", "1", "-W", SUB_WAIT_SECONDS]);
    let output = run("mosquitto_sub", command).await;
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("All subscription requests were denied"),
        "the SUBACK should refuse: {}",
        describe(&output)
    );
}

#[tokio::test]
async fn a_named_shadow_updated_over_paho_has_its_own_twin() {
    let hub = Hub::start();
    let thing = "paho-named-1";
    let answers = hub
        .device(
            thing,
            &[
                "--mqtt5",
                "--shadow",
                "config",
                r#"update={"state":{"reported":{"interval":30}},"clientToken":"named-1"}"#,
                "get",
            ],
        )
        .await;
    let accepted = answer(
        &answers[0],
        &topic::named_accepted(thing, "config", ShadowOp::Update),
        "accepted",
    );
    assert_eq!(accepted["clientToken"], json!("named-1"));
    assert_eq!(accepted["version"], json!(1));
    let got = answer(
        &answers[1],
        &topic::named_accepted(thing, "config", ShadowOp::Get),
        "accepted",
    );
    assert_eq!(got["state"]["reported"], json!({"interval": 30}));

    let twin = hub.http.twin(&format!("{thing}/shadows/config")).await;
    assert_eq!(twin["reported"]["state"], json!({"interval": 30}));
    // The classic shadow is another twin, which nobody wrote.
    hub.http.assert_no_twin(thing).await;
}

#[tokio::test]
async fn device_credentials_let_mosquitto_in_and_a_wrong_password_is_refused() {
    let hub = Hub::start();
    let device = "mosq-cred-1";
    let (username, password) = hub.http.credential(&format!("devices/{device}")).await;
    assert_eq!(username, format!("default/devices/{device}"));
    let topic = topic::request(device, ShadowOp::Update);

    let allowed = hub
        .mosquitto_pub(
            device,
            &topic,
            r#"{"state":{"reported":{"firmware":"1.0.0"}}}"#,
            &["-u", &username, "-P", &password],
        )
        .await;
    assert_success("mosquitto_pub with the device's credential", &allowed);
    hub.http
        .twin_reporting(device, &json!({"firmware": "1.0.0"}))
        .await;

    let refused = hub
        .mosquitto_pub(
            device,
            &topic,
            r#"{"state":{"reported":{"firmware":"6.6.6"}}}"#,
            &["-u", &username, "-P", "not-the-password"],
        )
        .await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("Connection Refused: bad user name or password"),
        "{}",
        describe(&refused)
    );
    assert_eq!(
        hub.http.twin(device).await["reported"]["state"],
        json!({"firmware": "1.0.0"})
    );
}

#[tokio::test]
async fn an_application_watches_every_things_documents() {
    let hub = Hub::start();
    let (username, password) = hub.http.credential("apps/dashboard").await;
    assert_eq!(username, "default/apps/dashboard");
    let sub = hub
        .mosquitto_sub(
            "dashboard-1",
            &topic::documents("+"),
            1,
            &["-u", &username, "-P", &password],
        )
        .await;
    let thing = "paho-watched-1";
    let before = unix_seconds();
    hub.device(
        thing,
        &[r#"update={"state":{"reported":{"rpm":900}},"clientToken":"doc-1"}"#],
    )
    .await;
    let (output, lines) = sub.finish().await;
    let after = unix_seconds();
    assert_success("mosquitto_sub as an application", &output);

    let documents = sub_messages(&lines, "$aws/things/");
    assert_eq!(documents.len(), 1, "{lines:#?}");
    let (topic, document) = &documents[0];
    assert_eq!(topic, &topic::documents(thing));
    assert_eq!(document["previous"], Value::Null, "the shadow is new");
    assert_eq!(
        document["current"]["state"],
        json!({"reported": {"rpm": 900}})
    );
    assert_eq!(document["current"]["version"], json!(1));
    assert_eq!(document["clientToken"], json!("doc-1"));
    assert_seconds(&document["timestamp"], before, after, "timestamp");
    assert_aws_times(
        &json!({"timestamp": document["timestamp"], "metadata": document["current"]["metadata"]}),
        before,
        after,
    );
}

#[tokio::test]
async fn mosquitto_clients_receive_commands_in_priority_order_and_acknowledge_them() {
    let hub = Hub::start();
    let thing = "mosq-cmd-1";
    let (_, low) = hub
        .http
        .queue_command(thing, &json!({"type": "blink", "priority": 1}))
        .await;
    let (_, high) = hub
        .http
        .queue_command(
            thing,
            &json!({"type": "reboot", "priority": 9, "payload": {"delay_s": 5}}),
        )
        .await;
    let filter = topic::commands(thing);
    let sub = hub.mosquitto_sub(thing, &filter, 2, &[]).await;
    let (output, lines) = sub.finish().await;
    assert_success("mosquitto_sub", &output);
    let commands = sub_messages(&lines, "$doppel/things/");
    let ids: Vec<&Value> = commands.iter().map(|(_, command)| &command["id"]).collect();
    assert_eq!(ids, [&high["id"], &low["id"]], "{lines:#?}");
    assert_eq!(commands[0].1["payload"], json!({"delay_s": 5}));

    let id = high["id"].as_str().expect("an id");
    let ack = hub
        .mosquitto_pub(
            thing,
            &topic::command_ack(thing, id),
            r#"{"status": "SUCCEEDED", "response": {"rebooted": true}}"#,
            &[],
        )
        .await;
    assert_success("mosquitto_pub of the acknowledgement", &ack);
    let command = hub.http.command(thing, id).await;
    assert_eq!(command["status"], "ACKNOWLEDGED");
    assert_eq!(command["response"], json!({"rebooted": true}));
}
