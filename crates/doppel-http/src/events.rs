//! Change streams over HTTP: `GET /v1/tenants/{tenant}/events` as Server-Sent Events, and
//! `GET /v1/tenants/{tenant}/events/ws` as a WebSocket, both with the same filters and the same
//! resume rules (see docs/API.md, "Change streams").

use crate::AppState;
use crate::auth::{self, Caller};
use crate::params::query;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use doppel_engine::Engine;
use doppel_engine::stream::{EventId, EventType, Gap, StreamEvent};
use doppel_model::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How often an idle SSE stream sends a comment, so proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most type patterns one subscription may name.
const MAX_TYPES: usize = 32;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/events", get(sse))
        .route("/v1/tenants/{tenant}/events/ws", get(websocket))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    /// Only events of twins that match this query when the event is sent (docs/QUERY.md).
    q: Option<String>,
    /// Comma-separated event types or families (`twin.*`).
    types: Option<String>,
    /// Where to resume, for clients that cannot send `Last-Event-ID` (browsers' WebSocket).
    last_event_id: Option<String>,
    /// `false`: send the kept events (after `Last-Event-ID`, else all of them), then an `end`
    /// event, instead of staying open for live ones.
    follow: Option<bool>,
}

/// Which events a subscriber wants.
struct Filter {
    types: Vec<String>,
    /// Checked against the twin's state when the event is sent; a deleted twin matches no
    /// query, so `twin.deleted` events reach only subscribers without one.
    twins: Option<(Engine, doppel_query::Query)>,
}

impl Filter {
    fn parse(types: Option<&str>) -> Result<Filter, ApiError> {
        let Some(types) = types else {
            return Ok(Filter {
                types: Vec::new(),
                twins: None,
            });
        };
        let patterns: Vec<String> = types
            .split(',')
            .map(|pattern| pattern.trim().to_owned())
            .filter(|pattern| !pattern.is_empty())
            .collect();
        if patterns.len() > MAX_TYPES {
            return Err(ApiError::InvalidQuery(format!(
                "types names at most {MAX_TYPES} types"
            )));
        }
        for pattern in &patterns {
            let known = matches!(pattern.as_str(), "twin.*" | "command.*")
                || EventType::NAMES.contains(&pattern.as_str());
            if !known {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown event type {pattern:?}; expected twin.*, command.* or one of {}",
                    EventType::NAMES.join(", ")
                )));
            }
        }
        Ok(Filter {
            types: patterns,
            twins: None,
        })
    }

    fn wants(&self, event: &StreamEvent) -> bool {
        let typed =
            self.types.is_empty() || self.types.iter().any(|pattern| event.kind.matches(pattern));
        typed
            && self
                .twins
                .as_ref()
                .is_none_or(|(engine, query)| engine.twin_matches(&event.key, query))
    }
}

/// What a subscriber is sent next.
enum Item {
    Event(Arc<StreamEvent>),
    /// The resume could not continue exactly after the client's last event.
    Gap(Value),
    /// The stream ends, and why.
    End(Value),
    /// A read without `follow` sent every kept event; where the next read resumes.
    Caught(Value),
}

/// What a subscription sends once its backlog is out.
enum Then {
    /// The live events, until the client leaves or the stream ends.
    Live(broadcast::Receiver<Arc<StreamEvent>>),
    /// Nothing more (`follow=false`): one `end` event naming the newest id handed out.
    End { last: Option<EventId> },
}

/// One client's subscription: the backlog to replay, then the live events.
struct Subscription {
    gap: Option<Value>,
    backlog: VecDeque<Arc<StreamEvent>>,
    then: Then,
    closing: watch::Receiver<bool>,
    /// Resolves when the caller's token is revoked or expires: the stream ends then.
    token_ended: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Counts the stream against its token's limit while it is open.
    _permit: Option<auth::StreamPermit>,
    filter: Filter,
    ended: bool,
}

/// A stream request opens its subscription as it is extracted, so that the SSE and the
/// WebSocket routes share one way in. The WebSocket route extracts its upgrade first, so that a
/// request that is no upgrade is refused as such before anything else is checked, as before.
impl FromRequestParts<AppState> for Subscription {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let caller = Caller::of(parts, state).await?;
        let path = Path::from_request_parts(parts, state).await;
        let params = Query::from_request_parts(parts, state).await;
        Subscription::open(state, caller, path, params, &parts.headers)
            .map_err(IntoResponse::into_response)
    }
}

impl Subscription {
    fn open(
        state: &AppState,
        caller: Caller,
        path: Result<Path<String>, PathRejection>,
        params: Result<Query<StreamParams>, QueryRejection>,
        headers: &HeaderMap,
    ) -> Result<Subscription, ApiError> {
        let permit = auth::hold_stream(state, &caller)?;
        let Path(tenant) = path.map_err(|err| ApiError::InvalidQuery(err.body_text()))?;
        let tenant = TenantId::new(tenant)?;
        let params = query(params)?;
        let mut filter = Filter::parse(params.types.as_deref())?;
        let engine = state.engine()?;
        if let Some(text) = &params.q {
            let query = doppel_query::parse(text).map_err(|error| ApiError::QuerySyntax {
                parameter: "q",
                error,
            })?;
            filter.twins = Some((engine.clone(), query));
        }
        let last = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or(params.last_event_id);
        let last = last
            .map(|text| {
                EventId::parse(&text).ok_or_else(|| {
                    ApiError::InvalidHeader(format!(
                        "Last-Event-ID {text:?} is not an event id this server sends"
                    ))
                })
            })
            .transpose()?;
        let streams = engine.streams();
        let (backlog, gap, then) = if params.follow.unwrap_or(true) {
            let opened = streams.open(&tenant, last);
            (opened.backlog, opened.gap, Then::Live(opened.live))
        } else {
            let kept = streams.read(&tenant, last);
            (kept.events, kept.gap, Then::End { last: kept.last })
        };
        let gap = gap.map(|gap| gap_notice(gap, &backlog));
        Ok(Subscription {
            gap,
            backlog: backlog.into(),
            then,
            closing: streams.closing(),
            token_ended: Box::pin(auth::token_ended(state.clone(), caller)),
            _permit: permit,
            filter,
            ended: false,
        })
    }

    async fn next(&mut self) -> Option<Item> {
        if self.ended {
            return None;
        }
        if let Some(gap) = self.gap.take() {
            return Some(Item::Gap(gap));
        }
        while let Some(event) = self.backlog.pop_front() {
            if self.filter.wants(&event) {
                return Some(Item::Event(event));
            }
        }
        let live = match &mut self.then {
            Then::Live(live) => live,
            Then::End { last } => {
                self.ended = true;
                let last = last.map(|id| id.to_string());
                return Some(Item::Caught(json!({ "last_event_id": last })));
            }
        };
        loop {
            if *self.closing.borrow_and_update() {
                self.ended = true;
                return Some(Item::End(json!({
                    "code": "shutting_down",
                    "message": "the server is stopping; reconnect with Last-Event-ID to resume",
                })));
            }
            let received = tokio::select! {
                received = live.recv() => received,
                _ = self.closing.changed() => continue,
                () = &mut self.token_ended => {
                    self.ended = true;
                    return Some(Item::End(json!({
                        "code": "token_revoked",
                        "message": "the token of this stream was revoked or has expired",
                    })));
                }
            };
            match received {
                Ok(event) if self.filter.wants(&event) => return Some(Item::Event(event)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.ended = true;
                    return Some(Item::End(json!({
                        "code": "too_slow",
                        "message": format!(
                            "this client fell {missed} events behind and was disconnected; reconnect with Last-Event-ID to resume"
                        ),
                    })));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn gap_notice(gap: Gap, backlog: &[Arc<StreamEvent>]) -> Value {
    let code = match gap {
        Gap::EarlierEpoch => "restarted",
        Gap::Expired => "expired",
        Gap::Unknown => "unknown_event_id",
    };
    json!({
        "code": code,
        "message": gap.reason(),
        "resumes_at": backlog.first().map(|event| event.id.to_string()),
    })
}

/// `GET .../events`: Server-Sent Events. Each event has its id, its type as the SSE event name,
/// and its JSON as data. A `gap` event says a resume could not continue exactly; an `error`
/// event ends the stream (`too_slow`, `shutting_down`); with `follow=false`, an `end` event
/// follows the kept events and ends it.
async fn sse(subscription: Subscription) -> Result<Response, ApiError> {
    let events = futures_util::stream::unfold(subscription, |mut subscription| async move {
        let item = subscription.next().await?;
        let event = match item {
            Item::Event(event) => Event::default()
                .id(event.id.to_string())
                .event(event.kind.name())
                .data(&*event.data),
            Item::Gap(notice) => Event::default().event("gap").data(notice.to_string()),
            Item::End(reason) => Event::default().event("error").data(reason.to_string()),
            Item::Caught(resume) => Event::default().event("end").data(resume.to_string()),
        };
        Some((Ok::<_, Infallible>(event), subscription))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// `GET .../events/ws`: the same stream over a WebSocket, one JSON text message per event
/// (`{"id", "type", ...}`), then `{"type": "gap", ...}` or `{"type": "error", ...}` messages
/// like the SSE ones.
async fn websocket(upgrade: WebSocketUpgrade, subscription: Subscription) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(socket, subscription))
}

async fn serve_socket(mut socket: WebSocket, mut subscription: Subscription) {
    loop {
        let item = tokio::select! {
            item = subscription.next() => item,
            incoming = socket.recv() => match incoming {
                // The client closed, or the connection broke: nothing more to send.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
        };
        let text = match item {
            Some(Item::Event(event)) => event.data.to_string(),
            Some(Item::Gap(notice)) => tagged("gap", notice),
            Some(Item::End(reason)) => tagged("error", reason),
            Some(Item::Caught(resume)) => tagged("end", resume),
            None => return,
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}

fn tagged(kind: &str, mut body: Value) -> String {
    if let Value::Object(fields) = &mut body {
        fields.insert("type".into(), Value::String(kind.into()));
    }
    body.to_string()
}
