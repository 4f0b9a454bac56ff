//! API tokens made and revoked over HTTP with the test admin token.

use super::{Server, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Creates a token with the admin token; returns (id, secret).
pub async fn token(server: &Server, name: &str, role: &str, tenant: &str) -> (String, String) {
    let response = http_client()
        .post(server.url("/v1/tokens"))
        .json(&json!({"name": name, "roles": [role], "tenant": tenant}))
        .send()
        .await
        .expect("POST /v1/tokens");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["token"].as_str().expect("token").to_owned(),
    )
}

pub async fn revoke(server: &Server, id: &str) {
    let response = http_client()
        .delete(server.url(&format!("/v1/tokens/{id}")))
        .send()
        .await
        .expect("DELETE token");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// The `changed_by` of the twin's latest history entry.
pub async fn last_changed_by(server: &Server, thing: &str) -> Value {
    let history: Value = http_client()
        .get(server.url(&format!("/v1/tenants/default/twins/{thing}/history")))
        .send()
        .await
        .expect("GET history")
        .json()
        .await
        .expect("JSON");
    history["items"][0]["changed_by"].clone()
}
