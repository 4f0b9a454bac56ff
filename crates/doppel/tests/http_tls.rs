//! HTTPS end to end: the real binary with `http.tls.*`, checked with curl, the `doppel` CLI and
//! a Rust client that reads each connection's peer certificate. Certificates are made per test
//! with the `openssl` command (see `common::certs`).

mod common;

use common::certs::TestCa;
use common::http::HttpClient;
use common::process::{assert_success, describe, run};
use common::sse::SseClient;
use common::{
    Server, cli_failed, cli_succeeded, closed_by_server, doppel_command, eventually, https_client,
};
use serde_json::json;
use std::time::Duration;
use tokio::process::Command;

/// Longest wait for the server to act on a SIGHUP.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// `curl -sS -f https://.../healthz` with extra arguments (`--cacert`, `--cert`, ...).
async fn curl_healthz(server: &Server, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-f", "--max-time", "10"])
        .args(args)
        .arg(server.url("/healthz"));
    run("curl", command).await
}

/// `doppel twin list --server BASE args...` against `server`.
fn twin_list(server: &Server, args: &[&str]) -> std::process::Output {
    let mut command: Vec<String> = ["twin", "list", "--server", &server.base]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    command.extend(args.iter().map(|arg| (*arg).to_owned()));
    common::run_cli(&command, None)
}

/// A server whose HTTPS certificate is `name` of `certs`, with extra arguments.
fn start_https(certs: &TestCa, name: &str, extra: &[&str]) -> Server {
    let (cert, key) = (
        certs.file(&format!("{name}.pem")),
        certs.file(&format!("{name}.key")),
    );
    let mut args = vec!["--http-tls-cert", &cert, "--http-tls-key", &key];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// The DER certificate the server presented on the connection that answered `response`.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .expect("a TLS connection with a peer certificate")
        .to_vec()
}

/// `GET /healthz` through `client`, which must answer 200; the peer certificate it came over.
async fn healthz_certificate(client: &reqwest::Client, server: &Server) -> Vec<u8> {
    let response = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz over HTTPS");
    assert_eq!(response.status(), 200);
    peer_certificate(&response)
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_trust_the_hub_through_its_ca_and_only_so() {
    let certs = TestCa::new().await;
    certs.server("hub").await;
    let server = start_https(&certs, "hub", &[]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let ca = certs.file("ca.pem");

    let trusted = curl_healthz(&server, &["--cacert", &ca]).await;
    assert_success("curl --cacert", &trusted);
    // Exit code 60: the peer's certificate cannot be verified (curl's system CAs do not
    // know the test CA): the connection was reached and refused for trust, nothing else.
    let untrusted = curl_healthz(&server, &[]).await;
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "{}",
        describe(&untrusted)
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain_url = server.base.replacen("https://", "http://", 1);
    let mut plain = Command::new("curl");
    plain
        .args(["-sS", "-f", "--max-time", "10"])
        .arg(format!("{plain_url}/healthz"));
    assert!(!run("curl http://", plain).await.status.success());

    // The CLI: verified against --ca-file, and refused in one line without it.
    let listed = twin_list(&server, &["--ca-file", &ca, "--json"]);
    let listed = cli_succeeded(listed, &["twin", "list", "--ca-file"]);
    assert!(listed.contains("\"items\""), "{listed}");
    let refused = cli_failed(twin_list(&server, &[]), &["twin", "list"]);
    assert!(
        refused.starts_with(&format!(
            "cannot reach {}: the hub's certificate is not trusted",
            server.base
        )) && refused.ends_with("pass --ca-file with the CA that signed it"),
        "{refused}"
    );
    // DOPPEL_CA_FILE does what --ca-file does; a file without certificates is named.
    let mut by_env = common::doppel_command();
    let by_env = by_env
        .args(["twin", "list", "--server", &server.base])
        .env("DOPPEL_CA_FILE", &ca)
        .output()
        .expect("run doppel twin list");
    cli_succeeded(by_env, &["twin", "list", "DOPPEL_CA_FILE"]);
    let not_a_ca = certs.file("hub.key");
    let bad = cli_failed(
        twin_list(&server, &["--ca-file", &not_a_ca]),
        &["--ca-file"],
    );
    assert_eq!(
        bad,
        format!("--ca-file: {not_a_ca} holds no PEM certificate")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_a_signed_certificate_are_served() {
    let certs = TestCa::new().await;
    certs.server("hub").await;
    certs.client("operator").await;
    let ca = certs.file("ca.pem");
    let server = start_https(&certs, "hub", &["--http-tls-client-ca", &ca]);
    let (cert, key) = (certs.file("operator.pem"), certs.file("operator.key"));

    let anonymous = curl_healthz(&server, &["--cacert", &ca]).await;
    assert!(!anonymous.status.success(), "{}", describe(&anonymous));
    let operator = curl_healthz(&server, &["--cacert", &ca, "--cert", &cert, "--key", &key]).await;
    assert_success("curl with a client certificate", &operator);

    // A certificate from another CA is no better than none.
    let stranger = TestCa::new().await;
    stranger.client("stranger").await;
    let (other_cert, other_key) = (stranger.file("stranger.pem"), stranger.file("stranger.key"));
    let other = curl_healthz(
        &server,
        &["--cacert", &ca, "--cert", &other_cert, "--key", &other_key],
    )
    .await;
    assert!(!other.status.success(), "{}", describe(&other));

    let identity = [
        "--ca-file",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ];
    cli_succeeded(twin_list(&server, &identity), &identity);
    let refused = cli_failed(twin_list(&server, &["--ca-file", &ca]), &["twin", "list"]);
    // With TLS 1.3 the refusal is an alert after the client's last handshake message, and the
    // client may already be sending its request: it reads the alert, or, when the hub's close
    // overtakes it, a reset.
    let reasons = [
        "the hub asks for a client certificate; pass --client-cert and --client-key",
        "connection reset",
    ];
    assert!(
        reasons
            .iter()
            .any(|reason| refused == format!("cannot reach {}: {reason}", server.base)),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_gives_new_connections_the_new_certificate_and_keeps_open_ones() {
    let certs = TestCa::new().await;
    certs.server("hub-a").await;
    certs.server("hub-b").await;
    let (old, new) = (certs.der("hub-a").await, certs.der("hub-b").await);
    assert_ne!(old, new);
    // The server reads `live.pem` and `live.key`, which the test replaces.
    let live = |name: &str| certs.path(&format!("live.{name}"));
    std::fs::copy(certs.path("hub-a.pem"), live("pem")).unwrap();
    std::fs::copy(certs.path("hub-a.key"), live("key")).unwrap();
    let (cert, key) = (certs.file("live.pem"), certs.file("live.key"));
    let (server, stderr) =
        Server::start_capturing_stderr(&["--http-tls-cert", &cert, "--http-tls-key", &key]);
    let ca = certs.path("ca.pem");
    // Opened before any reload, and kept open through both.
    let streaming = https_client(&ca);
    let mut stream = SseClient::open_with(&streaming, &server, "?types=twin.desired", None).await;

    // A certificate that does not fit the key: the reload fails and the old one stays.
    std::fs::copy(certs.path("hub-b.pem"), live("pem")).unwrap();
    server.hangup();
    let stderr = tokio::task::spawn_blocking(move || {
        let line = common::log_line(
            &stderr,
            "cannot reload the HTTP TLS certificate",
            RELOAD_WAIT,
        );
        assert!(line.contains("does not fit"), "{line}");
        stderr
    })
    .await
    .unwrap();
    assert_eq!(healthz_certificate(&https_client(&ca), &server).await, old);

    // A kept-alive connection, opened before the good reload.
    let kept = https_client(&ca);
    assert_eq!(healthz_certificate(&kept, &server).await, old);

    std::fs::copy(certs.path("hub-b.key"), live("key")).unwrap();
    server.hangup();
    eventually(
        "a new connection sees the new certificate",
        RELOAD_WAIT,
        || async { healthz_certificate(&https_client(&ca), &server).await == new },
    )
    .await;
    // The kept-alive connection still answers, with the certificate it began with: it is the
    // same connection, not a new one.
    assert_eq!(healthz_certificate(&kept, &server).await, old);
    // And the stream opened before both reloads still delivers.
    HttpClient::with_client(&server, https_client(&ca))
        .patch_desired("pump-1", &json!({"speed": 2}))
        .await;
    let event = stream.expect().await;
    assert_eq!(event.data["device_id"], "pump-1");
    drop(stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_handshake_is_bounded_by_the_header_timeout_and_counted_in_the_connection_cap() {
    let certs = TestCa::new().await;
    certs.server("hub").await;
    let server = start_https(
        &certs,
        "hub",
        &["--http-header-timeout", "1s", "--http-max-connections", "1"],
    );
    let ca = certs.file("ca.pem");
    // A socket that never starts its handshake holds the only connection...
    let mut silent = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("connect");
    // ...so a real client waits in the backlog (curl gives up after half a second, before the
    // header timeout of 1 s)...
    let waiting = curl_healthz(&server, &["--cacert", &ca, "--max-time", "0.5"]).await;
    assert!(!waiting.status.success(), "{}", describe(&waiting));
    // ...until the header timeout closes the silent socket, which frees the place.
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(8)).await,
        "a socket that never started its TLS handshake was still open"
    );
    let served = curl_healthz(&server, &["--cacert", &ca]).await;
    assert_success("curl once the silent socket is gone", &served);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificate_files_stop_the_start_with_one_line_naming_them() {
    let certs = TestCa::new().await;
    certs.server("hub").await;
    certs.server("other").await;
    let data = tempfile::tempdir().unwrap();
    let start = |cert: String, key: String| {
        let mut command = Command::from(doppel_command());
        command
            .args(common::SERVE_ON_FREE_PORTS)
            .arg("--data-dir")
            .arg(data.path())
            .args(["--http-tls-cert", &cert, "--http-tls-key", &key]);
        run("doppel serve", command)
    };
    let missing = certs.file("missing.pem");
    let output = start(missing.clone(), certs.file("hub.key")).await;
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("doppel: http.tls: cannot read {missing}: No such file or directory\n")
    );
    let output = start(certs.file("hub.pem"), certs.file("other.key")).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "doppel: http.tls: the key in {} does not fit the certificate in {}",
            certs.file("other.key"),
            certs.file("hub.pem")
        )),
        "{stderr}"
    );
}
