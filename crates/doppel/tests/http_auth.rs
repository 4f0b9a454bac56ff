//! Bearer tokens on the HTTP API, against the real binary: every route refuses a request
//! without a token, with a wrong, revoked or expired one, with another tenant's and with one a
//! role too weak, and changes nothing then; the right token works; a revoked token ends its
//! streams and long polls; the first start writes the admin token for the CLI.

mod common;

use common::http::{HttpClient, Reply};
use common::tokens::{last_changed_by, revoke, token};
use common::{ADMIN_TOKEN, Server, anonymous_http_client, http_client};
use doppel_http::auth::{Access, Permission, ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A concrete path for a route pattern.
fn path_of(pattern: &str) -> String {
    pattern
        .replace("{tenant}", "default")
        .replace("{device}", "pump-7")
        .replace("{shadow}", "config")
        .replace("{app}", "dashboard")
        .replace("{credential_id}", "0123456789abcdef")
        .replace("{id}", "01890a5d-ac96-774b-bcce-b302099a8057")
}

/// Sends `method path` with `token` (none when `None`), with a JSON body for writes.
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value, bool) {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request =
        HttpClient::with_client(server, anonymous_http_client()).request(method.clone(), path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if matches!(method, Method::POST | Method::PATCH | Method::PUT) {
        request = request.json(&json!({}));
    }
    // A long poll that is allowed would wait: ask it not to.
    if path.ends_with("/commands/next") {
        request = request.query(&[("wait", "0")]);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("an answer in time")
        .expect("the request reaches the server");
    let status = response.status();
    let challenge = response.headers().contains_key("www-authenticate");
    // A stream that was let in would never end: read the body of refusals only.
    let body = if status.is_success() && path.ends_with("/events") {
        Value::Null
    } else {
        Reply::read(response).await.json_or_null()
    };
    (status, body, challenge)
}

/// The role one step weaker than what `permission` needs, if any.
fn weaker(permission: Permission) -> Option<&'static str> {
    match permission {
        Permission::Read => None,
        Permission::Write => Some("app-read"),
        Permission::Operate => Some("app-write"),
        Permission::Admin => Some("operator"),
    }
}

fn role_of(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "app-read",
        Permission::Write => "app-write",
        Permission::Operate => "operator",
        Permission::Admin => "admin",
    }
}

#[tokio::test]
async fn every_route_refuses_what_may_not_call_it_and_changes_nothing() {
    // Two invalid tokens per route: far more than an address may send before it is held back.
    let server = Server::start_with(&["--http-max-auth-failures-per-address", "1000"]);
    let (revoked_id, revoked) = token(&server, "gone", "admin", "*").await;
    revoke(&server, &revoked_id).await;
    let (_, foreign) = token(&server, "other-admin", "admin", "other").await;
    let mut weak = std::collections::HashMap::new();
    for role in ["app-read", "app-write", "operator", "admin"] {
        weak.insert(role, token(&server, role, role, "default").await.1);
    }
    let wrong = "dpt_wrongwrongwrongwrongwrongwrongwrongwrongwrong";
    let mut checked = 0;
    for (method, pattern, access) in ROUTES {
        let Access::Needs(permission) = access else {
            continue;
        };
        let path = path_of(pattern);
        for (what, token) in [
            ("no token", None),
            ("a wrong token", Some(wrong)),
            ("a revoked token", Some(revoked.as_str())),
        ] {
            let (status, body, challenge) = call(&server, method, &path, token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {what}: {body}"
            );
            assert_eq!(body["code"], "unauthorized", "{method} {path} with {what}");
            assert!(challenge, "{method} {path}: a 401 names the Bearer scheme");
        }
        if pattern.starts_with("/v1/tenants/") {
            let (status, body, _) = call(&server, method, &path, Some(&foreign)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with another tenant's token"
            );
            assert_eq!(body["code"], "tenant_not_allowed");
            let escaped = path.replacen("/default/", "/%64efault/", 1);
            let (status, body, _) = call(&server, method, &escaped, Some(&foreign)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {escaped}: an escaped tenant is the same tenant"
            );
            assert_eq!(body["code"], "tenant_not_allowed");
        }
        if let Some(role) = weaker(*permission) {
            let (status, body, _) = call(&server, method, &path, Some(&weak[role])).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with {role}");
            assert_eq!(body["code"], "forbidden");
            assert_eq!(body["required_role"], role_of(*permission));
        }
        checked += 1;
    }
    assert!(
        checked > 30,
        "the route table was walked ({checked} routes)"
    );
    // Nothing any refused request asked for happened.
    let admin = http_client();
    let twin = admin
        .get(server.url("/v1/tenants/default/twins/pump-7"))
        .send()
        .await
        .expect("GET twin");
    assert_eq!(twin.status(), StatusCode::NOT_FOUND);
    let tokens: Value = admin
        .get(server.url("/v1/tokens"))
        .send()
        .await
        .expect("GET tokens")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        tokens["items"].as_array().expect("items").len(),
        6,
        "the admin token, the foreign admin and four roles (not the revoked one): {tokens}"
    );
    // The right token gets past the door on every route.
    for (method, pattern, access) in ROUTES {
        let Access::Needs(permission) = access else {
            continue;
        };
        let path = path_of(pattern);
        let (status, body, _) =
            call(&server, method, &path, Some(&weak[role_of(*permission)])).await;
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{method} {path} with {}: {status} {body}",
            role_of(*permission)
        );
    }
}

#[tokio::test]
async fn health_is_open_and_metrics_open_to_loopback() {
    let server = Server::start();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = anonymous_http_client()
            .get(server.url(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path} without a token");
    }
}

#[tokio::test]
async fn writes_record_the_token_that_made_them() {
    let server = Server::start();
    let (_, ops) = token(&server, "ops-console", "app-write", "default").await;
    let response = anonymous_http_client()
        .patch(server.url("/v1/tenants/default/twins/pump-7/desired"))
        .bearer_auth(&ops)
        .json(&json!({"speed": 3}))
        .send()
        .await
        .expect("PATCH desired");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        last_changed_by(&server, "pump-7").await,
        "token:ops-console"
    );
}

#[tokio::test]
async fn a_revoked_token_ends_its_stream_and_its_long_poll_at_once() {
    let server = Server::start();
    let (reader_id, reader) = token(&server, "watcher", "app-read", "default").await;
    let (poller_id, poller) = token(&server, "gateway", "operator", "default").await;
    let mut stream = anonymous_http_client()
        .get(server.url("/v1/tenants/default/events"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("open the stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let poll = common::spawn_long_poll(&server, poller);
    revoke(&server, &reader_id).await;
    revoke(&server, &poller_id).await;
    let mut seen = String::new();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.chunk().await.expect("the stream") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("token_revoked") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the stream ended within its wait");
    assert!(ended, "the stream said why it ended: {seen}");
    common::assert_long_poll_refused(poll, WAIT).await;
}

#[tokio::test]
async fn tokens_are_shown_once_scoped_to_their_tenant_and_expire() {
    let server = Server::start();
    let (_, tenant_admin) = token(&server, "acme-admin", "admin", "acme").await;
    let client = anonymous_http_client();
    // A tenant's admin makes its tenant's tokens only.
    let all = client
        .post(server.url("/v1/tokens"))
        .bearer_auth(&tenant_admin)
        .json(&json!({"name": "everything", "roles": ["admin"], "tenant": "*"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(all.status(), StatusCode::FORBIDDEN);
    let short = client
        .post(server.url("/v1/tokens"))
        .bearer_auth(&tenant_admin)
        .json(&json!({"name": "brief", "roles": ["app-read"], "tenant": "acme", "expires_in_seconds": 1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(short.status(), StatusCode::CREATED);
    let short: Value = short.json().await.expect("JSON");
    let secret = short["token"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    // Listed without secrets, and only the tenant's own.
    let listed: Value = client
        .get(server.url("/v1/tokens"))
        .bearer_auth(&tenant_admin)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed}");
    assert!(
        items
            .iter()
            .all(|item| item["tenant"] == "acme" && item.get("token").is_none())
    );
    assert!(!listed.to_string().contains(&secret));
    // It works, then it expires.
    let twins = server.url("/v1/tenants/acme/twins");
    let first = client
        .get(&twins)
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(first.status(), StatusCode::OK);
    let escaped = client
        .get(server.url("/v1/tenants/%61cme/twins"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        escaped.status(),
        StatusCode::OK,
        "an escaped name is the same tenant"
    );
    common::eventually("the token to expire", WAIT, || async {
        client
            .get(&twins)
            .bearer_auth(&secret)
            .send()
            .await
            .expect("GET")
            .status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// Starts `doppel serve` in `folder` with its default data folder and no bootstrap secret, as a
/// first-time user does; returns the child and its HTTP base URL.
fn serve_in(folder: &std::path::Path) -> (std::process::Child, String) {
    let mut child = common::doppel_command()
        .env_remove("DOPPEL_HTTP_BOOTSTRAP_TOKEN")
        .current_dir(folder)
        .args(common::SERVE_ON_FREE_PORTS)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn doppel serve");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut base = None;
    for line in stdout.lines() {
        let line = line.expect("a line");
        if let Some(addr) = line.strip_prefix("doppel listening on ") {
            base = Some(addr.trim().to_owned());
        }
        if line.trim() == "doppel ready" {
            break;
        }
    }
    (child, base.expect("the listening line"))
}

#[tokio::test]
async fn the_first_start_writes_an_admin_token_the_cli_beside_it_uses() {
    use std::os::unix::fs::PermissionsExt;
    let folder = tempfile::tempdir().expect("a folder");
    let (mut child, base) = serve_in(folder.path());
    let file = folder.path().join("doppel-data/admin.token");
    let mode = std::fs::metadata(&file)
        .expect("admin.token exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reads the admin token");
    let secret = std::fs::read_to_string(&file)
        .expect("read")
        .trim()
        .to_owned();
    assert!(secret.starts_with("dpt_") && secret != ADMIN_TOKEN);
    // The CLI in the same folder finds it without being told.
    let listed = common::doppel_command()
        .env_remove("DOPPEL_TOKEN")
        .current_dir(folder.path())
        .args(["twin", "list", "--server", &base])
        .output()
        .expect("run the CLI");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // Elsewhere, without a token, it says so in one line.
    let elsewhere = tempfile::tempdir().expect("a folder");
    let refused = common::doppel_command()
        .env_remove("DOPPEL_TOKEN")
        .current_dir(elsewhere.path())
        .args(["twin", "list", "--server", &base])
        .output()
        .expect("run the CLI");
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.starts_with("doppel: unauthorized:"), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    // A profile names server and token.
    let config = elsewhere.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "profile = \"local\"\n[profiles.local]\nserver = \"{base}\"\ntoken = \"{secret}\"\n"
        ),
    )
    .expect("write the profile");
    let profiled = common::doppel_command()
        .env_remove("DOPPEL_TOKEN")
        .env("DOPPEL_CLI_CONFIG", &config)
        .current_dir(elsewhere.path())
        .args(["twin", "list"])
        .output()
        .expect("run the CLI");
    assert!(
        profiled.status.success(),
        "{}",
        String::from_utf8_lossy(&profiled.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn anonymous_http_is_loud_and_refused_on_the_network() {
    let refused = common::doppel_command()
        .args([
            "serve",
            "--http-addr",
            "0.0.0.0:0",
            "--http-allow-anonymous",
            "true",
        ])
        .output()
        .expect("run doppel serve");
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("http.allow_anonymous_on_network"),
        "{message}"
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
}

#[tokio::test]
async fn anonymous_http_serves_without_tokens_when_asked() {
    let (server, stderr) = Server::start_capturing_stderr(&["--http-allow-anonymous", "true"]);
    let response = anonymous_http_client()
        .get(server.url("/v1/tenants/default/twins"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let mut warned = false;
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(1)) {
        if line.contains("WARNING: http.allow_anonymous is on") {
            warned = true;
            break;
        }
    }
    assert!(warned, "the start warns loudly");
}

#[tokio::test]
async fn an_address_that_keeps_sending_invalid_tokens_is_held_back() {
    let (server, stderr) =
        Server::start_capturing_stderr(&["--http-max-auth-failures-per-address", "3"]);
    let wrong = "dpt_NotTheTokenNotTheTokenNotTheTokenNotTheToken0";
    let client = anonymous_http_client();
    let send = |secret: &str| {
        client
            .patch(server.url("/v1/tenants/default/twins/held-back/desired"))
            .bearer_auth(secret)
            .json(&json!({"speed": 1}))
            .send()
    };
    for attempt in 0..3 {
        let response = send(wrong).await.expect("PATCH");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    // Held back now: a guess and the right token alike, before any token is looked at.
    for secret in [wrong, ADMIN_TOKEN] {
        let response = send(secret).await.expect("PATCH");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .expect("text")
            .parse()
            .expect("seconds");
        assert!(
            (1..=900).contains(&retry_after),
            "Retry-After {retry_after}"
        );
        let body: Value = response.json().await.expect("a problem document");
        assert_eq!(body["code"], "too_many_auth_failures");
    }
    let (status, _) = common::http::HttpClient::new(&server).get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "health checks need no token");
    // Once the backoff is over the right token works, and nothing was written meanwhile.
    let twins = server.url("/v1/tenants/default/twins/held-back");
    common::eventually("the backoff to end", WAIT, || async {
        http_client()
            .get(&twins)
            .send()
            .await
            .expect("GET")
            .status()
            != StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    let after = http_client().get(&twins).send().await.expect("GET");
    assert_eq!(
        after.status(),
        StatusCode::NOT_FOUND,
        "no refused write made the twin"
    );
    // The hold is logged, without the secret.
    let mut logged = Vec::new();
    while let Ok(line) = stderr.try_recv() {
        logged.push(line);
    }
    let logged = logged.join("\n");
    assert!(logged.contains("holding back an address"), "{logged}");
    assert!(!logged.contains(wrong), "the secret must not be logged");
}

#[tokio::test]
async fn a_token_holds_at_most_its_limit_of_streams_and_long_polls() {
    let server = Server::start_with(&["--http-max-streams-per-token", "2"]);
    let (_, busy) = token(&server, "busy", "operator", "default").await;
    let (_, other) = token(&server, "other", "app-read", "default").await;
    let client = anonymous_http_client();
    let events = server.url("/v1/tenants/default/events");
    let open = |secret: &str| client.get(&events).bearer_auth(secret).send();
    let first = open(&busy).await.expect("first stream");
    let second = open(&busy).await.expect("second stream");
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open(&busy).await.expect("third stream");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = third.json().await.expect("a problem document");
    assert_eq!(
        (body["code"].as_str(), body["limit"].as_u64()),
        (Some("too_many_streams"), Some(2))
    );
    // A waiting long poll counts too; one that does not wait holds nothing open.
    let commands = server.url("/v1/tenants/default/twins/pump-1/commands/next");
    let poll = |wait: u32| {
        client
            .get(format!("{commands}?wait={wait}"))
            .bearer_auth(&busy)
            .send()
    };
    assert_eq!(
        poll(5).await.expect("poll").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        poll(0).await.expect("poll").status(),
        StatusCode::NO_CONTENT
    );
    // Another token has its own count.
    assert_eq!(open(&other).await.expect("stream").status(), StatusCode::OK);
    // Closing a stream gives its place back.
    drop(first);
    common::eventually("the closed stream's place to come back", WAIT, || async {
        open(&busy).await.expect("stream").status() == StatusCode::OK
    })
    .await;
    drop(second);
}
