//! A Server-Sent Events client for the change streams (`GET /v1/tenants/default/events`).

use super::Server;
use serde_json::Value;
use std::time::Duration;

/// The default tenant's change stream.
pub const EVENTS: &str = "/v1/tenants/default/events";
/// Longest wait for one expected event.
const WAIT: Duration = Duration::from_secs(10);

/// One Server-Sent Event.
#[derive(Debug)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A Server-Sent Events client over a streaming HTTP response.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub async fn open(server: &Server, query: &str, last_event_id: Option<&str>) -> SseClient {
        Self::open_with(&super::http_client(), server, query, last_event_id).await
    }

    /// [`SseClient::open`] through `client` (an HTTPS one, say).
    pub async fn open_with(
        client: &reqwest::Client,
        server: &Server,
        query: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let mut request = client.get(server.url(&format!("{EVENTS}{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("request reaches the server");
        assert_eq!(response.status(), 200, "subscribe {query}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an SSE stream"
        );
        SseClient {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in frame.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("JSON data");
                return Some(Sse { id, event, data });
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    pub async fn expect(&mut self) -> Sse {
        self.next().await.expect("the stream goes on")
    }
}
