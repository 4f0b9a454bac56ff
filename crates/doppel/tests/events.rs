//! Change streams end to end: Server-Sent Events and WebSocket from the real binary, resuming
//! with `Last-Event-ID`, gaps said out loud, slow clients cut off, shutdown ending streams.

mod common;

use common::http::HttpClient;
use common::sse::{EVENTS, SseClient};
use common::{ADMIN_TOKEN, Server};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Longest wait for one expected event.
const WAIT: Duration = Duration::from_secs(10);

fn sequence(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, sequence)| sequence.parse().ok())
        .expect("an id ending in its sequence")
}

#[tokio::test]
async fn twin_changes_stream_as_typed_events_in_order() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let mut stream = SseClient::open(&server, "?types=twin.*", None).await;
    http.patch_desired("pump-1", &json!({"speed": 3})).await;
    let desired = stream.expect().await;
    assert_eq!(desired.event, "twin.desired");
    assert_eq!(desired.data["device_id"], "pump-1");
    assert_eq!(desired.data["desired"], json!({"speed": 3}));
    assert_eq!(desired.data["type"], "twin.desired");
    let delta = stream.expect().await;
    assert_eq!(delta.event, "twin.delta");
    assert_eq!(delta.data["delta"], json!({"speed": 3}));
    assert_eq!(
        sequence(delta.id.as_deref().unwrap()),
        sequence(desired.id.as_deref().unwrap()) + 1
    );
    let (status, _) = http
        .post(
            "/v1/tenants/default/twins/pump-1/commands",
            &json!({"type": "reboot"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = http
        .patch(
            "/v1/tenants/default/twins/pump-1/reported",
            &json!({"state": {"speed": 3}, "version": 1}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let reported = stream.expect().await;
    assert_eq!(
        reported.event, "twin.reported",
        "the command event is filtered out"
    );
    assert_eq!(stream.expect().await.data["delta"], json!({}));
}

#[tokio::test]
async fn a_client_resumes_after_its_last_event_without_gap_or_duplicate() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let mut first = SseClient::open(&server, "?types=twin.desired", None).await;
    http.patch_desired("a", &json!({"n": 1})).await;
    let seen = first.expect().await;
    drop(first);
    for n in 2..=4 {
        http.patch_desired("a", &json!({"n": n})).await;
    }
    let last = seen.id.expect("an id");
    let mut resumed = SseClient::open(&server, "?types=twin.desired", Some(&last)).await;
    for n in 2..=4 {
        let event = resumed.expect().await;
        assert_eq!(event.data["desired"]["n"], n, "{event:?}");
    }
    // And it carries on live.
    http.patch_desired("a", &json!({"n": 5})).await;
    assert_eq!(resumed.expect().await.data["desired"]["n"], 5);

    let mut restarted = SseClient::open(&server, "", Some("1-1")).await;
    let gap = restarted.expect().await;
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.data["code"], "restarted");
}

#[tokio::test]
async fn bad_subscriptions_are_refused_with_a_code() {
    let server = Server::start();
    let client = common::http_client();
    for (query, header, code) in [
        ("?types=twin.everything", None, "invalid_query"),
        ("?colour=red", None, "invalid_query"),
        ("", Some("yesterday"), "invalid_header"),
    ] {
        let mut request = client.get(server.url(&format!("{EVENTS}{query}")));
        if let Some(value) = header {
            request = request.header("last-event-id", value);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("a problem document");
        assert_eq!(body["code"], code, "{query}");
    }
}

#[tokio::test]
async fn a_websocket_client_gets_command_events() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let url = format!(
        "ws://{}{EVENTS}/ws?types=command.*",
        server.base.trim_start_matches("http://")
    );
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}")
            .parse()
            .expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket upgrade");
    // The subscription is open once the upgrade is answered.
    let (_, queued) = http
        .queue_command("pump-2", &json!({"type": "reboot"}))
        .await;
    let message = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("a message within the wait")
        .expect("the socket is open")
        .expect("a message");
    let event: Value = serde_json::from_str(message.to_text().expect("text")).expect("JSON");
    assert_eq!(event["type"], "command.queued");
    assert_eq!(event["device_id"], "pump-2");
    assert_eq!(event["command"]["id"], queued["id"]);
}

#[tokio::test]
async fn a_client_that_falls_too_far_behind_is_cut_off_with_a_reason() {
    let server = Server::start_with(&["--streams-subscriber-buffer", "8"]);
    let mut slow = SseClient::open(&server, "", None).await;
    // Far more than the socket buffers hold, so the server's queue for this client overflows.
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let base = server.base.clone();
        writers.spawn(async move {
            let client = common::http_client();
            let payload = "x".repeat(2048);
            for n in 0..300 {
                client
                    .patch(format!("{base}/v1/tenants/default/twins/w{writer}/desired"))
                    .json(&json!({"n": n, "pad": payload}))
                    .send()
                    .await
                    .expect("write");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let mut ending = None;
    while let Some(event) = slow.next().await {
        if event.event == "error" {
            ending = Some(event);
            break;
        }
    }
    let ending = ending.expect("an error event before the end");
    assert_eq!(ending.data["code"], "too_slow");
    assert!(slow.next().await.is_none(), "the stream ends after it");
}

#[tokio::test]
async fn stopping_the_server_ends_its_streams() {
    let mut server = Server::start();
    let mut stream = SseClient::open(&server, "", None).await;
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let ending = stream.expect().await;
    assert_eq!(ending.event, "error");
    assert_eq!(ending.data["code"], "shutting_down");
    assert!(stopped.await.expect("stop task"), "a clean exit");
}

#[tokio::test]
async fn a_query_keeps_only_the_events_of_matching_twins() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    for (device, site) in [("b-1", "berlin"), ("p-1", "paris")] {
        let (status, _) = http
            .patch(
                &format!("/v1/tenants/default/twins/{device}"),
                &json!({"tags": {"site": site}}),
            )
            .await;
        assert!(status.is_success());
    }
    let mut berlin = SseClient::open(
        &server,
        "?types=twin.desired&q=tags.site%20%3D%20%27berlin%27",
        None,
    )
    .await;
    http.patch_desired("p-1", &json!({"on": true})).await;
    http.patch_desired("b-1", &json!({"on": true})).await;
    let event = berlin.expect().await;
    assert_eq!(
        event.data["device_id"], "b-1",
        "paris's change is filtered out"
    );
    let (status, body) = http.get(&format!("{EVENTS}?q=tags.site%20%3D")).await;
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "q");
}

/// A read without `follow`: every event it sent, up to and including its `end` event, which
/// must come before the stream ends.
async fn read_kept(
    server: &Server,
    query: &str,
    last_event_id: Option<&str>,
) -> Vec<common::sse::Sse> {
    let mut stream = SseClient::open(server, query, last_event_id).await;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let end = event.event == "end";
        events.push(event);
        if end {
            assert!(stream.next().await.is_none(), "the stream ends after `end`");
            return events;
        }
    }
    panic!("the stream ended without an `end` event: {events:?}");
}

/// [`read_kept`] again until it sends `count` events: a change is numbered just after its
/// write is answered.
async fn read_until(
    server: &Server,
    query: &str,
    last_event_id: Option<&str>,
    count: usize,
) -> Vec<common::sse::Sse> {
    let events = std::cell::RefCell::new(Vec::new());
    let read = &events;
    common::eventually(
        &format!("{count} events from {query}"),
        WAIT,
        || async move {
            let kept = read_kept(server, query, last_event_id).await;
            let done = kept.len() == count;
            *read.borrow_mut() = kept;
            done
        },
    )
    .await;
    events.into_inner()
}

#[tokio::test]
async fn a_read_without_follow_sends_what_is_kept_and_where_to_resume() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let begun = read_kept(&server, "?follow=false", None).await;
    assert_eq!(
        begun.len(),
        1,
        "nothing kept before the first reader: {begun:?}"
    );
    assert_eq!(begun[0].data, json!({"last_event_id": null}));

    http.patch_desired("pump-1", &json!({"speed": 3})).await;
    let kept = read_until(&server, "?follow=false&types=twin.desired", None, 2).await;
    assert_eq!(kept[0].event, "twin.desired");
    assert_eq!(kept[0].data["desired"], json!({"speed": 3}));
    let end = &kept[1].data;
    let last = end["last_event_id"].as_str().expect("an id").to_owned();
    assert_eq!(
        sequence(&last),
        sequence(kept[0].id.as_deref().expect("an id")) + 1,
        "the end names the newest id, the delta's, though the filter left it out"
    );

    http.patch_desired("pump-1", &json!({"speed": 4})).await;
    let resumed = read_until(&server, "?follow=false", Some(&last), 3).await;
    let types: Vec<&str> = resumed.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(types, ["twin.desired", "twin.delta", "end"]);
    assert_eq!(resumed[0].data["desired"], json!({"speed": 4}));
}
