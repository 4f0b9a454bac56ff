//! What a web page can make a browser send to a hub (or edge agent) it can reach: bodies that
//! need no CORS preflight (`text/plain`, forms, undeclared), a foreign `Host` after DNS
//! rebinding, and preflights from other origins. Each is refused and changes nothing.

mod common;

use common::Server;
use common::edge::EdgeAgent;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    CONTENT_TYPE, HOST, ORIGIN,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const COMMANDS: &str = "/v1/tenants/default/twins/pump-7/commands";
const CREDENTIALS: &str = "/v1/tenants/default/devices/pump-7/credentials";
const DESIRED: &str = "/v1/tenants/default/twins/pump-7/desired";
const APP_ORIGIN: &str = "https://app.example";

fn request(server: &Server, method: Method, path: &str) -> RequestBuilder {
    common::http_client().request(method, server.url(path))
}

/// The status, and the body as JSON (`null` when it is not JSON), of a request's answer.
async fn answer(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request reaches the server");
    let status = response.status();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a 415 problem document naming the accepted types.
fn assert_unsupported(status: StatusCode, problem: &Value, accepted: &[&str]) {
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");
    assert_eq!(problem["code"], "unsupported_media_type", "{problem}");
    assert_eq!(problem["status"], 415);
    assert_eq!(problem["accepted"], json!(accepted), "{problem}");
}

/// The `items` of a listing, which must answer 200.
async fn items(server: &Server, path: &str) -> Vec<Value> {
    let (status, body) = answer(request(server, Method::GET, path)).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body["items"].as_array().expect("items").clone()
}

/// `host:port` of the server, with another host name.
fn host_header(server: &Server, host: &str) -> String {
    let port = server.base.rsplit(':').next().expect("a port");
    format!("{host}:{port}")
}

#[tokio::test]
async fn bodies_browsers_send_without_a_preflight_queue_no_command() {
    let server = Server::start();
    let reset = json!({"type": "factory_reset"}).to_string();
    for content_type in [
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        // A `Blob` without a type: the browser sends no Content-Type at all.
        None,
    ] {
        let mut post = request(&server, Method::POST, COMMANDS).body(reset.clone());
        if let Some(content_type) = content_type {
            post = post.header(CONTENT_TYPE, content_type);
        }
        let (status, problem) = answer(post).await;
        assert_unsupported(status, &problem, &["application/json"]);
    }
    assert_eq!(items(&server, COMMANDS).await, Vec::<Value>::new());
    // The same body declared as JSON is queued.
    let post = request(&server, Method::POST, COMMANDS)
        .header(CONTENT_TYPE, "Application/JSON; charset=utf-8")
        .body(reset);
    let (status, command) = answer(post).await;
    assert_eq!(status, StatusCode::CREATED, "{command}");
    assert_eq!(items(&server, COMMANDS).await.len(), 1);
}

#[tokio::test]
async fn a_form_encoded_credential_post_creates_nothing() {
    let server = Server::start();
    for (content_type, body) in [
        (
            "application/x-www-form-urlencoded",
            "password=a+supplied+password+long+enough",
        ),
        ("text/plain", "{}"),
        ("application/merge-patch+json", "{}"),
    ] {
        let post = request(&server, Method::POST, CREDENTIALS)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let (status, problem) = answer(post).await;
        assert_unsupported(status, &problem, &["application/json"]);
        assert!(problem.get("password").is_none(), "{problem}");
    }
    assert_eq!(items(&server, CREDENTIALS).await, Vec::<Value>::new());
    // An empty body without a Content-Type still asks for a generated password.
    let (status, created) = answer(request(&server, Method::POST, CREDENTIALS)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["password"].is_string(), "{created}");
    assert_eq!(items(&server, CREDENTIALS).await.len(), 1);
}

#[tokio::test]
async fn merge_patch_routes_also_take_the_merge_patch_type() {
    let server = Server::start();
    for (path, body) in [
        (DESIRED, json!({"speed": 3})),
        (
            "/v1/tenants/default/twins/pump-7",
            json!({"tags": {"site": "berlin"}}),
        ),
    ] {
        let patch = request(&server, Method::PATCH, path)
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .body(body.to_string());
        let (status, twin) = answer(patch).await;
        assert_eq!(status, StatusCode::OK, "{path}: {twin}");
        let patch = request(&server, Method::PATCH, path)
            .header(CONTENT_TYPE, "text/plain")
            .body(body.to_string());
        let (status, problem) = answer(patch).await;
        assert_unsupported(
            status,
            &problem,
            &["application/json", "application/merge-patch+json"],
        );
    }
    let (_, twin) = answer(request(
        &server,
        Method::GET,
        "/v1/tenants/default/twins/pump-7",
    ))
    .await;
    assert_eq!(
        twin["version"], 2,
        "only the two declared patches applied: {twin}"
    );
    assert_eq!(twin["desired"]["state"], json!({"speed": 3}));
    // A report is a JSON document, not a merge patch.
    let report = request(
        &server,
        Method::PATCH,
        "/v1/tenants/default/twins/pump-7/reported",
    )
    .header(CONTENT_TYPE, "application/merge-patch+json")
    .body(json!({"state": {"speed": 3}}).to_string());
    let (status, problem) = answer(report).await;
    assert_unsupported(status, &problem, &["application/json"]);
}

#[tokio::test]
async fn a_foreign_host_gets_no_answer_and_no_secrets() {
    let server = Server::start();
    let evil = host_header(&server, "evil.example");
    let post = request(&server, Method::POST, CREDENTIALS)
        .header(HOST, &evil)
        .json(&json!({}));
    let response: Response = post.send().await.expect("request reaches the server");
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let text = response.text().await.expect("a body");
    assert!(!text.contains("password\""), "{text}");
    let problem: Value = serde_json::from_str(&text).expect("a problem document");
    assert_eq!(problem["code"], "host_not_allowed", "{problem}");
    assert_eq!(problem["status"], 421);
    assert_eq!(items(&server, CREDENTIALS).await, Vec::<Value>::new());
    // Reads and probes are refused the same way: a rebinding page reads nothing.
    for path in [
        "/v1/tenants/default/twins",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        let get = request(&server, Method::GET, path).header(HOST, &evil);
        let (status, problem) = answer(get).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}: {problem}");
        assert_eq!(problem["code"], "host_not_allowed", "{path}");
    }
}

#[tokio::test]
async fn loopback_hosts_are_answered_and_listed_ones_besides() {
    let server = Server::start_with(&["--http-allowed-hosts", "doppel.lan,Hub.Example"]);
    for host in [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "doppel.lan",
        "hub.example",
    ] {
        let get =
            request(&server, Method::GET, "/healthz").header(HOST, host_header(&server, host));
        let (status, body) = answer(get).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    let get =
        request(&server, Method::GET, "/healthz").header(HOST, host_header(&server, "other.lan"));
    assert_eq!(answer(get).await.0, StatusCode::MISDIRECTED_REQUEST);
}

/// Sends `request` as it is over a new connection and returns the answer's status code.
async fn raw_status(server: &Server, request: &str) -> u16 {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("no status: {answer:?}"));
    status.parse().expect("a status code")
}

#[tokio::test]
async fn http_1_1_needs_a_host_while_http_1_0_may_leave_it_out() {
    let server = Server::start();
    let without_host = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&server, without_host).await, 400);
    let two_hosts =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&server, two_hosts).await, 400);
    // Old health checkers speak HTTP/1.0 without Host; no browser does.
    assert_eq!(
        raw_status(&server, "GET /healthz HTTP/1.0\r\n\r\n").await,
        200
    );
    let absolute =
        "GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&server, absolute).await, 421);
}

/// A CORS preflight from `origin` for a JSON `PATCH`.
fn preflight(server: &Server, origin: &str) -> RequestBuilder {
    request(server, Method::OPTIONS, DESIRED)
        .header(ORIGIN, origin)
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "content-type")
}

/// Sends a preflight from `origin` and checks that it is not allowed to read the answer.
async fn refused_preflight(server: &Server, origin: &str) -> reqwest::Response {
    let response = preflight(server, origin).send().await.expect("preflight");
    assert!(
        response
            .headers()
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "{:?}",
        response.headers()
    );
    response
}

#[tokio::test]
async fn no_cors_headers_unless_origins_are_configured() {
    let server = Server::start();
    let get = request(&server, Method::GET, "/healthz").header(ORIGIN, APP_ORIGIN);
    let response = get.send().await.expect("request reaches the server");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    let response = refused_preflight(&server, APP_ORIGIN).await;
    assert!(
        response
            .headers()
            .get(ACCESS_CONTROL_ALLOW_METHODS)
            .is_none()
    );
}

#[tokio::test]
async fn preflights_are_answered_for_configured_origins_only() {
    let server = Server::start_with(&["--http-cors-origins", APP_ORIGIN]);
    let response = preflight(&server, APP_ORIGIN)
        .send()
        .await
        .expect("preflight");
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], APP_ORIGIN);
    let methods = headers[ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .expect("ASCII");
    assert!(methods.contains("PATCH"), "{methods}");
    assert!(headers.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    refused_preflight(&server, "https://evil.example").await;
    // The allowed origin's page may read an answer; another's may not.
    for (origin, allowed) in [(APP_ORIGIN, true), ("https://evil.example", false)] {
        let get = request(&server, Method::GET, "/healthz").header(ORIGIN, origin);
        let response = get.send().await.expect("request reaches the server");
        assert_eq!(
            response
                .headers()
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_some(),
            allowed,
            "{origin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_agents_local_api_answers_its_own_hosts_only() {
    let hub = Server::start();
    let hub_http = common::http::HttpClient::new(&hub);
    let (_, password) = hub_http.credential("devices/pump-7").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let edge = EdgeAgent::start_with_rules(
        hub.mqtt,
        "edge-7",
        &[("pump-7", &password)],
        &dir.path().join("edge-7"),
        None,
    );
    let port = edge.base.rsplit(':').next().expect("a port");
    let client = edge.http_client();
    for (host, expected) in [
        ("localhost", StatusCode::OK),
        ("127.0.0.1", StatusCode::OK),
        ("evil.example", StatusCode::MISDIRECTED_REQUEST),
    ] {
        for path in ["/v1/edge/status", "/healthz", "/v1/twins/pump-7"] {
            let get = client
                .get(edge.url(path))
                .header(HOST, format!("{host}:{port}"));
            let status = get
                .send()
                .await
                .expect("request reaches the agent")
                .status();
            if expected == StatusCode::OK {
                assert_ne!(status, StatusCode::MISDIRECTED_REQUEST, "{host} {path}");
            } else {
                assert_eq!(status, expected, "{host} {path}");
            }
        }
    }
    let report = client
        .patch(edge.url("/v1/twins/pump-7/reported"))
        .header(CONTENT_TYPE, "text/plain")
        .body(json!({"state": {"temp": 21}}).to_string());
    assert_eq!(
        report
            .send()
            .await
            .expect("request reaches the agent")
            .status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

/// Opens the change stream's WebSocket with `origin`, as a page of that origin would; the
/// handshake's status.
async fn websocket_status(server: &Server, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = server
        .url("/v1/tenants/default/events/ws")
        .replacen("http", "ws", 1);
    let mut handshake = url.into_client_request().expect("a WebSocket request");
    // With the token, so that only the origin decides.
    handshake.headers_mut().insert(
        "authorization",
        format!("Bearer {}", common::ADMIN_TOKEN)
            .parse()
            .expect("a header value"),
    );
    if let Some(origin) = origin {
        handshake
            .headers_mut()
            .insert(ORIGIN, origin.parse().expect("a header value"));
    }
    match tokio_tungstenite::connect_async(handshake).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("handshake: {err}"),
    }
}

#[tokio::test]
async fn foreign_pages_cannot_open_the_change_stream_websocket() {
    let server = Server::start_with(&["--http-cors-origins", APP_ORIGIN]);
    let own = server.base.clone();
    for (origin, expected) in [
        (None, 101),
        (Some(own.as_str()), 101),
        (Some(APP_ORIGIN), 101),
        (Some("https://evil.example"), 403),
        (Some("null"), 403),
    ] {
        assert_eq!(
            websocket_status(&server, origin).await,
            expected,
            "{origin:?}"
        );
    }
}
