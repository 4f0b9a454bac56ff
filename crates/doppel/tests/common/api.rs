//! The HTTP API of one server as the HTTP tests see it: any request, and the parts of the
//! answer they check.

use super::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct Api {
    pub server: Server,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub content_type: String,
    /// The body as JSON: `null` when empty, a JSON string holding the text when it is not JSON.
    pub body: Value,
}

impl Api {
    /// A fresh server on a temporary data folder.
    pub fn start() -> Api {
        Self::over(Server::start())
    }

    /// A fresh client per server: connections pooled to a stopped server are useless.
    pub fn over(server: Server) -> Api {
        Api {
            server,
            http: super::http_client(),
        }
    }

    /// Sends `method path` with `headers`, and `body` as it is (JSON or not) when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let mut request = self.http.request(method, self.server.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
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
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            location,
            etag,
            content_type,
            body,
        }
    }
}

/// Checks that `reply` is a problem (RFC 9457) with `status` and the error code `code`.
pub fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["code"], json!(code), "body: {}", reply.body);
    assert_eq!(reply.body["status"], json!(status.as_u16()));
    assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}
