//! MQTT over TLS (with device certificates) and over WebSocket, end to end with clients outside
//! Rust: `mosquitto_pub` (Debian's mosquitto-clients) and paho-mqtt (PyPI), which scripts/test
//! installs. Certificates are made per test with the `openssl` command.

mod common;

use common::Server;
use common::certs::TestCa;
use common::http::HttpClient;
use common::process::{assert_success, run};
use common::topic::{self, ShadowOp};
use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn devices_log_in_with_a_certificate_whose_common_name_names_them() {
    let certs = TestCa::new().await;
    certs.server("server").await;
    certs.client("pump-tls").await;
    certs.client("pump-other").await;
    let file = |name: &str| certs.file(name);
    let server = Server::start_with(&[
        "--mqtt-tls-addr",
        "127.0.0.1:0",
        "--mqtt-tls-cert",
        &file("server.pem"),
        "--mqtt-tls-key",
        &file("server.key"),
        "--mqtt-tls-client-ca",
        &file("ca.pem"),
    ]);
    let tls = server.listener("mqtts").expect("a TLS listener");
    let http = HttpClient::new(&server);
    // `mosquitto_pub` to the TLS listener, trusting the test CA.
    let mosquitto_pub = |client_id: &str| {
        let mut command = Command::new("mosquitto_pub");
        command
            .args(["-h", "127.0.0.1", "-p", &tls.port().to_string()])
            .args(["-i", client_id, "--cafile", &file("ca.pem")]);
        command
    };
    let publish = |device: &str, thing: &str| {
        let mut command = mosquitto_pub(device);
        command
            .args(["-q", "1"])
            .args([
                "--cert",
                &file(&format!("{device}.pem")),
                "--key",
                &file(&format!("{device}.key")),
            ])
            .args(["-t", &topic::request(thing, ShadowOp::Update)])
            .args(["-m", r#"{"state":{"reported":{"secure":true}}}"#]);
        run("mosquitto_pub", command)
    };
    let own = publish("pump-tls", "pump-tls").await;
    assert_success("mosquitto_pub with its own certificate", &own);
    http.twin_reporting("pump-tls", &json!({"secure": true}))
        .await;

    // The certificate names the thing: another thing's shadow stays out of reach.
    let other = publish("pump-other", "pump-tls-2").await;
    assert_success("mosquitto_pub with another certificate", &other);
    http.assert_no_twin("pump-tls-2").await;

    // No certificate, no connection.
    let mut anonymous = mosquitto_pub("nobody");
    anonymous.args(["-t", "x", "-m", "y"]);
    let anonymous = run("mosquitto_pub", anonymous).await;
    assert!(!anonymous.status.success());
}

const WS_ROUND_TRIP: &str = r#"
import json, sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
got = threading.Event()
answer = {}
def on_message(client, userdata, message):
    answer["topic"] = message.topic
    answer["body"] = json.loads(message.payload)
    got.set()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="browser-1", transport="websockets")
client.ws_set_options(path="/mqtt")
client.on_message = on_message
client.connect("127.0.0.1", port)
client.loop_start()
subscribed = threading.Event()
client.on_subscribe = lambda *args: subscribed.set()
client.subscribe("$aws/things/browser-1/shadow/update/accepted", qos=1)
if not subscribed.wait(10):
    sys.exit("no SUBACK over WebSocket within 10 s")
client.publish("$aws/things/browser-1/shadow/update", json.dumps({"state": {"reported": {"via": "ws"}}}), qos=1)
if not got.wait(10):
    sys.exit("no /update/accepted over WebSocket within 10 s")
print(json.dumps(answer))
client.loop_stop()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn browsers_speak_mqtt_over_websocket() {
    let server = Server::start_with(&[
        "--mqtt-allow-anonymous",
        "true",
        "--mqtt-ws-addr",
        "127.0.0.1:0",
    ]);
    let ws = server.listener("ws").expect("a WebSocket listener");
    let mut round_trip = Command::new("python3");
    round_trip.args(["-c", WS_ROUND_TRIP, &ws.port().to_string()]);
    let output = run("the WebSocket round trip", round_trip).await;
    assert_success("the WebSocket round trip", &output);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["topic"],
        topic::accepted("browser-1", ShadowOp::Update)
    );
    assert_eq!(answer["body"]["state"]["reported"]["via"], "ws");
    let body = HttpClient::new(&server).twin("browser-1").await;
    assert_eq!(body["reported"]["state"]["via"], "ws");
}
