//! The HTTP API of one server as the HTTP tests see it: a fresh server, any request to it
//! through the tests' one client, and the problem documents it answers with.

use super::Server;
use super::http::{HttpClient, Reply};
use reqwest::StatusCode;
use serde_json::json;

pub struct Api {
    pub server: Server,
    pub http: HttpClient,
}

impl Api {
    /// A fresh server on a temporary data folder.
    pub fn start() -> Api {
        Self::over(Server::start())
    }

    /// A fresh client per server: connections pooled to a stopped server are useless.
    pub fn over(server: Server) -> Api {
        let http = HttpClient::new(&server);
        Api { server, http }
    }
}

/// Requests go through the server's one client: `api.call(...)` is [`HttpClient::call`].
impl std::ops::Deref for Api {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        &self.http
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
