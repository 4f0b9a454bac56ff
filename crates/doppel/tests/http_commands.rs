//! Device commands over HTTP end to end: the real binary on port 0, real HTTP. Queueing,
//! idempotency, listing, cancel, the limits, the long poll and acknowledgement, and a restart.

mod common;

use common::api::{Api, assert_problem};
use common::http::Reply;
use common::{ADMIN_TOKEN, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The commands of device `pump-7` in the default tenant.
const COMMANDS: &str = "/v1/tenants/default/twins/pump-7/commands";

/// Longest long poll the tests ask for: far beyond what a queue takes, so a slow machine does
/// not turn the poll into a 204; a passing test returns as soon as the command is queued.
const LONG_POLL_SECONDS: u64 = 30;

/// Times the long-poll test starts a poll and then queues a command.
const POLL_ROUNDS: usize = 5;

/// The convenience calls of these tests on top of the shared [`Api`].
impl Api {
    /// Sends `body` as it is (JSON or not) when given; a body that is not JSON fails the test.
    async fn raw(&self, method: Method, path: &str, body: Option<String>) -> Reply {
        let reply = self.call(method.clone(), path, &[], body).await;
        if let Value::String(text) = &reply.body {
            // The shared call keeps a body that is not JSON as a string; the API always answers
            // JSON, and a JSON string only ever comes with a JSON content type.
            assert!(
                reply.content_type.ends_with("json"),
                "{method} {path}: not JSON: {text}"
            );
        }
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        self.raw(Method::GET, path, None).await
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Reply {
        self.raw(method, path, Some(body.to_string())).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, body).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.raw(Method::DELETE, path, None).await
    }

    /// Queues a command for `pump-7`, which must be created; returns it.
    async fn queue(&self, body: Value) -> Value {
        let reply = self.post(COMMANDS, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "queue: {}", reply.body);
        reply.body
    }

    /// One page of `pump-7`'s commands with the query `query`: (ids, types, `next`).
    async fn list(&self, query: &str) -> (Vec<String>, Vec<String>, Value) {
        let reply = self.get(&format!("{COMMANDS}?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "list ?{query}: {}",
            reply.body
        );
        let commands = reply.body["items"].as_array().expect("items");
        let strings = |name: &str| -> Vec<String> {
            commands
                .iter()
                .map(|command| command[name].as_str().expect(name).to_owned())
                .collect()
        };
        (
            strings("id"),
            strings("type"),
            reply.body["next_cursor"].clone(),
        )
    }
}

fn id(command: &Value) -> &str {
    command["id"].as_str().expect("a command id")
}

/// The statuses a command went through, oldest first.
fn steps(command: &Value) -> Vec<&str> {
    command["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|step| step["status"].as_str().expect("a status"))
        .collect()
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_command() {
    let api = Api::start();
    let body = json!({
        "type": "reboot",
        "payload": {"delay_seconds": 5},
        "priority": 3,
        "ttl_seconds": 600,
        "idempotency_key": "reboot-2026-11-22",
    });
    let first = api.post(COMMANDS, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let command = &first.body;
    assert_eq!(
        first.location.as_deref(),
        Some(format!("{COMMANDS}/{}", id(command)).as_str())
    );
    assert_eq!(command["type"], "reboot");
    assert_eq!(command["payload"], json!({"delay_seconds": 5}));
    assert_eq!(command["priority"], 3);
    assert_eq!(command["status"], "PENDING");
    assert_eq!(command["attempts"], 0);
    assert_eq!(command["idempotency_key"], "reboot-2026-11-22");
    assert_eq!(command["delivered_at"], Value::Null);
    assert_eq!(steps(command), ["PENDING"]);
    // Instants are RFC 3339, as in a twin.
    let created = command["created_at"].as_str().expect("created_at");
    let expires = command["expires_at"].as_str().expect("expires_at");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(expires > created, "{expires} after {created}");
    assert_eq!(command["transitions"][0]["at"], created);

    let again = api.post(COMMANDS, body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body, first.body, "the first command, unchanged");

    let other_key = api
        .queue(json!({"type": "reboot", "idempotency_key": "another"}))
        .await;
    assert_ne!(id(&other_key), id(command));
    let (ids, _, _) = api.list("").await;
    assert_eq!(ids.len(), 2, "the repeat queued nothing: {ids:?}");
}

#[tokio::test]
async fn lists_are_in_creation_order_filtered_by_status_and_paged() {
    let api = Api::start();
    let mut queued = Vec::new();
    for (kind, priority) in [("first", 0), ("second", 9), ("third", -9)] {
        let command = api.queue(json!({"type": kind, "priority": priority})).await;
        queued.push(id(&command).to_owned());
    }
    let (ids, kinds, next) = api.list("").await;
    assert_eq!(ids, queued);
    assert_eq!(
        kinds,
        ["first", "second", "third"],
        "creation order, not priority"
    );
    assert_eq!(next, Value::Null);

    let canceled = api.delete(&format!("{COMMANDS}/{}", queued[1])).await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    let (_, pending, _) = api.list("status=PENDING").await;
    assert_eq!(pending, ["first", "third"]);
    let (_, canceled, _) = api.list("status=canceled").await;
    assert_eq!(canceled, ["second"], "statuses are case-insensitive");
    let (none, _, _) = api.list("status=ACKNOWLEDGED").await;
    assert!(none.is_empty());

    let (page, _, next) = api.list("limit=2").await;
    assert_eq!(page, queued[..2]);
    assert_eq!(next, json!(queued[1]));
    let (rest, _, next) = api.list(&format!("limit=2&cursor={}", queued[1])).await;
    assert_eq!(rest, queued[2..]);
    assert_eq!(next, Value::Null);

    for query in [
        "status=DONE",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=not%2Fan-id",
        "colour=red",
    ] {
        let reply = api.get(&format!("{COMMANDS}?{query}")).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn a_command_is_read_by_id_and_canceled_once() {
    let api = Api::start();
    let command = api.queue(json!({"type": "diagnostics.run"})).await;
    let path = format!("{COMMANDS}/{}", id(&command));
    let read = api.get(&path).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, command);

    let missing = "0190a0c0-0000-7000-8000-000000000000";
    for reply in [
        api.get(&format!("{COMMANDS}/{missing}")).await,
        api.delete(&format!("{COMMANDS}/{missing}")).await,
        api.get(&format!("{COMMANDS}/not.an.id")).await,
        // Another device's commands are not this one's.
        api.get(&format!(
            "/v1/tenants/default/twins/pump-8/commands/{}",
            id(&command)
        ))
        .await,
    ] {
        assert_problem(&reply, StatusCode::NOT_FOUND, "command_not_found");
    }

    let canceled = api.delete(&path).await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "CANCELED");
    assert_eq!(steps(&canceled.body), ["PENDING", "CANCELED"]);
    let again = api.delete(&path).await;
    assert_problem(&again, StatusCode::CONFLICT, "command_final");
    assert_eq!(again.body["command_status"], "CANCELED");
    assert_eq!(api.get(&path).await.body["status"], "CANCELED");
}

#[tokio::test]
async fn invalid_requests_are_refused_with_a_code_and_change_nothing() {
    let api = Api::start();
    let too_long = api
        .post(COMMANDS, json!({"type": "reboot", "ttl_seconds": 604_801}))
        .await;
    assert_problem(&too_long, StatusCode::BAD_REQUEST, "ttl_too_long");
    assert_eq!(too_long.body["max_ttl_seconds"], 604_800);
    api.queue(json!({"type": "reboot", "ttl_seconds": 604_800}))
        .await;

    let large = api
        .post(
            COMMANDS,
            json!({"type": "flash", "payload": {"blob": "x".repeat(16 * 1024)}}),
        )
        .await;
    assert_problem(&large, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(large.body["limit"], 16 * 1024);

    for body in [
        json!({}),
        json!({"type": ""}),
        json!({"type": "has space"}),
        json!({"type": "reboot", "colour": "red"}),
        json!({"type": "reboot", "priority": 1001}),
        json!({"type": "reboot", "priority": "high"}),
        json!({"type": "reboot", "ttl_seconds": 0}),
        json!({"type": "reboot", "idempotency_key": 7}),
        json!(["reboot"]),
    ] {
        let reply = api.post(COMMANDS, body.clone()).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid_field");
    }
    let not_json = api
        .raw(Method::POST, COMMANDS, Some("{\"type\": ".into()))
        .await;
    assert_problem(&not_json, StatusCode::BAD_REQUEST, "invalid_json");
    for (path, code) in [
        ("/v1/tenants/default/twins/bad%20id/commands", "invalid_id"),
        // Commands go to a device, not to one of its named shadows.
        (
            "/v1/tenants/default/twins/pump-7%2Fshadows%2Fconfig/commands",
            "invalid_id",
        ),
    ] {
        let reply = api.post(path, json!({"type": "reboot"})).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, code);
    }

    let (ids, _, _) = api.list("").await;
    assert_eq!(ids.len(), 1, "only the valid command was queued");
}

#[tokio::test]
async fn a_device_has_at_most_100_open_commands() {
    let api = Api::start();
    let mut first = None;
    for n in 0..100 {
        let command = api
            .queue(json!({"type": "step", "payload": {"n": n}}))
            .await;
        first.get_or_insert_with(|| id(&command).to_owned());
    }
    let refused = api.post(COMMANDS, json!({"type": "step"})).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS, "too_many_commands");
    assert_eq!(refused.body["limit"], 100);

    let other = api
        .post(
            "/v1/tenants/default/twins/pump-8/commands",
            json!({"type": "step"}),
        )
        .await;
    assert_eq!(
        other.status,
        StatusCode::CREATED,
        "another device has its own limit"
    );

    // A final command no longer counts.
    let first = first.expect("a first command");
    let canceled = api.delete(&format!("{COMMANDS}/{first}")).await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    api.queue(json!({"type": "step"})).await;
}

/// Starts a long poll for `pump-7`: the request is on the wire, written over a connection of
/// its own, before this returns; the task answers (status, body). Raw HTTP, so the test knows
/// the request was sent before it queues anything.
async fn poll(api: &Api, wait: u64) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let addr = api.server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr)
        .await
        .expect("connect for the poll");
    let request = format!(
        "GET {COMMANDS}/next?wait={wait} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the poll");
    tokio::spawn(async move {
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .expect("read the poll's answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let status = StatusCode::from_u16(code).expect("a status");
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
        };
        (status, body)
    })
}

#[tokio::test]
async fn a_long_poll_returns_the_command_queued_while_it_waits() {
    let api = Api::start();
    let empty = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT, "{}", empty.body);
    assert_eq!(empty.body, Value::Null);
    let default_wait = api.get(&format!("{COMMANDS}/next")).await;
    assert_eq!(
        default_wait.status,
        StatusCode::NO_CONTENT,
        "wait defaults to 0"
    );

    // Which request the server handles first is not under the test's control. A poll that
    // answers nothing at once, sent after the long poll, goes through the same command worker
    // and gives the long poll a round trip's head start; and the sequence runs a few times. A
    // server that did not wait would answer the long poll with 204 in one of the rounds.
    for round in 0..POLL_ROUNDS {
        let waiting = poll(&api, LONG_POLL_SECONDS).await;
        let probe = api.get(&format!("{COMMANDS}/next?wait=0")).await;
        assert_eq!(probe.status, StatusCode::NO_CONTENT, "{}", probe.body);
        let queued = api
            .queue(json!({"type": "reboot", "payload": {"round": round}}))
            .await;
        let (status, delivered) = waiting.await.expect("the poll task");
        assert_eq!(status, StatusCode::OK, "round {round}: {delivered}");
        assert_eq!(delivered["id"], queued["id"]);
        assert_eq!(delivered["status"], "DELIVERED");
        assert_eq!(delivered["attempts"], 1);
        assert!(delivered["delivered_at"].is_string(), "{delivered}");
        assert_eq!(steps(&delivered), ["PENDING", "DELIVERED"]);
        assert_eq!(delivered["transitions"][1]["attempt"], 1);
    }

    // Delivered and not overdue: nothing more to hand out.
    let nothing = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(nothing.status, StatusCode::NO_CONTENT, "{}", nothing.body);

    for query in ["wait=61", "wait=-1", "wait=soon", "timeout=5"] {
        let reply = api.get(&format!("{COMMANDS}/next?{query}")).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn the_long_poll_hands_out_the_highest_priority_first() {
    let api = Api::start();
    let low = api.queue(json!({"type": "low", "priority": -1})).await;
    let high = api.queue(json!({"type": "high", "priority": 10})).await;
    for expected in [&high, &low] {
        let reply = api.get(&format!("{COMMANDS}/next?wait=0")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["id"], expected["id"]);
    }
}

#[tokio::test]
async fn an_acknowledgement_is_recorded_once() {
    let api = Api::start();
    let command = api.queue(json!({"type": "diagnostics.run"})).await;
    let delivered = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(delivered.body["id"], command["id"]);
    let ack = format!("{COMMANDS}/{}/ack", id(&command));

    let bad = api.post(&ack, json!({"status": "DONE"})).await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "invalid_field");
    let extra = api
        .post(&ack, json!({"status": "SUCCEEDED", "output": 1}))
        .await;
    assert_problem(&extra, StatusCode::BAD_REQUEST, "invalid_field");

    let acknowledged = api
        .post(
            &ack,
            json!({"status": "SUCCEEDED", "response": {"battery": 87}}),
        )
        .await;
    assert_eq!(acknowledged.status, StatusCode::OK, "{}", acknowledged.body);
    let body = &acknowledged.body;
    assert_eq!(body["status"], "ACKNOWLEDGED");
    assert_eq!(body["result"], "SUCCEEDED");
    assert_eq!(body["response"], json!({"battery": 87}));
    assert_eq!(steps(body), ["PENDING", "DELIVERED", "ACKNOWLEDGED"]);
    assert_eq!(
        api.get(&format!("{COMMANDS}/{}", id(&command))).await.body,
        *body
    );

    let twice = api.post(&ack, json!({"status": "FAILED"})).await;
    assert_problem(&twice, StatusCode::CONFLICT, "command_final");
    assert_eq!(twice.body["command_status"], "ACKNOWLEDGED");
    let canceled = api.delete(&format!("{COMMANDS}/{}", id(&command))).await;
    assert_problem(&canceled, StatusCode::CONFLICT, "command_final");

    let unknown = api
        .post(
            &format!("{COMMANDS}/0190a0c0-0000-7000-8000-000000000000/ack"),
            json!({"status": "SUCCEEDED"}),
        )
        .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "command_not_found");

    // A device that polled may acknowledge what the hub has not marked delivered.
    let rejected = api.queue(json!({"type": "format-disk"})).await;
    let reply = api
        .post(
            &format!("{COMMANDS}/{}/ack", id(&rejected)),
            json!({"status": "REJECTED"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["result"], "REJECTED");
    assert_eq!(reply.body["response"], Value::Null);
}

#[tokio::test]
async fn commands_and_their_statuses_survive_a_restart() {
    let data_dir = tempfile::tempdir().expect("temporary data folder");
    let api = Api::over(Server::start_in(data_dir.path(), &[]));
    let pending = api
        .queue(json!({"type": "pending", "idempotency_key": "k-pending"}))
        .await;
    let canceled = api.queue(json!({"type": "canceled"})).await;
    let acknowledged = api
        .queue(json!({"type": "acknowledged", "priority": 5}))
        .await;
    assert_eq!(
        api.delete(&format!("{COMMANDS}/{}", id(&canceled)))
            .await
            .status,
        StatusCode::OK
    );
    let delivered = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(delivered.body["id"], acknowledged["id"], "priority 5 first");
    let acked = api
        .post(
            &format!("{COMMANDS}/{}/ack", id(&acknowledged)),
            json!({"status": "FAILED", "response": {"error": "busy"}}),
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.body);
    let before = api.get(COMMANDS).await.body;

    // Answered writes are durable: no clean shutdown needed.
    let Api { mut server, .. } = api;
    server.kill();
    let api = Api::over(Server::start_in(data_dir.path(), &[]));

    let after = api.get(COMMANDS).await.body;
    assert_eq!(after, before, "every command with its whole life");
    let statuses: Vec<&str> = after["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|command| command["status"].as_str().expect("a status"))
        .collect();
    assert_eq!(statuses, ["PENDING", "CANCELED", "ACKNOWLEDGED"]);

    // The queue is rebuilt too: the idempotency key still holds and the pending command is due.
    let again = api
        .post(
            COMMANDS,
            json!({"type": "pending", "idempotency_key": "k-pending"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], pending["id"]);
    let next = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(next.body["id"], pending["id"]);
    assert_eq!(next.body["status"], "DELIVERED");
}

#[tokio::test]
async fn a_stopping_server_ends_long_polls_instead_of_waiting_them_out() {
    let mut api = Api::start();
    let waiting = poll(&api, 60).await;
    let settled = api.get(&format!("{COMMANDS}/next?wait=0")).await;
    assert_eq!(settled.status, StatusCode::NO_CONTENT);
    let stopped = tokio::task::spawn_blocking(move || api.server.stop());
    // Far below the poll's minute: only a poll that holds the shutdown up takes that long.
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .expect("the long poll ended with the server")
        .expect("poll task");
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(stopped.await.expect("stop task"), "a clean exit");
}
