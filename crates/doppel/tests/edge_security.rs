//! The edge agent's defences, end to end with the real binary: its local API needs the agent's
//! own token (or is served on a Unix socket whose file mode decides), its first start writes
//! that token to `admin.token`, and its link to the hub can run over TLS, checking the hub's
//! certificate and name.

mod common;

use common::Server;
use common::certs::TestCa;
use common::edge::{CONVERGE_TIMEOUT, EDGE_TOKEN, EdgeAgent, EdgeOptions, edge_client};
use common::http::HttpClient;
use common::process::{assert_success, run};
use common::{ADMIN_TOKEN, anonymous_http_client, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use tokio::process::Command;

const DEVICE: &str = "pump-1";

/// A hub with a credential for [`DEVICE`]; its password.
async fn hub_with_device(hub: &Server) -> String {
    HttpClient::new(hub)
        .credential(&format!("devices/{DEVICE}"))
        .await
        .1
}

/// A fresh hub that knows the device, the device's password, and a folder for an agent's data.
async fn hub_for_an_agent() -> (Server, String, tempfile::TempDir) {
    let hub = Server::start();
    let password = hub_with_device(&hub).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    (hub, password, dir)
}

/// Agent `edge-a` for [`DEVICE`] with `password`, reaching the hub at `hub` (as `--hub` takes
/// it), its data in `dir`.
fn agent(hub: &str, password: &str, dir: &Path, options: EdgeOptions<'_>) -> EdgeAgent {
    EdgeAgent::start(
        hub,
        "edge-a",
        &[(DEVICE, password)],
        &dir.join("edge-a"),
        options,
    )
}

/// Sends `method path` to the agent with `client`; status, JSON body (`null` when empty) and
/// whether a 401 named the Bearer scheme.
async fn call(
    client: &reqwest::Client,
    edge: &EdgeAgent,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value, bool) {
    let http = HttpClient::at(&edge.base, client.clone());
    let mut request = http.request(method.clone(), path);
    if let Some(body) = body {
        request = request.json(body);
    }
    let reply = http.send(request).await;
    let challenge = reply
        .headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer"));
    (reply.status, reply.json_or_null(), challenge)
}

/// A request to every kind of route the agent serves: its own, the twin routes, commands,
/// tokens, and a device it does not hold (whose 404 would tell a stranger what it holds).
fn every_kind_of_route() -> Vec<(Method, String, Option<Value>)> {
    let twin = format!("/v1/twins/{DEVICE}");
    vec![
        (Method::GET, "/v1/edge/status".into(), None),
        (Method::GET, "/v1/twins".into(), None),
        (Method::GET, twin.clone(), None),
        (
            Method::PATCH,
            format!("{twin}/reported"),
            Some(json!({"state": {"temp": 21}})),
        ),
        (
            Method::PATCH,
            format!("{twin}/desired"),
            Some(json!({"setpoint": 18})),
        ),
        (Method::GET, format!("{twin}/history"), None),
        (
            Method::POST,
            format!("{twin}/commands"),
            Some(json!({"type": "reboot"})),
        ),
        (Method::GET, "/v1/tokens".into(), None),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(json!({"name": "intruder", "roles": ["admin"], "tenant": "*"})),
        ),
        (Method::GET, "/v1/twins/not-here".into(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_refuses_callers_without_the_agents_token_and_changes_nothing() {
    let (hub, password, dir) = hub_for_an_agent().await;
    // Two invalid tokens per route: more than an address may send at the default.
    let edge = agent(
        &hub.mqtt.to_string(),
        &password,
        dir.path(),
        EdgeOptions {
            extra_args: &["--http-max-auth-failures-per-address", "1000"],
            ..EdgeOptions::default()
        },
    );
    let no_token = anonymous_http_client();
    let wrong = edge_client("dpt_wrongwrongwrongwrongwrongwrongwrongwrongwrong");
    // The hub's admin token is the hub's: the agent keeps tokens of its own.
    let hubs = edge_client(ADMIN_TOKEN);
    let mut checked = 0;
    for (method, path, body) in every_kind_of_route() {
        for (what, client) in [
            ("no token", &no_token),
            ("a wrong token", &wrong),
            ("the hub's token", &hubs),
        ] {
            let (status, problem, challenge) =
                call(client, &edge, &method, &path, body.as_ref()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {what}: {problem}"
            );
            assert_eq!(
                problem["code"], "unauthorized",
                "{method} {path} with {what}"
            );
            assert_eq!(problem["status"], 401, "a problem document: {problem}");
            assert!(challenge, "{method} {path}: a 401 names the Bearer scheme");
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
    // Nothing any refused request asked for happened. (The twin itself may exist: the link
    // merges what the hub holds for the device.)
    let (status, twin) = edge.get(&format!("/v1/twins/{DEVICE}")).await;
    if status == StatusCode::OK {
        assert!(twin["reported"]["state"]["temp"].is_null(), "{twin}");
        assert!(twin["desired"]["state"]["setpoint"].is_null(), "{twin}");
    } else {
        assert_eq!(status, StatusCode::NOT_FOUND, "{twin}");
    }
    let (status, commands) = edge.get(&format!("/v1/twins/{DEVICE}/commands")).await;
    assert!(
        status == StatusCode::NOT_FOUND || commands["items"] == json!([]),
        "no command was queued: {status} {commands}"
    );
    let (status, tokens) = edge.get("/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tokens["items"].as_array().map(Vec::len),
        Some(1),
        "only the agent's first token: {tokens}"
    );
    // Health checks stay open, and so do metrics from the agent's own machine.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = call(&no_token, &edge, &Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path} without a token");
    }
    // The agent's token reaches everything, and a device it does not hold is named as such.
    assert_eq!(edge.status().await["hub"]["links"], 1);
    edge.report(DEVICE, &json!({"temp": 21})).await;
    assert_eq!(edge.twin(DEVICE).await["reported"]["state"]["temp"], 21);
    let (status, problem) = edge.get("/v1/twins/not-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "device_not_on_this_edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_at_the_agent_reaches_what_its_role_allows_there_only() {
    let (hub, password, dir) = hub_for_an_agent().await;
    let edge = agent(
        &hub.mqtt.to_string(),
        &password,
        dir.path(),
        EdgeOptions::default(),
    );
    let (status, created) = edge
        .send(
            Method::POST,
            "/v1/tokens",
            &json!({"name": "dashboard", "roles": ["app-read"], "tenant": "*"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().expect("the secret").to_owned();
    let reader = edge_client(&secret);
    edge.report(DEVICE, &json!({"temp": 19})).await;
    let (status, twin, _) = call(
        &reader,
        &edge,
        &Method::GET,
        &format!("/v1/twins/{DEVICE}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{twin}");
    let (status, _, _) = call(&reader, &edge, &Method::GET, "/v1/edge/status", None).await;
    assert_eq!(status, StatusCode::OK, "app-read reads the agent's status");
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/v1/twins/{DEVICE}/desired"),
            Some(json!({"setpoint": 18})),
        ),
        (Method::GET, "/v1/tokens".to_owned(), None),
    ] {
        let (status, problem, _) = call(&reader, &edge, &method, &path, body.as_ref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "forbidden");
    }
    assert!(
        edge.twin(DEVICE).await["desired"]["state"]["setpoint"].is_null(),
        "the refused write changed nothing"
    );
    // The agent's tokens are not the hub's.
    let (status, _) = HttpClient::with_client(&hub, edge_client(&secret))
        .get("/v1/tenants/default/twins")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_writes_an_admin_token_only_its_user_reads_and_a_restart_keeps_it() {
    let (hub, password, dir) = hub_for_an_agent().await;
    let data_dir = dir.path().join("edge-a");
    let options = EdgeOptions {
        draw_own_token: true,
        ..EdgeOptions::default()
    };
    let mut edge = agent(&hub.mqtt.to_string(), &password, dir.path(), options);
    let file = data_dir.join("admin.token");
    let mode = std::fs::metadata(&file)
        .expect("admin.token exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the agent's user reads the token");
    let secret = edge.admin_token();
    assert!(
        secret.starts_with("dpt_") && secret != EDGE_TOKEN && secret != ADMIN_TOKEN,
        "a secret of its own"
    );
    // The harness's client sends the file's secret: it opens the API.
    edge.report(DEVICE, &json!({"temp": 20})).await;
    let (status, _, _) = call(
        &anonymous_http_client(),
        &edge,
        &Method::GET,
        "/v1/edge/status",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A restart finds the token in the store: no new one, the same file, the same secret.
    edge.restart();
    assert_eq!(edge.admin_token(), secret);
    let (status, tokens) = edge.get("/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tokens["items"].as_array().map(Vec::len),
        Some(1),
        "{tokens}"
    );
    assert_eq!(edge.twin(DEVICE).await["reported"]["state"]["temp"], 20);
}

/// `curl --unix-socket socket` with `method` on `path` (and a JSON `body`); status and body.
async fn curl(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "--unix-socket"])
        .arg(socket)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(body.to_string());
    }
    command.arg(format!("http://localhost{path}"));
    let output = run("curl", command).await;
    assert_success("curl --unix-socket", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, status) = stdout.rsplit_once('\n').expect("the status line");
    (
        status.trim().parse().expect("an HTTP status"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_the_local_api_to_whoever_its_file_mode_lets_in() {
    let (hub, password, dir) = hub_for_an_agent().await;
    let data_dir = dir.path().join("edge-a");
    let socket = dir.path().join("edge.sock");
    let options = EdgeOptions {
        unix_socket: Some(&socket),
        ..EdgeOptions::default()
    };
    let mut edge = agent(&hub.mqtt.to_string(), &password, dir.path(), options);
    assert_eq!(edge.base, format!("unix:{}", socket.display()));
    let metadata = std::fs::symlink_metadata(&socket).expect("the socket file");
    assert!(metadata.file_type().is_socket());
    assert_eq!(
        metadata.permissions().mode() & 0o777,
        0o600,
        "the documented default mode"
    );
    // No token: the file's mode decided who got this far.
    let (status, report) = curl(
        &socket,
        "PATCH",
        &format!("/v1/twins/{DEVICE}/reported"),
        Some(&json!({"state": {"temp": 22}})),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let (status, twin) = curl(&socket, "GET", &format!("/v1/twins/{DEVICE}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(twin["reported"]["state"]["temp"], 22);
    let (status, agent) = curl(&socket, "GET", "/v1/edge/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(agent["hub"]["links"], 1);
    assert!(
        !data_dir.join("admin.token").exists(),
        "no token is made for a socket that needs none"
    );
    // The report reaches the hub as from any agent.
    let hub_http = HttpClient::new(&hub);
    eventually("the report reaching the hub", CONVERGE_TIMEOUT, || async {
        hub_http
            .get(&format!("/v1/tenants/default/twins/{DEVICE}"))
            .await
            .1["reported"]["state"]["temp"]
            == 22
    })
    .await;
    // A socket file left by a killed agent is replaced at the next start...
    edge.kill();
    assert!(socket.exists(), "SIGKILL leaves the socket file behind");
    edge.restart();
    let (status, twin) = curl(&socket, "GET", &format!("/v1/twins/{DEVICE}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(twin["reported"]["state"]["temp"], 22);
    // ...and an agent that stops removes its own.
    assert!(edge.stop(), "a clean stop");
    assert!(!socket.exists(), "the socket file is removed at stop");
}

/// A hub with an MQTT TLS listener presenting certificate `name` of `ca`; its `mqtts://` URL.
fn tls_hub(ca: &TestCa, name: &str) -> (Server, String) {
    let hub = Server::start_with(&[
        "--mqtt-tls-addr",
        "127.0.0.1:0",
        "--mqtt-tls-cert",
        &ca.file(&format!("{name}.pem")),
        "--mqtt-tls-key",
        &ca.file(&format!("{name}.key")),
    ]);
    let tls = hub.listener("mqtts").expect("a TLS listener");
    let url = format!("mqtts://{tls}");
    (hub, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_links_to_a_hub_over_mqtts_with_its_ca_file_and_syncs_both_ways() {
    let ca = TestCa::new().await;
    ca.server("hub").await;
    let (hub, url) = tls_hub(&ca, "hub");
    let password = hub_with_device(&hub).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let ca_file = ca.file("ca.pem");
    let options = EdgeOptions {
        extra_args: &["--hub-ca-file", &ca_file],
        ..EdgeOptions::default()
    };
    let edge = agent(&url, &password, dir.path(), options);
    edge.wait_linked(true).await;
    let hub_http = HttpClient::new(&hub);
    edge.report(DEVICE, &json!({"temp": 23})).await;
    eventually(
        "the edge's report reaching the hub",
        CONVERGE_TIMEOUT,
        || async {
            let (status, twin) = hub_http
                .get(&format!("/v1/tenants/default/twins/{DEVICE}"))
                .await;
            status == StatusCode::OK && twin["reported"]["state"]["temp"] == 23
        },
    )
    .await;
    hub_http
        .patch_desired(DEVICE, &json!({"setpoint": 17}))
        .await;
    eventually(
        "the hub's desired state reaching the edge",
        CONVERGE_TIMEOUT,
        || async { edge.twin(DEVICE).await["desired"]["state"]["setpoint"] == 17 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_never_links_to_a_hub_whose_certificate_or_name_it_cannot_verify() {
    let ca = TestCa::new().await;
    ca.server("hub").await;
    ca.server_for("elsewhere", "DNS:hub.example").await;
    let other_ca = TestCa::new().await;
    let (hub, url) = tls_hub(&ca, "hub");
    let (misnamed_hub, misnamed_url) = tls_hub(&ca, "elsewhere");
    let password = hub_with_device(&hub).await;
    let misnamed_password = hub_with_device(&misnamed_hub).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let (ca_file, other_ca_file) = (ca.file("ca.pem"), other_ca.file("ca.pem"));
    for (id, hub_url, password, ca_args, expected) in [
        // A CA that did not sign the hub's certificate. Every test CA has the same name, so
        // the chain is found and its signature fails.
        (
            "edge-other-ca",
            &url,
            &password,
            vec!["--hub-ca-file", other_ca_file.as_str()],
            "BadSignature",
        ),
        // The system's CAs, which know nothing of the test CA.
        ("edge-system-cas", &url, &password, vec![], "UnknownIssuer"),
        // The right CA, but a certificate for another name than the one dialled.
        (
            "edge-misnamed",
            &misnamed_url,
            &misnamed_password,
            vec!["--hub-ca-file", ca_file.as_str()],
            "not valid for name",
        ),
    ] {
        let options = EdgeOptions {
            extra_args: &ca_args,
            capture_log: true,
            ..EdgeOptions::default()
        };
        let edge = EdgeAgent::start(
            hub_url,
            id,
            &[(DEVICE, password)],
            &dir.path().join(id),
            options,
        );
        edge.report(DEVICE, &json!({"temp": 24})).await;
        let line = edge.wait_for_log("the hub cannot be linked to", CONVERGE_TIMEOUT);
        assert!(line.contains("certificate is not accepted"), "{id}: {line}");
        assert!(line.contains(expected), "{id}: {line}");
        // The handshake failed, so no sync ever ran: the agent is partitioned and serves.
        let status = edge.status().await;
        assert_eq!(status["hub"]["links_up"], 0, "{id}: {status}");
        assert_eq!(status["hub"]["partitioned"], true, "{id}: {status}");
        assert_eq!(edge.twin(DEVICE).await["reported"]["state"]["temp"], 24);
    }
    for server in [&hub, &misnamed_hub] {
        HttpClient::new(server).assert_no_twin(DEVICE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_password_the_hub_refuses_says_so_and_stays_unlinked() {
    let hub = Server::start();
    hub_with_device(&hub).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = EdgeOptions {
        capture_log: true,
        ..EdgeOptions::default()
    };
    let mut edge = agent(
        &hub.mqtt.to_string(),
        "not-the-password-of-pump-1",
        dir.path(),
        options,
    );
    // Several refusals, each retried after a longer wait.
    eventually("three refused attempts", CONVERGE_TIMEOUT, || async {
        edge.status().await["links"][0]["refusals"]
            .as_u64()
            .is_some_and(|refusals| refusals >= 3)
    })
    .await;
    let status = edge.status().await;
    assert_eq!(status["hub"]["links_up"], 0, "{status}");
    let link = &status["links"][0];
    assert_eq!(link["device"], DEVICE, "{status}");
    assert_eq!(link["up"], false, "{status}");
    assert!(
        link["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("bad user name or password")),
        "{status}"
    );
    assert!(link["refused_since"].is_string(), "{status}");

    // One warning for all those refusals.
    let log = edge.stop_and_read_log();
    let warnings: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("the hub cannot be linked to"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    assert!(
        warnings[0].contains("refused the device's credentials: bad user name or password"),
        "{}",
        warnings[0]
    );
}

#[test]
fn the_agent_refuses_open_or_unusable_security_settings_with_one_line() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data_dir = dir.path().join("edge");
    let data = data_dir.to_str().expect("a UTF-8 path");
    let socket = dir.path().join("edge.sock");
    let socket = socket.to_str().expect("a UTF-8 path");
    let missing_ca = dir.path().join("missing-ca.pem");
    let missing_ca = missing_ca.to_str().expect("a UTF-8 path");
    let basic = ["--id", "edge-a", "--device", "pump-1", "--password", "pw"];
    let basic = basic.iter().copied().chain(["--data-dir", data]);
    for (args, message) in [
        (
            vec![
                "--hub",
                "127.0.0.1:1",
                "--http-addr",
                "0.0.0.0:0",
                "--http-allow-anonymous",
                "true",
            ],
            "lets anyone on the network",
        ),
        (
            vec!["--hub", "127.0.0.1:1", "--hub-ca-file", missing_ca],
            "--hub-ca-file is for a TLS link",
        ),
        (
            vec!["--hub", "mqtts://127.0.0.1:1", "--hub-ca-file", missing_ca],
            "--hub-ca-file: cannot read",
        ),
        (
            vec!["--hub", "ws://127.0.0.1:1"],
            "must be host:port, mqtt://host[:port] or mqtts://host[:port]",
        ),
        (
            vec![
                "--hub",
                "127.0.0.1:1",
                "--http-unix-socket",
                socket,
                "--http-unix-socket-mode",
                "0666",
            ],
            "must give the owner read and write and nobody else anything",
        ),
    ] {
        let command: Vec<String> = std::iter::once("edge")
            .chain(basic.clone())
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        let error = common::cli_failed(common::run_cli(&command, None), &args);
        assert!(error.contains(message), "{args:?}: {error}");
    }
    assert!(!Path::new(socket).exists(), "nothing was bound");
    assert!(
        !data_dir.join("admin.token").exists(),
        "a refused start writes no token"
    );
}
