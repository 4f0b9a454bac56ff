//! MQTT over TLS (with device certificates) and over WebSocket, end to end with clients outside
//! Rust: `mosquitto_pub` (Debian's mosquitto-clients) and paho-mqtt (PyPI), which scripts/test
//! installs. Certificates are made per test with the `openssl` command.

mod common;

use common::Server;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|err| {
        panic!("cannot run {command:?} ({err}); run scripts/test, which installs it")
    })
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1, and device certificates signed by the CA.
fn make_certificates(dir: &Path, devices: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=doppel-test-ca",
        ],
    );
    // Extensions make the certificates X.509 v3, the only version webpki accepts.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("device.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let mut names = vec!["server"];
    names.extend_from_slice(devices);
    for name in names {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subject = format!("/CN={}", if name == "server" { "localhost" } else { name });
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
        );
        let extensions = if name == "server" {
            "server.ext"
        } else {
            "device.ext"
        };
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            extensions,
        ];
        openssl(dir, &sign);
    }
}

async fn twin(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_log_in_with_a_certificate_whose_common_name_names_them() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path(), &["pump-tls", "pump-other"]);
    let file = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
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
    let tls = server
        .mqtt_listeners
        .iter()
        .find(|(scheme, _)| scheme == "mqtts")
        .map(|(_, addr)| *addr)
        .expect("a TLS listener");
    let publish = |device: &str, thing: &str| {
        run(Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &tls.port().to_string(),
                "-q",
                "1",
                "-i",
                device,
            ])
            .args(["--cafile", &file("ca.pem")])
            .args([
                "--cert",
                &file(&format!("{device}.pem")),
                "--key",
                &file(&format!("{device}.key")),
            ])
            .args(["-t", &format!("$aws/things/{thing}/shadow/update")])
            .args(["-m", r#"{"state":{"reported":{"secure":true}}}"#]))
    };
    let own = publish("pump-tls", "pump-tls");
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let (status, body) = twin(&server, "/v1/tenants/default/twins/pump-tls").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reported"]["state"]["secure"], true);

    // The certificate names the thing: another thing's shadow stays out of reach.
    let other = publish("pump-other", "pump-tls-2");
    assert!(other.status.success());
    let (status, _) = twin(&server, "/v1/tenants/default/twins/pump-tls-2").await;
    assert_eq!(status, 404);

    // No certificate, no connection.
    let anonymous = run(Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls.port().to_string(),
            "-i",
            "nobody",
        ])
        .args(["--cafile", &file("ca.pem"), "-t", "x", "-m", "y"]));
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
    let ws = server
        .mqtt_listeners
        .iter()
        .find(|(scheme, _)| scheme == "ws")
        .map(|(_, addr)| *addr)
        .expect("a WebSocket listener");
    let output = run(Command::new("python3").args(["-c", WS_ROUND_TRIP, &ws.port().to_string()]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["topic"],
        "$aws/things/browser-1/shadow/update/accepted"
    );
    assert_eq!(answer["body"]["state"]["reported"]["via"], "ws");
    let (status, body) = twin(&server, "/v1/tenants/default/twins/browser-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["reported"]["state"]["via"], "ws");
}
