//! The AWS IoT Device SDK v2 for Python (`awsiotsdk` on `awscrt`) against the real binary on
//! port 0, used unchanged: `tests/external/aws_sdk_device.py` drives the SDK's own shadow
//! clients and prints what the SDK parsed from Doppel's messages. The tests assert on those
//! parsed values (so a field the SDK cannot read, or reads as the wrong type, fails here) and on
//! the twin over HTTP.
//!
//! The SDK has two shadow clients and two MQTT clients; [`Sdk`] names the four pairings.
//!
//! `scripts/test` installs the SDK. When it is missing the tests fail, never skip: a suite that
//! silently ran nothing would look green.

mod common;

use common::http::HttpClient;
use common::process::{
    Running, assert_success, describe, json_lines, python_script, python_succeeds, require_clients,
    run,
};
use common::{Server, unix_seconds};
use serde_json::{Value, json};
use std::sync::OnceLock;
use tokio::process::Command;

const SCRIPT: &str = "aws_sdk_device.py";

/// The script's exit code when the broker refused the connection.
const EXIT_REFUSED: i32 = 3;

/// Fails the test, with what to do about it, when the SDK is not installed.
fn require_sdk() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let check = || {
        python_succeeds(
            "import awscrt.mqtt5, awscrt.mqtt_request_response, awsiot.iotshadow as s; \
             s.IotShadowClientV2",
            "python3 cannot use the AWS IoT Device SDK v2",
            "no awsiot module",
        )
    };
    require_clients(&CHECKED, check, "awsiotsdk");
}

/// The SDK's shadow client and MQTT client a device uses.
#[derive(Clone, Copy, Debug)]
enum Sdk {
    /// `IotShadowClient` (subscribe with callbacks, publish requests) on
    /// `awscrt.mqtt.Connection`, MQTT 3.1.1.
    PubSub311,
    /// `IotShadowClient` on `awscrt.mqtt5.Client`, through the SDK's MQTT 3 adapter.
    PubSub5,
    /// `IotShadowClientV2` (one future per request) on MQTT 3.1.1.
    RequestResponse311,
    /// `IotShadowClientV2` on `awscrt.mqtt5.Client`: what AWS's current samples use.
    RequestResponse5,
}

impl Sdk {
    fn args(self) -> &'static [&'static str] {
        match self {
            Sdk::PubSub311 => &[],
            Sdk::PubSub5 => &["--mqtt5"],
            Sdk::RequestResponse311 => &["--v2"],
            Sdk::RequestResponse5 => &["--v2", "--mqtt5"],
        }
    }

    fn request_response(self) -> bool {
        matches!(self, Sdk::RequestResponse311 | Sdk::RequestResponse5)
    }

    /// The SDK class a rejection is parsed into.
    fn error_type(self) -> &'static str {
        if self.request_response() {
            "V2ErrorResponse"
        } else {
            "ErrorResponse"
        }
    }

    /// Asserts that an answer carries its request's client token. The request-response client
    /// replaces the script's token with a UUID of its own (it correlates answers by it), so for
    /// it the answer must carry whatever the request sent.
    fn assert_token(self, line: &Value, script_token: &str) {
        let sent = line["sent_token"].as_str().expect("the token sent");
        if !self.request_response() {
            assert_eq!(sent, script_token, "{line}");
        }
        assert_eq!(line["parsed"]["client_token"], json!(sent), "{line}");
    }
}

/// The seconds between a device's start and its end: every timestamp the SDK parsed must fall
/// in it (a timestamp in milliseconds would not, nor would the SDK parse it).
struct Window {
    from: i64,
    to: i64,
}

impl Window {
    /// A window from now; [`Window::close`] ends it.
    fn open() -> Window {
        let now = unix_seconds();
        Window { from: now, to: now }
    }

    fn close(self) -> Window {
        Window {
            to: unix_seconds(),
            ..self
        }
    }

    fn assert_contains(&self, value: &Value, what: &str) {
        let seconds = value
            .as_i64()
            .unwrap_or_else(|| panic!("{what} is not a timestamp the SDK parsed: {value}"));
        assert!(
            (self.from..=self.to).contains(&seconds),
            "{what} = {seconds} is not Unix seconds between {} and {}",
            self.from,
            self.to
        );
    }

    /// Asserts the `timestamp` of every leaf named by `paths` (dot-separated) under `metadata`.
    fn assert_metadata(&self, metadata: &Value, paths: &[&str]) {
        for path in paths {
            let leaf = path.split('.').fold(metadata, |node, name| &node[name]);
            self.assert_contains(&leaf["timestamp"], &format!("metadata.{path}.timestamp"));
        }
    }
}

/// The script's arguments for a device credential.
/// `--username=..` and `--password=..` as one argument each: a generated password may begin
/// with `-`, which the script's argument parser would take for an option if it stood alone.
fn login_args(username: &str, password: &str) -> [String; 2] {
    [
        format!("--username={username}"),
        format!("--password={password}"),
    ]
}

/// The line of `step` among a device's lines.
fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["step"] == json!(name))
        .unwrap_or_else(|| panic!("no {name} step in {lines:#?}"))
}

/// Asserts a line's outcome and the SDK class it was parsed into; returns what the SDK parsed.
fn parsed<'a>(line: &'a Value, outcome: &str, class: &str) -> &'a Value {
    assert_eq!(
        (line["outcome"].as_str(), line["type"].as_str()),
        (Some(outcome), Some(class)),
        "unexpected answer: {line}"
    );
    &line["parsed"]
}

/// A server and an HTTP client for it.
struct Hub {
    server: Server,
    http: HttpClient,
}

impl Hub {
    /// Anonymous MQTT on: a device's client id names its thing.
    fn anonymous() -> Hub {
        Self::start(&["--mqtt-allow-anonymous", "true"])
    }

    /// Anonymous MQTT off: only devices with credentials get in.
    fn authenticated() -> Hub {
        Self::start(&[])
    }

    fn start(args: &[&str]) -> Hub {
        require_sdk();
        let server = Server::start_with(args);
        let http = HttpClient::new(&server);
        Hub { server, http }
    }

    /// `aws_sdk_device.py HOST PORT THING SCENARIO` with the SDK's clients and `args`.
    fn device(&self, thing: &str, scenario: &str, sdk: Sdk, args: &[&str]) -> Command {
        let mqtt = self.server.mqtt;
        let mut command = python_script(SCRIPT);
        command
            .args([
                &mqtt.ip().to_string(),
                &mqtt.port().to_string(),
                thing,
                scenario,
            ])
            .args(sdk.args())
            .args(args);
        command
    }

    /// Runs a scenario to its end and returns the device's lines after the connect line.
    async fn run(&self, thing: &str, scenario: &str, sdk: Sdk, args: &[&str]) -> Vec<Value> {
        let output = run(SCRIPT, self.device(thing, scenario, sdk, args)).await;
        assert_success(&format!("{scenario} with {sdk:?}"), &output);
        let mut lines = json_lines(&output.stdout);
        assert_eq!(
            lines.first().map(|line| &line["step"]),
            Some(&json!("connect")),
            "{lines:#?}"
        );
        lines.remove(0);
        lines
    }

    /// Creates a credential for device `device`: (username, password).
    async fn credential(&self, device: &str) -> (String, String) {
        self.http.credential(&format!("devices/{device}")).await
    }
}

/// Update (with a documents event), get, delete and get again, checking each value the SDK
/// parsed: versions, states, metadata timestamps, client tokens and the 404.
async fn update_get_delete(sdk: Sdk, thing: &str) {
    let hub = Hub::anonymous();
    let window = Window::open();
    let lines = hub.run(thing, "update-get-delete", sdk, &[]).await;
    let window = window.close();
    let reported = json!({"temp": 21.5, "fan": {"speed": 2}});
    let desired = json!({"temp": 22});
    let metadata_leaves = ["reported.temp", "reported.fan.speed", "desired.temp"];

    let update = step(&lines, "update");
    let accepted = parsed(update, "accepted", "UpdateShadowResponse");
    sdk.assert_token(update, "sdk-update-1");
    assert_eq!(accepted["version"], json!(1), "{accepted}");
    assert_eq!(accepted["state"]["reported"], reported);
    assert_eq!(accepted["state"]["desired"], desired);
    window.assert_contains(&accepted["timestamp"], "timestamp");
    window.assert_metadata(&accepted["metadata"], &metadata_leaves);

    let documents = parsed(step(&lines, "documents"), "event", "ShadowUpdatedEvent");
    let current = &documents["current"];
    assert_eq!(current["version"], json!(1), "{documents}");
    assert_eq!(current["state"]["reported"], reported);
    assert_eq!(current["state"]["desired"], desired);
    window.assert_metadata(&current["metadata"], &metadata_leaves);
    window.assert_contains(&documents["timestamp"], "documents timestamp");
    assert!(
        documents.get("previous").is_none(),
        "a new shadow: {documents}"
    );

    let get = step(&lines, "get");
    let got = parsed(get, "accepted", "GetShadowResponse");
    sdk.assert_token(get, "sdk-get-1");
    assert_eq!(
        got["state"],
        json!({"reported": reported, "desired": desired, "delta": {"temp": 22}})
    );
    assert_eq!(got["version"], json!(1));
    window.assert_contains(&got["timestamp"], "timestamp");
    window.assert_metadata(&got["metadata"], &metadata_leaves);

    let delete = step(&lines, "delete");
    let deleted = parsed(delete, "accepted", "DeleteShadowResponse");
    sdk.assert_token(delete, "sdk-delete-1");
    // docs/MQTT.md: a delete counts as a change of the shadow's version.
    assert_eq!(deleted["version"], json!(2), "{deleted}");
    window.assert_contains(&deleted["timestamp"], "timestamp");

    let gone = step(&lines, "get-deleted");
    let error = parsed(gone, "rejected", sdk.error_type());
    sdk.assert_token(gone, "sdk-get-2");
    assert_eq!(error["code"], json!(404));
    assert_eq!(
        error["message"],
        json!(format!("No shadow exists with name: '{thing}'"))
    );
    window.assert_contains(&error["timestamp"], "timestamp");

    hub.http.assert_no_twin(thing).await;
}

#[tokio::test]
async fn sdk_pubsub_client_over_mqtt311_updates_gets_and_deletes_a_shadow() {
    update_get_delete(Sdk::PubSub311, "sdk-ugd-1").await;
}

#[tokio::test]
async fn sdk_pubsub_client_over_mqtt5_updates_gets_and_deletes_a_shadow() {
    update_get_delete(Sdk::PubSub5, "sdk-ugd-2").await;
}

#[tokio::test]
async fn sdk_request_response_client_over_mqtt311_updates_gets_and_deletes_a_shadow() {
    update_get_delete(Sdk::RequestResponse311, "sdk-ugd-3").await;
}

#[tokio::test]
async fn sdk_request_response_client_over_mqtt5_updates_gets_and_deletes_a_shadow() {
    update_get_delete(Sdk::RequestResponse5, "sdk-ugd-4").await;
}

/// Updates at the current version apply; at a stale one the SDK gets a 409 and nothing changes.
async fn conflict(hub: &Hub, sdk: Sdk, thing: &str, args: &[&str]) {
    let lines = hub.run(thing, "conflict", sdk, args).await;
    let first = step(&lines, "update");
    assert_eq!(
        parsed(first, "accepted", "UpdateShadowResponse")["version"],
        json!(1)
    );
    let current = step(&lines, "update-current");
    let applied = parsed(current, "accepted", "UpdateShadowResponse");
    sdk.assert_token(current, "sdk-conflict-2");
    assert_eq!(applied["version"], json!(2), "the version matched: applied");

    let stale = step(&lines, "update-stale");
    let error = parsed(stale, "rejected", sdk.error_type());
    sdk.assert_token(stale, "sdk-conflict-3");
    assert_eq!(
        (&error["code"], &error["message"]),
        (&json!(409), &json!("Version conflict"))
    );

    let twin = hub.http.twin(thing).await;
    assert_eq!(
        twin["reported"]["state"],
        json!({"mode": "off", "level": 1})
    );
    assert_eq!(twin["shadow_version"], json!(2));
}

#[tokio::test]
async fn sdk_pubsub_client_gets_a_409_for_a_stale_version() {
    conflict(&Hub::anonymous(), Sdk::PubSub311, "sdk-conflict-1", &[]).await;
}

#[tokio::test]
async fn sdk_request_response_client_gets_a_409_for_a_stale_version() {
    conflict(
        &Hub::anonymous(),
        Sdk::RequestResponse5,
        "sdk-conflict-2",
        &[],
    )
    .await;
}

#[tokio::test]
async fn sdk_nulls_remove_a_reported_key_and_the_desired_section() {
    let hub = Hub::anonymous();
    let thing = "sdk-clear-1";
    let lines = hub.run(thing, "clear", Sdk::PubSub311, &[]).await;

    let cleared = parsed(step(&lines, "clear"), "accepted", "UpdateShadowResponse");
    // The SDK keeps `"desired": null` apart from an absent desired section.
    assert_eq!(
        cleared["state"],
        json!({"desired_is_nullable": true, "reported": {"level": null}, "reported_is_nullable": false}),
        "{cleared}"
    );
    assert_eq!(cleared["version"], json!(2));
    let got = parsed(step(&lines, "get"), "accepted", "GetShadowResponse");
    assert_eq!(got["state"], json!({"reported": {"mode": "off"}}), "{got}");

    let twin = hub.http.twin(thing).await;
    assert_eq!(twin["reported"]["state"], json!({"mode": "off"}));
    assert_eq!(twin["desired"]["state"], json!({}));
    assert_eq!(twin["delta"], json!({}));
}

/// A desired change over HTTP reaches the device as a delta event the SDK parses; the device
/// reports it back, which empties the delta.
async fn delta(sdk: Sdk, thing: &str, shadow: Option<&str>) {
    let hub = Hub::anonymous();
    let (path, args) = match shadow {
        Some(name) => (format!("{thing}/shadows/{name}"), vec!["--shadow", name]),
        None => (thing.to_owned(), vec![]),
    };
    let mut device = Running::spawn(SCRIPT, hub.device(thing, "delta", sdk, &args));
    let is_ready = |line: &str| {
        serde_json::from_str::<Value>(line).is_ok_and(|line| line["step"] == json!("ready"))
    };
    device.line_where(is_ready, "ready step").await;

    let window = Window::open();
    let desired = json!({"light": {"on": true, "level": 7}});
    let patched = hub.http.patch_desired(&path, &desired).await;
    assert_eq!(patched["shadow_version"], json!(1), "{patched}");
    let (output, _) = device.finish().await;
    let window = window.close();
    assert_success(SCRIPT, &output);
    let lines = json_lines(&output.stdout);

    let event = parsed(step(&lines, "delta"), "event", "ShadowDeltaUpdatedEvent");
    assert_eq!(event["state"], desired, "{event}");
    assert_eq!(event["version"], json!(1));
    window.assert_contains(&event["timestamp"], "timestamp");
    window.assert_metadata(&event["metadata"], &["light.on", "light.level"]);

    let report = step(&lines, "report");
    let accepted = parsed(report, "accepted", "UpdateShadowResponse");
    sdk.assert_token(report, "sdk-report-1");
    assert_eq!(accepted["state"]["reported"], desired);
    assert_eq!(accepted["version"], json!(2));

    let twin = hub.http.twin(&path).await;
    assert_eq!(twin["reported"]["state"], desired);
    assert_eq!(twin["delta"], json!({}));
}

#[tokio::test]
async fn sdk_pubsub_client_follows_a_delta_from_http() {
    delta(Sdk::PubSub311, "sdk-delta-1", None).await;
}

#[tokio::test]
async fn sdk_request_response_client_streams_a_delta_from_http() {
    delta(Sdk::RequestResponse5, "sdk-delta-2", None).await;
}

#[tokio::test]
async fn sdk_request_response_client_streams_a_named_shadow_delta() {
    delta(Sdk::RequestResponse5, "sdk-delta-3", Some("config")).await;
}

/// A named shadow is a twin of its own, apart from the thing's classic shadow.
async fn named(sdk: Sdk, thing: &str) {
    let hub = Hub::anonymous();
    let lines = hub.run(thing, "named", sdk, &["--shadow", "config"]).await;
    let update = step(&lines, "update");
    assert_eq!(
        parsed(update, "accepted", "UpdateShadowResponse")["version"],
        json!(1)
    );
    sdk.assert_token(update, "sdk-named-1");
    let get = step(&lines, "get");
    let got = parsed(get, "accepted", "GetShadowResponse");
    sdk.assert_token(get, "sdk-named-2");
    assert_eq!(
        got["state"],
        json!({"reported": {"interval": 30}, "desired": {"interval": 60}, "delta": {"interval": 60}})
    );

    let twin = hub.http.twin(&format!("{thing}/shadows/config")).await;
    assert_eq!(twin["reported"]["state"], json!({"interval": 30}));
    assert_eq!(twin["desired"]["state"], json!({"interval": 60}));
    hub.http.assert_no_twin(thing).await;
}

#[tokio::test]
async fn sdk_pubsub_client_updates_a_named_shadow() {
    named(Sdk::PubSub311, "sdk-named-1").await;
}

#[tokio::test]
async fn sdk_request_response_client_updates_a_named_shadow() {
    named(Sdk::RequestResponse5, "sdk-named-2").await;
}

#[tokio::test]
async fn sdk_device_with_credentials_uses_its_shadow_and_a_wrong_password_is_refused() {
    let hub = Hub::authenticated();
    let thing = "sdk-cred-1";
    let (username, password) = hub.credential(thing).await;
    let login = login_args(&username, &password);
    let login: Vec<&str> = login.iter().map(String::as_str).collect();
    conflict(&hub, Sdk::PubSub311, thing, &login).await;

    // MQTT 5 says why in the CONNACK (the 3.1.1 client of awscrt reports every refusal as a
    // protocol error).
    let refusals = [
        (
            vec![
                "--username",
                username.as_str(),
                "--password",
                "not-the-password",
            ],
            "BAD_USERNAME_OR_PASSWORD",
        ),
        (vec![], "NOT_AUTHORIZED"),
    ];
    for (args, reason) in refusals {
        let output = run(
            SCRIPT,
            hub.device(thing, "connect", Sdk::RequestResponse5, &args),
        )
        .await;
        assert_eq!(
            output.status.code(),
            Some(EXIT_REFUSED),
            "{}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(reason),
            "the CONNACK should say {reason}: {}",
            describe(&output)
        );
    }
}

/// By default the SDK appends its metrics to the MQTT username as a query string
/// (`?SDK=IoTDeviceSDK/Python&Platform=...&Metadata=(...)`, a username of its own when the
/// firmware set none), which AWS IoT Core accepts. Unchanged firmware sends them; firmware may
/// turn them off. Both must connect, anonymously and with credentials.
#[tokio::test]
async fn sdk_metrics_in_the_username_do_not_stop_a_device_from_connecting() {
    let hub = Hub::anonymous();
    let (device, anonymous) = ("sdk-metrics-1", "sdk-metrics-2");
    let (username, password) = hub.credential(device).await;
    let login = login_args(&username, &password);
    let login: Vec<&str> = login.iter().map(String::as_str).collect();
    let mut failures = Vec::new();
    for sdk in [Sdk::PubSub311, Sdk::RequestResponse5] {
        for metrics in [None, Some("--disable-metrics")] {
            for (thing, credentials) in [(anonymous, &[][..]), (device, &login[..])] {
                let args: Vec<&str> = credentials.iter().copied().chain(metrics).collect();
                let output = run(SCRIPT, hub.device(thing, "connect", sdk, &args)).await;
                if !output.status.success() {
                    failures.push(format!(
                        "{sdk:?} {thing} {:?}: {}",
                        metrics.unwrap_or("with metrics"),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "connections refused:\n{}",
        failures.join("\n")
    );
}
