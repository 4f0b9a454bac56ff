//! API tokens made and revoked over HTTP with the test admin token.

use super::Server;
use super::http::HttpClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Creates a token with the admin token; returns (id, secret).
pub async fn token(server: &Server, name: &str, role: &str, tenant: &str) -> (String, String) {
    let (status, body) = HttpClient::new(server)
        .post(
            "/v1/tokens",
            &json!({"name": name, "roles": [role], "tenant": tenant}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["token"].as_str().expect("token").to_owned(),
    )
}

pub async fn revoke(server: &Server, id: &str) {
    let reply = HttpClient::new(server)
        .delete(&format!("/v1/tokens/{id}"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
}

/// The `changed_by` of the twin's latest history entry.
pub async fn last_changed_by(server: &Server, thing: &str) -> Value {
    let (_, history) = HttpClient::new(server)
        .get(&format!("/v1/tenants/default/twins/{thing}/history"))
        .await;
    history["items"][0]["changed_by"].clone()
}
