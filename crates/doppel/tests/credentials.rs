//! Credential routes end to end: the real binary on port 0, real HTTP, and the data folder read
//! back after the server has stopped.

mod common;

use common::Server;
use common::http::{HttpClient, Reply};
use doppel_auth::{Principal, Registry};
use doppel_store::{CredentialStore, FjallStore, HistoryBuckets};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

const DEVICE: &str = "/v1/tenants/default/devices/pump-7/credentials";
const APP: &str = "/v1/tenants/default/apps/dashboard/credentials";
const SUPPLIED: &str = "a supplied password, long enough";

/// `method path` with `body` as it is (JSON or not) when given.
async fn call(server: &Server, method: Method, path: &str, body: Option<&str>) -> Reply {
    HttpClient::new(server)
        .call(method, path, &[], body.map(str::to_owned))
        .await
}

async fn create(server: &Server, path: &str, body: Option<&str>) -> Value {
    let reply = call(server, Method::POST, path, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body
}

async fn list(server: &Server, path: &str) -> Vec<Value> {
    let reply = call(server, Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["items"].as_array().expect("items").clone()
}

/// Checks a problem document and returns its body.
fn problem(reply: &Reply, status: StatusCode, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.headers["content-type"], "application/problem+json",
        "{}",
        reply.text
    );
    assert_eq!(reply.body["code"], code, "{}", reply.text);
    reply.body.clone()
}

#[tokio::test]
async fn created_credentials_are_listed_without_their_secrets() {
    let server = Server::start();
    let generated = call(&server, Method::POST, DEVICE, None).await;
    assert_eq!(generated.status, StatusCode::CREATED, "{}", generated.text);
    assert_eq!(generated.headers["cache-control"], "no-store");
    let generated = generated.body;
    assert_eq!(generated["username"], "default/devices/pump-7");
    let password = generated["password"].as_str().expect("a password");
    assert_eq!(
        password.len(),
        43,
        "32 random bytes in base64url: {password}"
    );
    let id = generated["credential_id"].as_str().expect("an id");
    assert_eq!(id.len(), 16, "{id}");
    let created_at = generated["created_at"].as_str().expect("an instant");
    assert!(
        created_at.starts_with("20") && created_at.ends_with('Z'),
        "RFC 3339 in UTC: {created_at}"
    );

    let supplied = create(
        &server,
        DEVICE,
        Some(&json!({ "password": SUPPLIED }).to_string()),
    )
    .await;
    assert_eq!(supplied["password"], SUPPLIED);
    assert_ne!(supplied["credential_id"], generated["credential_id"]);

    let reply = call(&server, Method::GET, DEVICE, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text.contains(password), "{}", reply.text);
    assert!(!reply.text.contains(SUPPLIED), "{}", reply.text);
    assert!(!reply.text.contains("argon2"), "{}", reply.text);
    let items = reply.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", reply.text);
    for item in items {
        let mut keys: Vec<&str> = item
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["created_at", "credential_id", "username"]);
    }
    let ids: Vec<&Value> = items.iter().map(|item| &item["credential_id"]).collect();
    assert!(ids.contains(&&generated["credential_id"]));
    assert!(ids.contains(&&supplied["credential_id"]));
}

#[tokio::test]
async fn applications_have_credentials_of_their_own() {
    let server = Server::start();
    let created = create(&server, APP, Some("")).await;
    assert_eq!(created["username"], "default/apps/dashboard");
    assert_eq!(list(&server, APP).await.len(), 1);
    assert!(
        list(&server, "/v1/tenants/default/devices/dashboard/credentials")
            .await
            .is_empty(),
        "a device of the same name is another principal"
    );
    assert!(
        list(&server, "/v1/tenants/other/apps/dashboard/credentials")
            .await
            .is_empty(),
        "tenants do not share"
    );
}

#[tokio::test]
async fn a_removed_credential_is_gone_and_removing_it_again_is_not_found() {
    let server = Server::start();
    let kept = create(&server, DEVICE, None).await;
    let removed = create(&server, DEVICE, None).await;
    let path = format!(
        "{DEVICE}/{}",
        removed["credential_id"].as_str().expect("id")
    );
    let reply = call(&server, Method::DELETE, &path, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert!(reply.text.is_empty());
    let items = list(&server, DEVICE).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["credential_id"], kept["credential_id"]);

    let again = call(&server, Method::DELETE, &path, None).await;
    problem(&again, StatusCode::NOT_FOUND, "credential_not_found");
    let unknown = call(&server, Method::DELETE, &format!("{APP}/0123"), None).await;
    problem(&unknown, StatusCode::NOT_FOUND, "credential_not_found");
}

#[tokio::test]
async fn bad_requests_are_problems_with_stable_codes() {
    let server = Server::start();
    let bad = |path: &'static str, body: Option<&'static str>| {
        let server = &server;
        async move { call(server, Method::POST, path, body).await }
    };

    let short = bad(DEVICE, Some(r#"{"password": "too short"}"#)).await;
    let body = problem(&short, StatusCode::BAD_REQUEST, "invalid_password");
    assert_eq!(
        (body["min_bytes"].as_u64(), body["max_bytes"].as_u64()),
        (Some(16), Some(256))
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("9 bytes"),
        "{body}"
    );
    let long = json!({ "password": "x".repeat(257) }).to_string();
    let reply = call(&server, Method::POST, DEVICE, Some(&long)).await;
    problem(&reply, StatusCode::BAD_REQUEST, "invalid_password");

    problem(
        &bad(DEVICE, Some(r#"{"password": 7}"#)).await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    problem(
        &bad(DEVICE, Some(r#"{"secret": "a supplied password"}"#)).await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    );
    problem(
        &bad(DEVICE, Some("{not json")).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    for path in [
        "/v1/tenants/bad%20tenant/devices/pump-7/credentials",
        "/v1/tenants/default/devices/pump%207/credentials",
        "/v1/tenants/default/apps/dash%2Fboard/credentials",
    ] {
        problem(
            &call(&server, Method::POST, path, None).await,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        );
        problem(
            &call(&server, Method::GET, path, None).await,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        );
    }
    assert!(
        list(&server, DEVICE).await.is_empty(),
        "no failed request created anything"
    );

    for _ in 0..doppel_auth::MAX_CREDENTIALS_PER_PRINCIPAL {
        create(&server, DEVICE, None).await;
    }
    let full = bad(DEVICE, None).await;
    let body = problem(&full, StatusCode::CONFLICT, "too_many_credentials");
    assert_eq!(
        body["limit"].as_u64(),
        Some(doppel_auth::MAX_CREDENTIALS_PER_PRINCIPAL as u64)
    );
}

/// Every byte stored under `dir`, to look for what must not be there.
fn stored_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read the data folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                bytes.extend(std::fs::read(&path).expect("read a stored file"));
            }
        }
    }
    bytes
}

#[tokio::test]
async fn credentials_survive_a_restart_and_only_their_hashes_are_stored() {
    let dir = tempfile::tempdir().expect("a data folder");
    let (kept, removed) = {
        let mut server = Server::start_in(dir.path(), &[]);
        let kept = create(
            &server,
            DEVICE,
            Some(&json!({ "password": SUPPLIED }).to_string()),
        )
        .await;
        let removed = create(&server, APP, None).await;
        let path = format!("{APP}/{}", removed["credential_id"].as_str().expect("id"));
        assert_eq!(
            call(&server, Method::DELETE, &path, None).await.status,
            StatusCode::NO_CONTENT
        );
        assert!(server.stop(), "the server stops cleanly");
        (kept, removed)
    };
    {
        let mut server = Server::start_in(dir.path(), &[]);
        let items = list(&server, DEVICE).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["credential_id"], kept["credential_id"]);
        assert_eq!(items[0]["created_at"], kept["created_at"]);
        assert!(
            list(&server, APP).await.is_empty(),
            "the removal survived too"
        );
        assert!(server.stop());
    }

    let stored = stored_bytes(dir.path());
    assert!(
        !stored
            .windows(SUPPLIED.len())
            .any(|window| window == SUPPLIED.as_bytes()),
        "the password is not stored in clear"
    );
    // What the server stored verifies the password it handed out, and nothing else.
    let store: Arc<dyn CredentialStore> = Arc::new(
        FjallStore::open(dir.path(), HistoryBuckets::new(86_400_000)).expect("open the store"),
    );
    let registry = Registry::load(store, doppel_auth::default_concurrent_hashes())
        .expect("load the credentials");
    let device = Principal::from_username("default/devices/pump-7");
    assert_eq!(
        registry
            .verify("default/devices/pump-7", SUPPLIED.as_bytes())
            .await,
        device
    );
    assert_eq!(
        registry
            .verify("default/devices/pump-7", b"another password, long enough")
            .await,
        None
    );
    let removed_password = removed["password"].as_str().expect("a password");
    assert_eq!(
        registry
            .verify("default/apps/dashboard", removed_password.as_bytes())
            .await,
        None
    );
}
