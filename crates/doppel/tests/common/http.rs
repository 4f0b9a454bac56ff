//! The tests' one HTTP client: any request to one server's API, the parts of the answer tests
//! check, and the calls that tests of other protocols check against (one server's twins,
//! commands and credentials in the default tenant).

use super::Server;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TWINS: &str = "/v1/tenants/default/twins";

/// An HTTP client for one server's API.
pub struct HttpClient {
    /// e.g. `http://127.0.0.1:41234`
    base: String,
    client: reqwest::Client,
}

/// An answer as the tests check it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub content_type: String,
    /// The raw body, to check what it does or does not contain.
    pub text: String,
    /// The body as JSON: `null` when empty, a JSON string holding the text when it is not JSON.
    pub body: Value,
}

impl Reply {
    /// Reads all of `response`.
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ASCII header").to_owned())
        };
        let location = header("location");
        let etag = header("etag");
        let content_type = header("content-type").unwrap_or_default();
        let text = response.text().await.expect("a response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Reply {
            status,
            headers,
            location,
            etag,
            content_type,
            text,
            body,
        }
    }

    /// The body as JSON, `null` when it is empty or not JSON.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl HttpClient {
    /// A client that sends the test admin token.
    pub fn new(server: &Server) -> HttpClient {
        Self::with_client(server, super::http_client())
    }

    /// A client for `server` through `client` (an HTTPS one, say, or one without a token).
    pub fn with_client(server: &Server, client: reqwest::Client) -> HttpClient {
        Self::at(&server.base, client)
    }

    /// A client for the API at `base` (e.g. `http://127.0.0.1:41234`) through `client`.
    pub fn at(base: &str, client: reqwest::Client) -> HttpClient {
        HttpClient {
            base: base.to_owned(),
            client,
        }
    }

    /// A request for `method path`, to add to before sending it with [`HttpClient::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends `request`, which must reach the server, and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("request reaches the server: {err}"));
        Reply::read(response).await
    }

    /// Sends `method path` with `headers`, and `body` as it is (JSON or not) when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        self.send(request).await
    }

    /// GETs `path`; the body is JSON (`null` when empty).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let reply = self.call(Method::GET, path, &[], None).await;
        let body = if reply.text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&reply.text)
                .unwrap_or_else(|_| panic!("GET {path}: not JSON: {}", reply.text))
        };
        (reply.status, body)
    }

    /// The twin at `path` (under `/v1/tenants/default/twins/`), which must exist.
    pub async fn twin(&self, path: &str) -> Value {
        let (status, body) = self.get(&format!("{TWINS}/{path}")).await;
        assert_eq!(status, StatusCode::OK, "GET twin {path}: {body}");
        body
    }

    /// The twin at `path` (under `/v1/tenants/default/twins/`) once its reported state is
    /// `reported`, waiting (bounded) for it: an MQTT publish's PUBACK may come before the hub
    /// has applied it.
    pub async fn twin_reporting(&self, path: &str, reported: &Value) -> Value {
        super::eventually_value(
            &format!("twin {path} reporting {reported}"),
            super::mqtt::WAIT,
            || async {
                let (status, twin) = self.get(&format!("{TWINS}/{path}")).await;
                if status == StatusCode::OK && twin["reported"]["state"] == *reported {
                    Ok(twin)
                } else {
                    Err(twin.to_string())
                }
            },
        )
        .await
    }

    /// Asserts that there is no twin at `path` (under `/v1/tenants/default/twins/`).
    pub async fn assert_no_twin(&self, path: &str) {
        let (status, body) = self.get(&format!("{TWINS}/{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "twin {path} exists: {body}");
    }

    /// PATCHes the desired state of the twin at `path`, which must succeed; returns the twin.
    pub async fn patch_desired(&self, path: &str, patch: &Value) -> Value {
        let reply = self
            .send(
                self.request(Method::PATCH, &format!("{TWINS}/{path}/desired"))
                    .json(patch),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "PATCH desired of {path}");
        serde_json::from_str(&reply.text).expect("the twin")
    }

    /// POSTs `body` to `path` (under the server's base); the status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self.send(self.request(Method::POST, path).json(body)).await;
        (reply.status, reply.json_or_null())
    }

    /// PATCHes `path` (under the server's base) with `body`; the status and JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self
            .send(self.request(Method::PATCH, path).json(body))
            .await;
        (reply.status, reply.json_or_null())
    }

    /// DELETEs `path` (under the server's base).
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, &[], None).await
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
        let path = format!("/v1/tenants/{tenant}/{owner}/credentials");
        let reply = self
            .send(self.request(Method::POST, &path).json(&json!({})))
            .await;
        let body: Value = serde_json::from_str(&reply.text).expect("a JSON body");
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "credentials for {owner}: {body}"
        );
        let field = |name: &str| body[name].as_str().expect(name).to_owned();
        (field("username"), field("password"))
    }
}
