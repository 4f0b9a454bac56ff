//! The holes an attacker looks for, tried against the real binary: each test makes the attack
//! and checks that the hub refuses it with its documented answer and changes nothing.

mod common;

use common::Server;
use common::api::{Api, assert_problem};
use common::mqtt::device;
use common::sse::SseClient;
use common::topic::{self, ShadowOp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ANONYMOUS: [&str; 2] = ["--mqtt-allow-anonymous", "true"];

async fn patch(api: &Api, path: &str, body: Value) -> common::http::Reply {
    api.call(Method::PATCH, path, &[], Some(body.to_string()))
        .await
}

async fn get(api: &Api, path: &str) -> common::http::Reply {
    api.call(Method::GET, path, &[], None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_create_more_named_shadows_than_the_limit() {
    let server =
        Server::start_with(&[&ANONYMOUS[..], &["--limits-max-named-shadows", "3"]].concat());
    let mut pump = device(&server, "pump-1").await;
    for name in ["a", "b", "c"] {
        pump.publish(
            &topic::named_request("pump-1", name, ShadowOp::Update),
            r#"{"state":{"reported":{"on":true}}}"#,
        )
        .await;
        pump.recv_json(&topic::named_accepted("pump-1", name, ShadowOp::Update))
            .await;
    }
    // The fourth is refused over MQTT with AWS's error document, and made no twin.
    pump.publish(
        &topic::named_request("pump-1", "d", ShadowOp::Update),
        r#"{"state":{"reported":{"on":true}},"clientToken":"t4"}"#,
    )
    .await;
    let refused = pump
        .recv_json(&topic::named_rejected("pump-1", "d", ShadowOp::Update))
        .await;
    assert_eq!(refused["code"], 403, "{refused}");
    assert_eq!(refused["clientToken"], "t4", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("limits.max_named_shadows") && message.contains("3"),
        "{refused}"
    );
    let api = Api::over(server);
    let missing = get(&api, "/v1/tenants/default/twins/pump-1/shadows/d").await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "twin_not_found");
    // Over HTTP: a problem document with a stable code and the limit.
    let path = "/v1/tenants/default/twins/pump-1/shadows/e/desired";
    let refused = patch(&api, path, json!({"x": 1})).await;
    assert_problem(&refused, StatusCode::CONFLICT, "too_many_named_shadows");
    assert_eq!(refused.body["limit"], 3);
    // Existing shadows still change, the device's own twin is not one of them, and another
    // device has places of its own.
    let existing = "/v1/tenants/default/twins/pump-1/shadows/a/desired";
    assert_eq!(patch(&api, existing, json!({"x": 1})).await.status, 200);
    let own = "/v1/tenants/default/twins/pump-1/desired";
    assert!(patch(&api, own, json!({"x": 1})).await.status.is_success());
    let other = "/v1/tenants/default/twins/pump-2/shadows/e/desired";
    assert!(
        patch(&api, other, json!({"x": 1}))
            .await
            .status
            .is_success()
    );
    // Deleting one makes room.
    let deleted = api
        .call(
            Method::DELETE,
            "/v1/tenants/default/twins/pump-1/shadows/b",
            &[],
            None,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    assert!(patch(&api, path, json!({"x": 1})).await.status.is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_create_more_twins_than_its_limit() {
    let api = Api::over(Server::start_with(&["--limits-max-twins-per-tenant", "2"]));
    for device in ["a", "b"] {
        let path = format!("/v1/tenants/acme/twins/{device}/desired");
        assert!(
            patch(&api, &path, json!({"on": true}))
                .await
                .status
                .is_success()
        );
    }
    let refused = patch(
        &api,
        "/v1/tenants/acme/twins/c/desired",
        json!({"on": true}),
    )
    .await;
    assert_problem(&refused, StatusCode::CONFLICT, "too_many_twins");
    assert_eq!(refused.body["limit"], 2);
    let missing = get(&api, "/v1/tenants/acme/twins/c").await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "twin_not_found");
    // A named shadow is a twin too.
    let shadow = "/v1/tenants/acme/twins/a/shadows/s/desired";
    assert_problem(
        &patch(&api, shadow, json!({"on": true})).await,
        StatusCode::CONFLICT,
        "too_many_twins",
    );
    // Existing twins still change; other tenants are not affected.
    let existing = "/v1/tenants/acme/twins/a/desired";
    assert_eq!(
        patch(&api, existing, json!({"on": false})).await.status,
        200
    );
    let other = "/v1/tenants/other/twins/c/desired";
    assert!(
        patch(&api, other, json!({"on": true}))
            .await
            .status
            .is_success()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reported_version_at_the_maximum_is_not_wrapped_to_zero() {
    let server = Server::start_with(&ANONYMOUS);
    let mut pump = device(&server, "pump-3").await;
    let api = Api::over(server);
    let reported = "/v1/tenants/default/twins/pump-3/reported";
    let max = patch(
        &api,
        reported,
        json!({"state": {"t": 1}, "version": u64::MAX}),
    )
    .await;
    assert!(max.status.is_success(), "{}", max.body);
    // Counting on from u64::MAX wrapped to 0 (a debug build panicked in the shard), after
    // which this stale report of version 5 was applied.
    let next = patch(&api, reported, json!({"state": {"t": 2}})).await;
    assert_problem(&next, StatusCode::BAD_REQUEST, "version_overflow");
    assert_eq!(next.body["current_version"], json!(u64::MAX));
    let stale = patch(&api, reported, json!({"state": {"t": 5}, "version": 5})).await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body["applied"], false, "{}", stale.body);
    // Over MQTT an AWS update counts the section on: refused the same way.
    pump.publish(
        &topic::request("pump-3", ShadowOp::Update),
        r#"{"state":{"reported":{"t":3}},"clientToken":"v"}"#,
    )
    .await;
    let refused = pump
        .recv_json(&topic::rejected("pump-3", ShadowOp::Update))
        .await;
    assert_eq!(refused["code"], 400, "{refused}");
    assert_eq!(
        refused["message"],
        "The reported state version is at its maximum; no later version can be recorded"
    );
    let twin = get(&api, "/v1/tenants/default/twins/pump-3").await;
    assert_eq!(
        twin.body["reported"]["state"],
        json!({"t": 1}),
        "{}",
        twin.body
    );
    assert_eq!(twin.body["reported"]["version"], json!(u64::MAX));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pathologically_nested_document_gets_the_nesting_error_over_mqtt_and_http() {
    let server = Server::start_with(&ANONYMOUS);
    let mut pump = device(&server, "pump-4").await;
    let rejected = topic::rejected("pump-4", ShadowOp::Update);
    // 60,000 levels (unclosed, to stay within the document limit) and 200 closed ones: both
    // are past serde_json's recursion limit, which answered "Invalid JSON".
    let unclosed = format!(r#"{{"state":{{"reported":{{"a":{}"#, "[".repeat(60_000));
    let closed = format!(
        r#"{{"state":{{"reported":{{"a":{}1{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for payload in [&unclosed, &closed] {
        pump.publish(
            &topic::request("pump-4", ShadowOp::Update),
            payload.as_bytes().to_vec(),
        )
        .await;
        let error = pump.recv_json(&rejected).await;
        assert_eq!(error["code"], 400, "{error}");
        assert_eq!(
            error["message"],
            "JSON contains too many levels of nesting; maximum is 8"
        );
    }
    // Syntax errors are still syntax errors.
    pump.publish(&topic::request("pump-4", ShadowOp::Update), "{not json")
        .await;
    assert_eq!(pump.recv_json(&rejected).await["message"], "Invalid JSON");
    // HTTP gives the same answer, as its problem document.
    let api = Api::over(server);
    for body in [unclosed, closed] {
        let reply = api
            .call(
                Method::PATCH,
                "/v1/tenants/default/twins/pump-4/desired",
                &[],
                Some(body),
            )
            .await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "too_deep");
        assert_eq!(reply.body["limit"], 8);
    }
    let missing = get(&api, "/v1/tenants/default/twins/pump-4").await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "twin_not_found");
}

/// AWS: "Setting the device's shadow state to null does not delete the shadow. The shadow
/// version will be incremented on the next update" (Developer Guide, "Interacting with
/// shadows"). Doppel does the same: both sections are cleared, the shadow stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_null_state_clears_both_sections_and_keeps_the_shadow_as_on_aws() {
    let server = Server::start_with(&ANONYMOUS);
    let mut pump = device(&server, "pump-5").await;
    let first = pump
        .update_accepted(
            "pump-5",
            r#"{"state":{"desired":{"on":true},"reported":{"on":false}}}"#,
        )
        .await;
    let cleared = pump.update_accepted("pump-5", r#"{"state":null}"#).await;
    assert_eq!(
        cleared["state"],
        json!({"desired": null, "reported": null}),
        "{cleared}"
    );
    assert_eq!(cleared["version"], first["version"].as_u64().unwrap() + 1);
    pump.publish(&topic::request("pump-5", ShadowOp::Get), "")
        .await;
    let shown = pump
        .recv_json(&topic::accepted("pump-5", ShadowOp::Get))
        .await;
    assert_eq!(shown["state"], json!({}), "{shown}");
    assert_eq!(shown["version"], cleared["version"]);
    let api = Api::over(server);
    let twin = get(&api, "/v1/tenants/default/twins/pump-5").await;
    assert_eq!(twin.status, 200, "the shadow still exists");
    assert_eq!(twin.body["desired"]["state"], json!({}));
    assert_eq!(twin.body["reported"]["state"], json!({}));
}

/// An event of each report carries the whole reported section, so a ring of 65,536 events of
/// 64 KiB states pinned 4 GiB per tenant, and kept it after its clients left.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_stream_keeps_bounded_bytes_and_lets_go_when_nobody_watches() {
    let (server, log) = Server::start_capturing_stderr(&[
        "--streams-retention-bytes",
        "8192",
        "--streams-idle-release",
        "1s",
        "--log-level",
        "info",
    ]);
    let mut stream = SseClient::open(&server, "?types=twin.reported", None).await;
    let api = Api::over(server);
    let reported = "/v1/tenants/default/twins/pump-6/reported";
    let mut ids = Vec::new();
    for n in 0..10 {
        let body = json!({"state": {"n": n, "blob": "x".repeat(2000)}});
        assert!(patch(&api, reported, body).await.status.is_success());
        let event = stream.expect().await;
        assert_eq!(event.data["reported"]["n"], n, "{event:?}");
        ids.push(event.id.expect("an id"));
    }
    drop(stream);
    // Four 2 KiB events do not fit in 8 KiB: a resume from the first is told it expired, and
    // goes on from the oldest event kept.
    let mut resumed = SseClient::open(&api.server, "?types=twin.reported", Some(&ids[0])).await;
    let gap = resumed.expect().await;
    assert_eq!(
        (gap.event.as_str(), &gap.data["code"]),
        ("gap", &json!("expired"))
    );
    let resumes_at = gap.data["resumes_at"].as_str().expect("an id").to_owned();
    let position = ids
        .iter()
        .position(|id| *id == resumes_at)
        .expect("a kept id");
    assert!((6..10).contains(&position), "{resumes_at} of {ids:?}");
    let first_kept = resumed.expect().await;
    assert_eq!(first_kept.id.as_deref(), Some(resumes_at.as_str()));
    drop(resumed);
    // Once nobody has watched for a second the ring is released; a report meanwhile is not
    // numbered, so a client resuming from the last id it saw must hear of a gap.
    common::log_line(
        &log,
        "released the change stream",
        std::time::Duration::from_secs(30),
    );
    let body = json!({"state": {"n": 10}});
    assert!(patch(&api, reported, body).await.status.is_success());
    let last = ids.last().expect("ids");
    let mut late = SseClient::open(&api.server, "?types=twin.reported", Some(last)).await;
    let gap = late.expect().await;
    assert_eq!(
        (gap.event.as_str(), &gap.data["code"]),
        ("gap", &json!("expired"))
    );
    // And it goes on live from there.
    let body = json!({"state": {"n": 11}});
    assert!(patch(&api, reported, body).await.status.is_success());
    let live = late.expect().await;
    assert_eq!(live.data["reported"]["n"], 11, "{live:?}");
    let sequence = |id: &str| {
        id.split_once('-')
            .and_then(|(_, sequence)| sequence.parse::<u64>().ok())
            .expect("an event id")
    };
    let live_id = live.id.expect("an id");
    assert!(
        sequence(&live_id) > sequence(last),
        "{live_id} after {last}: an id is never handed out twice"
    );
}

/// The status line of the answer to `head` sent raw, as a client that ignores limits would.
async fn raw_status(server: &Server, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream.write_all(head).await.expect("send the head");
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn request_heads_beyond_64_kib_or_100_headers_get_431() {
    let server = Server::start();
    let ok = raw_status(&server, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(ok, "HTTP/1.1 200 OK");
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-Header-{i}: x\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let long_uri = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    for (what, head) in [
        ("101 headers", many),
        ("a 70 KiB header", big_header.into_bytes()),
        ("a 70 KiB URI", long_uri.into_bytes()),
    ] {
        assert_eq!(
            raw_status(&server, &head).await,
            "HTTP/1.1 431 Request Header Fields Too Large",
            "{what}"
        );
    }
}
