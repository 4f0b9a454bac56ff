//! Commands end to end: queued over HTTP, delivered over MQTT to a real client (rumqttc),
//! acknowledged over MQTT, announced to applications, and kept across a SIGKILL.

mod common;

use common::http::HttpClient;
use common::mqtt::{Mqtt, Options, connect_with, login};
use common::topic::{self, Verdict};
use common::{Server, eventually_value};
use serde_json::{Value, json};
use std::time::Duration;

const DEVICE: &str = "pump-1";
/// A server that redelivers after a second and gives up after two deliveries.
const QUICK_RETRIES: &[&str] = &[
    "--commands-ack-timeout",
    "1s",
    "--commands-max-attempts",
    "2",
];

/// Three acknowledgement timeouts of [`QUICK_RETRIES`].
const AWAY_FOR_THREE_ACK_TIMEOUTS: Duration = Duration::from_secs(3);

fn id_of(command: &Value) -> String {
    command["id"].as_str().expect("a command id").to_owned()
}

/// A device session that keeps nothing between connections, as most firmware does.
async fn device(server: &Server, credentials: &(String, String), client_id: &str) -> Mqtt {
    login(server.mqtt, client_id, &credentials.0, &credentials.1).await
}

/// A new device credential for `thing`, and a session of it that listens for its commands.
async fn listening_device(
    server: &Server,
    http: &HttpClient,
    thing: &str,
) -> ((String, String), Mqtt) {
    let credentials = http.credential(&format!("devices/{thing}")).await;
    let mut session = device(server, &credentials, thing).await;
    session.subscribe(&topic::commands(thing)).await;
    (credentials, session)
}

/// Receives the next message, which must be a command delivery; returns its body.
async fn next_delivery(device: &mut Mqtt, thing: &str) -> Value {
    let message = device.recv_any().await;
    let prefix = topic::command_delivery(thing, "");
    assert!(
        message.topic.starts_with(&prefix),
        "expected a command, got {} {}",
        message.topic,
        String::from_utf8_lossy(&message.payload)
    );
    let body = message.json();
    assert_eq!(message.topic, topic::command_delivery(thing, &id_of(&body)));
    body
}

/// Waits until the command's delivery attempts ran out and it is FAILED; returns it.
async fn failed_eventually(http: &HttpClient, thing: &str, id: &str) -> Value {
    eventually_value(
        "delivery attempts to run out",
        Duration::from_secs(10),
        || async {
            let command = http.command(thing, id).await;
            if command["status"] == "FAILED" {
                Ok(command)
            } else {
                Err(command.to_string())
            }
        },
    )
    .await
}

async fn acknowledge(device: &mut Mqtt, thing: &str, id: &str, body: Value) -> Value {
    acknowledge_answered(device, thing, id, body, Verdict::Accepted).await
}

/// Publishes `body` as the acknowledgement of `id` and returns the hub's answer, which must be
/// the next message and have `verdict`.
async fn acknowledge_answered(
    device: &mut Mqtt,
    thing: &str,
    id: &str,
    body: Value,
    verdict: Verdict,
) -> Value {
    let topic = topic::command_ack(thing, id);
    device.subscribe(&format!("{topic}/+")).await;
    device.publish_json(&topic, &body).await;
    let answer = device.recv_any().await;
    assert_eq!(
        answer.topic,
        topic::command_ack_answer(thing, id, verdict),
        "{:?}",
        answer.json()
    );
    answer.json()
}

/// The scenario: an offline device with three queued commands of different priorities
/// and one with a 1-second TTL connects once that one has expired.
#[tokio::test]
async fn an_offline_device_gets_its_unexpired_commands_in_priority_order_then_its_delta() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(data.path(), &[]);
    let http = HttpClient::new(&server);
    let device_login = http.credential(&format!("devices/{DEVICE}")).await;
    let app_login = http.credential("apps/ops").await;
    let mut app = login(server.mqtt, "ops", &app_login.0, &app_login.1).await;
    app.subscribe(&topic::command_event(DEVICE, "+")).await;
    http.patch_desired(DEVICE, &json!({"speed": 5})).await;

    let mut queued = Vec::new();
    for (kind, priority, ttl) in [
        ("low", 0, 3600),
        ("high", 10, 3600),
        ("short", 20, 1),
        ("mid", 5, 3600),
    ] {
        let body = json!({
            "type": kind, "priority": priority, "ttl_seconds": ttl,
            "payload": {"name": kind}, "idempotency_key": format!("key-{kind}"),
        });
        let (status, command) = http.queue_command(DEVICE, &body).await;
        assert_eq!(status, 201, "{command}");
        assert_eq!(command["status"], "PENDING");
        queued.push((kind, id_of(&command)));
    }
    let id = |kind: &str| {
        queued
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, id)| id.clone())
            .expect("queued")
    };
    for (kind, _) in &queued {
        let event = app.recv_json(&topic::command_event(DEVICE, "queued")).await;
        assert_eq!(event["event"], "command.queued");
        assert_eq!(event["command"]["type"], *kind, "queued events in order");
    }

    // The device stays away until its 1-second command has expired.
    eventually_value("the short command expiring", common::mqtt::WAIT, || async {
        let short = http.command(DEVICE, &id("short")).await;
        if short["status"] == "EXPIRED" {
            Ok(())
        } else {
            Err(short.to_string())
        }
    })
    .await;
    let mut pump = device(&server, &device_login, DEVICE).await;
    pump.subscribe(&topic::commands(DEVICE)).await;
    pump.subscribe(&topic::delta(DEVICE)).await;
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(next_delivery(&mut pump, DEVICE).await);
    }
    let kinds: Vec<&str> = delivered
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["high", "mid", "low"],
        "priority order, expired never"
    );
    assert_eq!(delivered[0]["payload"], json!({"name": "high"}));
    assert_eq!(delivered[0]["attempt"], 1);
    let delta = pump.recv_any().await;
    assert_eq!(
        delta.topic,
        topic::delta(DEVICE),
        "the delta follows the commands"
    );
    assert_eq!(delta.json()["state"], json!({"speed": 5}));

    let short = http.command(DEVICE, &id("short")).await;
    assert_eq!(short["status"], "EXPIRED");
    let expired = app
        .recv_json(&topic::command_event(DEVICE, "expired"))
        .await;
    assert_eq!(expired["command"]["id"], id("short"));

    let accepted = acknowledge(
        &mut pump,
        DEVICE,
        &id("high"),
        json!({"status": "SUCCEEDED", "response": {"took_ms": 12}}),
    )
    .await;
    assert_eq!(accepted["status"], "ACKNOWLEDGED");
    let event = app
        .recv_json(&topic::command_event(DEVICE, "acknowledged"))
        .await;
    assert_eq!(event["command"]["result"], "SUCCEEDED");

    // Halfway: the server dies without warning; nothing acknowledged may be lost.
    drop(pump);
    drop(app);
    server.kill();
    let server = Server::start_in(data.path(), &[]);
    let http = HttpClient::new(&server);
    let high = http.command(DEVICE, &id("high")).await;
    assert_eq!(high["status"], "ACKNOWLEDGED");
    assert_eq!(high["result"], "SUCCEEDED");
    assert_eq!(high["response"], json!({"took_ms": 12}));
    assert_eq!(
        http.command(DEVICE, &id("short")).await["status"],
        "EXPIRED"
    );
    for kind in ["mid", "low"] {
        assert_eq!(http.command(DEVICE, &id(kind)).await["status"], "DELIVERED");
    }

    // Reconnected, the device gets what was in flight again, with the same ids.
    let mut pump = device(&server, &device_login, DEVICE).await;
    pump.subscribe(&topic::commands(DEVICE)).await;
    let again = next_delivery(&mut pump, DEVICE).await;
    assert_eq!(id_of(&again), id("mid"));
    assert_eq!(
        (&again["attempt"], &again["repeat"]),
        (&json!(1), &json!(true)),
        "a repeat after a reconnect uses no attempt"
    );
    assert_eq!(id_of(&next_delivery(&mut pump, DEVICE).await), id("low"));
    acknowledge(
        &mut pump,
        DEVICE,
        &id("mid"),
        json!({"status": "FAILED", "response": {"error": "busy"}}),
    )
    .await;
    acknowledge(&mut pump, DEVICE, &id("low"), json!({"status": "REJECTED"})).await;
    let mid = http.command(DEVICE, &id("mid")).await;
    assert_eq!(
        (&mid["status"], &mid["result"]),
        (&json!("ACKNOWLEDGED"), &json!("FAILED"))
    );
    let low = http.command(DEVICE, &id("low")).await;
    assert_eq!(low["result"], "REJECTED");
    let steps: Vec<&str> = mid["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["PENDING", "DELIVERED", "DELIVERED", "ACKNOWLEDGED"]);

    // A duplicate idempotency key queues nothing new, even after the restart.
    let (status, replay) = http
        .queue_command(
            DEVICE,
            &json!({"type": "high", "priority": 10, "idempotency_key": "key-high"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(id_of(&replay), id("high"));
    let (_, listing) = http
        .get(&format!("/v1/tenants/default/twins/{DEVICE}/commands"))
        .await;
    assert_eq!(listing["items"].as_array().unwrap().len(), 4);
    pump.expect_silence(
        &topic::command_delivery(DEVICE, &id("high")),
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test]
async fn a_connected_device_gets_commands_at_once_and_again_until_it_acknowledges() {
    let server = Server::start_with(QUICK_RETRIES);
    let http = HttpClient::new(&server);
    let (_, mut valve) = listening_device(&server, &http, "valve-2").await;
    let (_, queued) = http
        .queue_command("valve-2", &json!({"type": "close"}))
        .await;
    let first = next_delivery(&mut valve, "valve-2").await;
    assert_eq!(id_of(&first), id_of(&queued));
    assert_eq!(first["attempt"], 1);
    // Not acknowledged: after the timeout it comes again with the same id, then fails.
    let second = next_delivery(&mut valve, "valve-2").await;
    assert_eq!(id_of(&second), id_of(&queued));
    assert_eq!(second["attempt"], 2);
    failed_eventually(&http, "valve-2", &id_of(&queued)).await;
    valve
        .expect_silence(
            &topic::command_delivery("valve-2", &id_of(&queued)),
            Duration::from_millis(1500),
        )
        .await;
}

#[tokio::test]
async fn only_the_device_itself_may_use_its_command_topics() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let owner_login = http.credential("devices/owner").await;
    let other_login = http.credential("devices/other").await;
    let app_login = http.credential("apps/console").await;
    let (_, queued) = http
        .queue_command("owner", &json!({"type": "reboot"}))
        .await;
    let id = id_of(&queued);

    let mut app = login(server.mqtt, "console", &app_login.0, &app_login.1).await;
    assert!(
        !app.try_subscribe(&topic::commands("owner")).await,
        "applications follow events, not a device's commands"
    );
    assert!(!app.try_subscribe("$doppel/things/#").await);
    assert!(app.try_subscribe("$doppel/events/commands/#").await);

    let mut other = login(server.mqtt, "other", &other_login.0, &other_login.1).await;
    assert!(!other.try_subscribe(&topic::commands("owner")).await);
    assert!(!other.try_subscribe("$doppel/events/commands/#").await);
    // A forged acknowledgement goes nowhere (MQTT 3.1.1 has no refusal code for it).
    other
        .publish_json(
            &topic::command_ack("owner", &id),
            &json!({"status": "SUCCEEDED"}),
        )
        .await;
    other.acked().await;
    assert_eq!(http.command("owner", &id).await["status"], "PENDING");

    let mut owner = device(&server, &owner_login, "owner").await;
    owner.subscribe(&topic::commands("owner")).await;
    assert_eq!(id_of(&next_delivery(&mut owner, "owner").await), id);
    // A device cannot forge a delivery to itself either, nor acknowledge with a bad status.
    owner
        .publish_json(
            &topic::command_delivery("owner", "forged"),
            &json!({"type": "x"}),
        )
        .await;
    owner.acked().await;
    let ack = topic::command_ack("owner", &id);
    owner
        .subscribe(&format!("{}/+", topic::command_ack("owner", "+")))
        .await;
    owner.publish_json(&ack, &json!({"status": "DONE"})).await;
    let rejected = owner.recv_on(&format!("{ack}/rejected")).await.json();
    assert_eq!(rejected["code"], 400);
    owner
        .publish_json(
            &topic::command_ack("owner", "no-such-id"),
            &json!({"status": "SUCCEEDED"}),
        )
        .await;
    let unknown = owner
        .recv_on(&topic::command_ack_answer(
            "owner",
            "no-such-id",
            Verdict::Rejected,
        ))
        .await;
    assert_eq!(
        unknown.topic,
        topic::command_ack_answer("owner", "no-such-id", Verdict::Rejected)
    );
    assert_eq!(http.command("owner", &id).await["status"], "DELIVERED");
    owner
        .expect_silence(
            &topic::command_delivery("owner", "forged"),
            Duration::from_millis(300),
        )
        .await;
}

/// More commands than the MQTT feed buffers (4096 events), queued at once for a listening
/// device: delivery must neither stall nor drop any.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_larger_than_the_feed_buffer_is_delivered_whole() {
    const BURST: usize = 5000;
    const CONCURRENT: usize = 32;
    let server = Server::start_with(&["--commands-max-open", "10000"]);
    let http = std::sync::Arc::new(HttpClient::new(&server));
    let (_, mut burst) = listening_device(&server, &http, "burst-1").await;
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..CONCURRENT {
        let http = http.clone();
        senders.spawn(async move {
            for n in (sender..BURST).step_by(CONCURRENT) {
                http.queue_command("burst-1", &json!({"type": "tick", "payload": {"n": n}}))
                    .await;
            }
        });
    }
    let mut received = std::collections::HashSet::new();
    while received.len() < BURST {
        let command = next_delivery(&mut burst, "burst-1").await;
        received.insert(command["payload"]["n"].as_u64().expect("n"));
    }
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }
    assert_eq!(received.len(), BURST);
}

/// A device whose session the broker keeps while it is away gets nothing while away (each
/// delivery would count as an attempt), and everything when it is back.
#[tokio::test]
async fn attempts_do_not_run_out_while_a_device_with_a_kept_session_is_away() {
    let server = Server::start_with(QUICK_RETRIES);
    let http = HttpClient::new(&server);
    let login_pair = http.credential("devices/rover-3").await;
    let kept = || Options {
        credentials: Some(login_pair.clone()),
        clean_session: false,
        ..Options::default()
    };
    let mut rover = connect_with(server.mqtt, "rover-3", kept())
        .await
        .expect("connected");
    rover.subscribe(&topic::commands("rover-3")).await;
    let (_, queued) = http
        .queue_command("rover-3", &json!({"type": "photo"}))
        .await;
    assert_eq!(next_delivery(&mut rover, "rover-3").await["attempt"], 1);
    rover.disconnect().await;
    let (_, while_away) = http
        .queue_command("rover-3", &json!({"type": "park"}))
        .await;
    // What is under test is that nothing happens while the rover is away, so there is no event
    // to wait for: real time must pass, three of QUICK_RETRIES's acknowledgement timeouts.
    tokio::time::sleep(AWAY_FOR_THREE_ACK_TIMEOUTS).await;
    let photo = http.command("rover-3", &id_of(&queued)).await;
    assert_eq!(
        (&photo["status"], &photo["attempts"]),
        (&json!("DELIVERED"), &json!(1))
    );
    assert_eq!(
        http.command("rover-3", &id_of(&while_away)).await["status"],
        "PENDING"
    );
    let mut rover = connect_with(server.mqtt, "rover-3", kept())
        .await
        .expect("connected again");
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(id_of(&next_delivery(&mut rover, "rover-3").await));
    }
    got.sort();
    let mut expected = vec![id_of(&queued), id_of(&while_away)];
    expected.sort();
    assert_eq!(got, expected);
    acknowledge(
        &mut rover,
        "rover-3",
        &id_of(&queued),
        json!({"status": "SUCCEEDED"}),
    )
    .await;
    assert_eq!(
        http.command("rover-3", &id_of(&queued)).await["status"],
        "ACKNOWLEDGED"
    );
}

/// The flapping link: every reconnect (and every other client of the device that
/// subscribes to its commands, such as an edge agent beside a local client) repeats what is in
/// flight, and none of those repeats may use up the attempts.
#[tokio::test]
async fn reconnects_and_other_subscribers_repeat_a_command_without_spending_its_attempts() {
    let server = Server::start_with(&[
        "--commands-ack-timeout",
        "60s",
        "--commands-max-attempts",
        "2",
    ]);
    let http = HttpClient::new(&server);
    let (login_pair, mut flap) = listening_device(&server, &http, "flap-4").await;
    let (_, queued) = http
        .queue_command("flap-4", &json!({"type": "reboot"}))
        .await;
    let first = next_delivery(&mut flap, "flap-4").await;
    assert_eq!(
        (&first["attempt"], &first["repeat"]),
        (&json!(1), &json!(false))
    );
    for reconnect in 1..=4 {
        flap.disconnect().await;
        flap = device(&server, &login_pair, "flap-4").await;
        flap.subscribe(&topic::commands("flap-4")).await;
        let again = next_delivery(&mut flap, "flap-4").await;
        assert_eq!(id_of(&again), id_of(&queued), "reconnect {reconnect}");
        assert_eq!(
            (&again["attempt"], &again["repeat"]),
            (&json!(1), &json!(true)),
            "reconnect {reconnect}"
        );
    }
    let mut beside = device(&server, &login_pair, "flap-4-beside").await;
    beside.subscribe(&topic::commands("flap-4")).await;
    assert_eq!(
        id_of(&next_delivery(&mut beside, "flap-4").await),
        id_of(&queued)
    );
    // The repeats (for the other client's connection and for its subscription) go to every
    // subscriber of the device's commands.
    assert_eq!(
        id_of(&next_delivery(&mut flap, "flap-4").await),
        id_of(&queued)
    );
    let command = http.command("flap-4", &id_of(&queued)).await;
    assert_eq!(command["status"], "DELIVERED", "{command}");
    assert_eq!(command["attempts"], 1, "{command}");
    assert!(
        command["reconnect_deliveries"].as_u64() >= Some(5),
        "{command}"
    );
    let ack = topic::command_ack("flap-4", &id_of(&queued));
    beside.subscribe(&format!("{ack}/+")).await;
    beside
        .publish_json(&ack, &json!({"status": "SUCCEEDED"}))
        .await;
    let mut answer = beside.recv_any().await;
    for _ in 0..3 {
        if answer.topic != topic::command_delivery("flap-4", &id_of(&queued)) {
            break;
        }
        answer = beside.recv_any().await;
    }
    assert_eq!(
        answer.topic,
        topic::command_ack_answer("flap-4", &id_of(&queued), Verdict::Accepted)
    );
    assert_eq!(answer.json()["status"], "ACKNOWLEDGED");
}

/// A device (or an edge agent) that acts on a command after the hub gave up on it: the
/// acknowledgement is accepted and kept, the status stays FAILED, and applications hear of it.
#[tokio::test]
async fn a_late_acknowledgement_of_a_failed_command_is_kept_and_announced() {
    let server = Server::start_with(QUICK_RETRIES);
    let http = HttpClient::new(&server);
    let (_, mut late) = listening_device(&server, &http, "late-5").await;
    let app_login = http.credential("apps/watch").await;
    let mut app = login(server.mqtt, "watch", &app_login.0, &app_login.1).await;
    app.subscribe(&topic::command_event("late-5", "+")).await;
    let (_, queued) = http
        .queue_command("late-5", &json!({"type": "photo"}))
        .await;
    let id = id_of(&queued);
    for attempt in 1..=2 {
        assert_eq!(next_delivery(&mut late, "late-5").await["attempt"], attempt);
    }
    let failed = failed_eventually(&http, "late-5", &id).await;
    assert_eq!(failed["acknowledged_late_at"], Value::Null);

    let accepted = acknowledge(
        &mut late,
        "late-5",
        &id,
        json!({"status": "SUCCEEDED", "response": {"photo": "p1.jpg"}}),
    )
    .await;
    assert_eq!(
        accepted["status"], "FAILED",
        "what applications were told stays"
    );
    assert_eq!(accepted["result"], "SUCCEEDED");
    assert!(accepted["acknowledged_late_at"].is_string(), "{accepted}");
    let event = app
        .recv_json(&topic::command_event("late-5", "acknowledged_late"))
        .await;
    assert_eq!(event["event"], "command.acknowledged_late");
    assert_eq!(event["command"]["response"], json!({"photo": "p1.jpg"}));
    let stored = http.command("late-5", &id).await;
    assert_eq!(
        (&stored["status"], &stored["result"]),
        (&json!("FAILED"), &json!("SUCCEEDED"))
    );

    // One late acknowledgement only.
    let again = acknowledge_answered(
        &mut late,
        "late-5",
        &id,
        json!({"status": "FAILED"}),
        Verdict::Rejected,
    )
    .await;
    assert_eq!(again["code"], 409);
}
