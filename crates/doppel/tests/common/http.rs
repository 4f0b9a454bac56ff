//! The HTTP calls that tests of other protocols check against: one server's twins and
//! credentials in the default tenant.

use super::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TWINS: &str = "/v1/tenants/default/twins";

/// An HTTP client for one server's API.
pub struct HttpClient {
    /// e.g. `http://127.0.0.1:41234`
    base: String,
    client: reqwest::Client,
}

impl HttpClient {
    pub fn new(server: &Server) -> HttpClient {
        Self::with_client(server, super::http_client())
    }

    /// A client for `server` through `client` (an HTTPS one, say).
    pub fn with_client(server: &Server, client: reqwest::Client) -> HttpClient {
        HttpClient {
            base: server.base.clone(),
            client,
        }
    }

    /// GETs `path`; the body is JSON (`null` when empty).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status();
        let text = response.text().await.expect("a response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("GET {path}: not JSON: {text}"))
        };
        (status, body)
    }

    /// The twin at `path` (under `/v1/tenants/default/twins/`), which must exist.
    pub async fn twin(&self, path: &str) -> Value {
        let (status, body) = self.get(&format!("{TWINS}/{path}")).await;
        assert_eq!(status, StatusCode::OK, "GET twin {path}: {body}");
        body
    }

    /// Asserts that there is no twin at `path` (under `/v1/tenants/default/twins/`).
    pub async fn assert_no_twin(&self, path: &str) {
        let (status, body) = self.get(&format!("{TWINS}/{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "twin {path} exists: {body}");
    }

    /// PATCHes the desired state of the twin at `path`, which must succeed; returns the twin.
    pub async fn patch_desired(&self, path: &str, patch: &Value) -> Value {
        let response = self
            .client
            .patch(format!("{}{TWINS}/{path}/desired", self.base))
            .json(patch)
            .send()
            .await
            .expect("request reaches the server");
        assert_eq!(response.status(), StatusCode::OK, "PATCH desired of {path}");
        response.json().await.expect("the twin")
    }

    /// POSTs `body` to `path` (under the server's base); the status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Queues a command for `device`, which must be accepted (201, or 200 for a repeated
    /// idempotency key); returns the status and the command.
    pub async fn queue_command(&self, device: &str, body: &Value) -> (StatusCode, Value) {
        let (status, command) = self.post(&format!("{TWINS}/{device}/commands"), body).await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "queue {body} for {device}: {status} {command}"
        );
        (status, command)
    }

    /// The command `id` of `device`, which must exist.
    pub async fn command(&self, device: &str, id: &str) -> Value {
        let (status, body) = self.get(&format!("{TWINS}/{device}/commands/{id}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "GET command {id} of {device}: {body}"
        );
        body
    }

    /// Creates a credential for `owner` (`devices/{id}` or `apps/{id}`): (username, password).
    pub async fn credential(&self, owner: &str) -> (String, String) {
        self.credential_in("default", owner).await
    }

    /// [`HttpClient::credential`] in `tenant`.
    pub async fn credential_in(&self, tenant: &str, owner: &str) -> (String, String) {
        let response = self
            .client
            .post(format!(
                "{}/v1/tenants/{tenant}/{owner}/credentials",
                self.base
            ))
            .json(&json!({}))
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "credentials for {owner}: {body}"
        );
        let field = |name: &str| body[name].as_str().expect(name).to_owned();
        (field("username"), field("password"))
    }
}
