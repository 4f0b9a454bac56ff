//! Devices over MQTT end to end: the real binary on port 0 and a real MQTT client (rumqttc).
//! AWS IoT Device Shadow topics, presence, authentication, ACLs, tenant isolation, and the
//! general broker features devices and applications rely on.

mod common;

use common::Server;
use common::http::HttpClient;
use common::metrics::Scrape;
use common::mqtt::{Mqtt, Options, connect, connect_with, device, login};
use common::topic::{self, ShadowOp};
use rumqttc::ConnectReturnCode;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

const ANONYMOUS: &[&str] = &["--mqtt-allow-anonymous", "true"];

/// Waits (bounded) until the JSON at `path` satisfies `ready`; returns it.
async fn eventually_twin(http: &HttpClient, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    common::eventually_value(
        &format!("{path} becoming ready"),
        common::mqtt::WAIT,
        || async {
            let (_, body) = http.get(path).await;
            if ready(&body) {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await
}

/// Waits (bounded) until the twin at `path` says its device is `status` (`CONNECTED` or
/// `DISCONNECTED`); returns the twin.
async fn eventually_connection(http: &HttpClient, path: &str, status: &str) -> Value {
    eventually_twin(http, path, |t| t["connection"]["status"] == status).await
}

/// Connects `thing` as a device the hub knows (presence changes only twins that exist, so the
/// twin gets a desired state first) and waits until its twin says it is connected.
async fn connect_known_device(http: &HttpClient, server: &Server, thing: &str) -> Mqtt {
    http.patch_desired(thing, &json!({"on": true})).await;
    let device = connect(server.mqtt, thing).await;
    let path = format!("/v1/tenants/default/twins/{thing}");
    eventually_connection(http, &path, "CONNECTED").await;
    device
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_is_accepted_only_once_durable_and_is_the_twin_http_sees() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = device(&server, "pump-1").await;
    let update = json!({"state": {"reported": {"temp": 21, "fan": {"rpm": 900}}, "desired": {"temp": 19}}, "clientToken": "tok-1"});
    pump.publish_json(&topic::request("pump-1", ShadowOp::Update), &update)
        .await;
    let accepted = pump
        .recv_json(&topic::accepted("pump-1", ShadowOp::Update))
        .await;
    // The twin is readable over HTTP the moment the answer is out.
    let (status, twin) = http.get("/v1/tenants/default/twins/pump-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        twin["reported"]["state"],
        json!({"temp": 21, "fan": {"rpm": 900}})
    );
    assert_eq!(accepted["version"], twin["shadow_version"]);
    assert_eq!(accepted["state"], update["state"]);
    assert_eq!(accepted["clientToken"], "tok-1");
    let seconds = accepted["timestamp"].as_i64().unwrap();
    assert!(
        (1_700_000_000..4_000_000_000).contains(&seconds),
        "AWS timestamps are seconds: {seconds}"
    );
    assert_eq!(
        accepted["metadata"]["reported"]["fan"]["rpm"]["timestamp"],
        seconds
    );
    assert_eq!(
        accepted["metadata"]["desired"]["temp"]["timestamp"],
        seconds
    );

    let delta = pump.recv_json(&topic::delta("pump-1")).await;
    assert_eq!(delta["state"], json!({"temp": 19}));
    assert_eq!(delta["clientToken"], "tok-1");
    let documents = pump.recv_json(&topic::documents("pump-1")).await;
    assert_eq!(documents["current"]["state"]["reported"]["temp"], 21);
    assert_eq!(documents["current"]["version"], accepted["version"]);

    pump.publish(
        &topic::request("pump-1", ShadowOp::Get),
        r#"{"clientToken":"g"}"#,
    )
    .await;
    let got = pump
        .recv_json(&topic::accepted("pump-1", ShadowOp::Get))
        .await;
    assert_eq!(got["state"]["delta"], json!({"temp": 19}));
    assert_eq!(got["state"]["desired"], json!({"temp": 19}));
    assert_eq!(got["clientToken"], "g");

    // `null` deletes a property; `"desired": null` clears desired.
    pump.publish_json(
        &topic::request("pump-1", ShadowOp::Update),
        &json!({"state": {"reported": {"fan": null}, "desired": null}}),
    )
    .await;
    pump.recv_json(&topic::accepted("pump-1", ShadowOp::Update))
        .await;
    let (_, twin) = http.get("/v1/tenants/default/twins/pump-1").await;
    assert_eq!(twin["reported"]["state"], json!({"temp": 21}));
    assert_eq!(twin["desired"]["state"], json!({}));

    pump.publish(&topic::request("pump-1", ShadowOp::Delete), "")
        .await;
    let deleted = pump
        .recv_json(&topic::accepted("pump-1", ShadowOp::Delete))
        .await;
    // Shadow versions: the first update, the clearing update, then the delete; the presence
    // write in between moved only the document version.
    assert_eq!(
        deleted["version"],
        accepted["version"].as_u64().unwrap() + 2
    );
    let (status, _) = http.get("/v1/tenants/default/twins/pump-1").await;
    assert_eq!(status, 404);
}

/// A connection that streams updates without waiting for their answers (a gateway, a bridge,
/// `mosquitto_pub -l`) has them applied in the order sent and answered in that order, a refused
/// one included, and a read it sends after them sees them all.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_streaming_updates_has_them_applied_and_answered_in_order() {
    const UPDATES: u64 = 300;
    // Expects version 1 when the shadow is far past it: refused, and the rest still apply.
    const CONFLICTING: u64 = 150;
    let server = Server::start_with(ANONYMOUS);
    let mut device = device(&server, "stream-1").await;
    let before = Scrape::take(&server).await;
    let update = topic::request("stream-1", ShadowOp::Update);
    for seq in 0..UPDATES {
        let mut body =
            json!({"state": {"reported": {"seq": seq}}, "clientToken": format!("t-{seq}")});
        if seq == CONFLICTING {
            body["version"] = json!(1);
        }
        device.publish_json(&update, &body).await;
    }
    device
        .publish_json(
            &topic::request("stream-1", ShadowOp::Get),
            &json!({"clientToken": "read"}),
        )
        .await;

    let accepted = topic::accepted("stream-1", ShadowOp::Update);
    let rejected = topic::rejected("stream-1", ShadowOp::Update);
    for seq in 0..UPDATES {
        let answer = device
            .recv_where("an update's answer", |t| t == accepted || t == rejected)
            .await;
        let body = answer.json();
        assert_eq!(
            body["clientToken"],
            format!("t-{seq}"),
            "answers come in the order of the requests"
        );
        if seq == CONFLICTING {
            assert_eq!(answer.topic, rejected, "{body}");
            assert_eq!(body["code"], 409, "{body}");
        } else {
            assert_eq!(answer.topic, accepted, "{body}");
            // Applied in the order sent: each accepted update is the shadow's next version.
            let applied = if seq < CONFLICTING { seq + 1 } else { seq };
            assert_eq!(body["version"], applied, "{body}");
        }
    }
    let read = device
        .recv_json(&topic::accepted("stream-1", ShadowOp::Get))
        .await;
    assert_eq!(read["clientToken"], "read");
    assert_eq!(read["state"]["reported"]["seq"], UPDATES - 1);
    assert_eq!(read["version"], UPDATES - 1);

    // A hook that waited for each commit before the connection's next message was read would
    // give every update a commit of its own. Not waiting, the stream shares group commits; how
    // many depends on the disk and the machine (a third to a half of the updates here and on
    // CI), so the bound is only that some were shared.
    let after = Scrape::take(&server).await;
    let commits = after.value("doppel_store_commit_writes_count", &[])
        - before.value("doppel_store_commit_writes_count", &[]);
    assert!(
        commits < UPDATES as f64,
        "{UPDATES} streamed updates took {commits} commits: none shared a group commit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_rejected_with_aws_codes_and_change_nothing() {
    let server = Server::start_with(&[
        "--mqtt-allow-anonymous",
        "true",
        "--limits-max-document-bytes",
        "1024",
        "--limits-max-depth",
        "3",
    ]);
    let http = HttpClient::new(&server);
    let mut pump = device(&server, "pump-2").await;
    let rejected = topic::rejected("pump-2", ShadowOp::Update);

    pump.publish(&topic::request("pump-2", ShadowOp::Get), "")
        .await;
    let missing = pump
        .recv_json(&topic::rejected("pump-2", ShadowOp::Get))
        .await;
    assert_eq!(
        (missing["code"].as_u64(), missing["message"].as_str()),
        (Some(404), Some("No shadow exists with name: 'pump-2'"))
    );
    pump.publish(&topic::request("pump-2", ShadowOp::Delete), "")
        .await;
    assert_eq!(
        pump.recv_json(&topic::rejected("pump-2", ShadowOp::Delete))
            .await["code"],
        404
    );

    let cases: [(&str, u64, &str); 5] = [
        ("{not json", 400, "Invalid JSON"),
        (
            r#"{"clientToken":"c1"}"#,
            400,
            "Missing required node: state",
        ),
        (
            r#"{"state": 5, "clientToken":"c1"}"#,
            400,
            "State node must be an object",
        ),
        (
            r#"{"state": {"reported": {"a": {"b": {"c": {"d": 1}}}}}, "clientToken":"c1"}"#,
            400,
            "JSON contains too many levels of nesting; maximum is 3",
        ),
        (
            r#"{"state": {"reported": {"a": 1}}, "version": 7, "clientToken":"c1"}"#,
            409,
            "Version conflict",
        ),
    ];
    for (payload, code, message) in cases {
        pump.publish(&topic::request("pump-2", ShadowOp::Update), payload)
            .await;
        let error = pump.recv_json(&rejected).await;
        assert_eq!(error["code"], code, "{payload} -> {error}");
        assert_eq!(error["message"], message, "{payload} -> {error}");
        if payload.contains("c1") {
            assert_eq!(error["clientToken"], "c1", "{payload} -> {error}");
        }
    }
    let big = json!({"state": {"reported": {"blob": "x".repeat(2000)}}});
    pump.publish_json(&topic::request("pump-2", ShadowOp::Update), &big)
        .await;
    assert_eq!(pump.recv_json(&rejected).await["code"], 413);
    let (status, _) = http.get("/v1/tenants/default/twins/pump-2").await;
    assert_eq!(status, 404, "no rejected request may create the twin");

    // An update at the current version applies; the same version again conflicts.
    let first = pump
        .update_accepted("pump-2", r#"{"state":{"reported":{"a":1}}}"#)
        .await;
    let version = first["version"].as_u64().unwrap();
    let conditional = json!({"state": {"reported": {"a": 2}}, "version": version});
    pump.publish_json(&topic::request("pump-2", ShadowOp::Update), &conditional)
        .await;
    assert_eq!(
        pump.recv_json(&topic::accepted("pump-2", ShadowOp::Update))
            .await["version"],
        version + 1
    );
    pump.publish_json(&topic::request("pump-2", ShadowOp::Update), &conditional)
        .await;
    assert_eq!(pump.recv_json(&rejected).await["code"], 409);
    let (_, twin) = http.get("/v1/tenants/default/twins/pump-2").await;
    assert_eq!(twin["reported"]["state"]["a"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn desired_changes_over_http_reach_the_device_and_are_resent_after_a_reconnect() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = device(&server, "pump-3").await;
    http.patch_desired("pump-3", &json!({"speed": 3, "mode": "eco"}))
        .await;
    let delta = pump.recv_json(&topic::delta("pump-3")).await;
    assert_eq!(delta["state"], json!({"speed": 3, "mode": "eco"}));
    assert!(delta["metadata"]["speed"]["timestamp"].is_i64());

    // Removing a desired key that was still pending tells the device to forget it.
    http.patch_desired("pump-3", &json!({"mode": null})).await;
    let delta = pump.recv_json(&topic::delta("pump-3")).await;
    assert_eq!(delta["state"], json!({"speed": 3, "mode": null}));

    // Away while desired changes: the delta comes again on the device's next subscription.
    drop(pump);
    http.patch_desired("pump-3", &json!({"speed": 5})).await;
    let mut pump = connect(server.mqtt, "pump-3").await;
    pump.subscribe(&topic::delta("pump-3")).await;
    let delta = pump.recv_json(&topic::delta("pump-3")).await;
    assert_eq!(delta["state"], json!({"speed": 5}));

    // Reporting the desired value ends the delta: no delta message for that.
    pump.publish(
        &topic::request("pump-3", ShadowOp::Update),
        r#"{"state":{"reported":{"speed":5}}}"#,
    )
    .await;
    pump.expect_silence(&topic::delta("pump-3"), Duration::from_millis(500))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_session_gets_the_delta_on_reconnect_without_subscribing_again() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let kept = || Options {
        clean_session: false,
        ..Options::default()
    };
    let mut pump = connect_with(server.mqtt, "pump-4", kept()).await.unwrap();
    pump.subscribe(&topic::delta("pump-4")).await;
    pump.disconnect().await;
    http.patch_desired("pump-4", &json!({"valve": "open"}))
        .await;
    let mut pump = connect_with(server.mqtt, "pump-4", kept()).await.unwrap();
    let delta = pump.recv_json(&topic::delta("pump-4")).await;
    assert_eq!(delta["state"]["valve"], "open");
}

#[tokio::test(flavor = "multi_thread")]
async fn named_shadows_are_twins_of_their_own() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = connect(server.mqtt, "pump-5").await;
    pump.subscribe(&topic::named_everything("pump-5", "config"))
        .await;
    pump.publish(
        &topic::named_request("pump-5", "config", ShadowOp::Update),
        r#"{"state":{"desired":{"interval":60}}}"#,
    )
    .await;
    pump.recv_json(&topic::named_accepted("pump-5", "config", ShadowOp::Update))
        .await;
    assert_eq!(
        pump.recv_json(&topic::named_delta("pump-5", "config"))
            .await["state"],
        json!({"interval": 60})
    );
    let (status, twin) = http
        .get("/v1/tenants/default/twins/pump-5/shadows/config")
        .await;
    assert_eq!(status, 200);
    assert_eq!(twin["desired"]["state"], json!({"interval": 60}));
    let (status, _) = http
        .get("/v1/tenants/default/twins/pump-5/shadows/config/history")
        .await;
    assert_eq!(status, 200);
    pump.publish(&topic::named_request("pump-5", "config", ShadowOp::Get), "")
        .await;
    assert_eq!(
        pump.recv_json(&topic::named_accepted("pump-5", "config", ShadowOp::Get))
            .await["state"]["desired"]["interval"],
        60
    );
    // The device's classic shadow is untouched: the presence write made it, with no state.
    let (_, classic) = http.get("/v1/tenants/default/twins/pump-5").await;
    assert!(
        classic["desired"]["state"]
            .as_object()
            .is_none_or(|s| s.is_empty()),
        "{classic}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_follows_connects_clean_and_unclean_disconnects_and_keepalive_expiry() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut watcher = connect(server.mqtt, "watcher").await;
    watcher.subscribe(&topic::presence_event("+", "+")).await;
    // Presence makes twins only for known devices; anonymous clients need their twin to exist.
    for thing in ["pump-6", "pump-7"] {
        http.patch_desired(thing, &json!({"on": true})).await;
    }
    let path = "/v1/tenants/default/twins/pump-6";

    let pump = connect(server.mqtt, "pump-6").await;
    let event = watcher
        .recv_json(&topic::presence_event("connected", "pump-6"))
        .await;
    assert_eq!(
        (event["eventType"].as_str(), event["clientId"].as_str()),
        (Some("connected"), Some("pump-6"))
    );
    assert!(
        event["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
        "lifecycle timestamps are ms"
    );
    eventually_connection(&http, path, "CONNECTED").await;

    pump.disconnect().await;
    let event = watcher
        .recv_json(&topic::presence_event("disconnected", "pump-6"))
        .await;
    assert_eq!(event["disconnectReason"], "CLIENT_INITIATED_DISCONNECT");
    assert_eq!(event["clientInitiatedDisconnect"], true);
    let twin = eventually_connection(&http, path, "DISCONNECTED").await;
    assert!(twin["connection"]["last_disconnected_at"].is_string());

    // Gone without DISCONNECT: the socket just closes.
    let pump = connect(server.mqtt, "pump-6").await;
    watcher
        .recv_json(&topic::presence_event("connected", "pump-6"))
        .await;
    drop(pump);
    let event = watcher
        .recv_json(&topic::presence_event("disconnected", "pump-6"))
        .await;
    assert_eq!(event["disconnectReason"], "CONNECTION_LOST");
    assert_eq!(event["clientInitiatedDisconnect"], false);
    eventually_connection(&http, path, "DISCONNECTED").await;

    // Silent past its keep-alive (1 s): a raw client that connects and then says nothing.
    let mut silent = std::net::TcpStream::connect(server.mqtt).unwrap();
    silent.write_all(&connect_packet("pump-7", 1)).unwrap();
    let mut connack = [0u8; 4];
    silent.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    watcher
        .recv_json(&topic::presence_event("connected", "pump-7"))
        .await;
    let event = watcher
        .recv_json(&topic::presence_event("disconnected", "pump-7"))
        .await;
    assert_eq!(event["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
    eventually_connection(&http, "/v1/tenants/default/twins/pump-7", "DISCONNECTED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_leaves_the_device_connected() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    http.patch_desired("pump-8", &json!({"on": true})).await;
    let mut watcher = connect(server.mqtt, "watcher-8").await;
    watcher
        .subscribe(&topic::presence_event("+", "pump-8"))
        .await;
    let _first = connect(server.mqtt, "pump-8").await;
    watcher
        .recv_json(&topic::presence_event("connected", "pump-8"))
        .await;
    let _second = connect(server.mqtt, "pump-8").await;
    let event = watcher
        .recv_json(&topic::presence_event("disconnected", "pump-8"))
        .await;
    assert_eq!(event["disconnectReason"], "DUPLICATE_CLIENTID");
    watcher
        .recv_json(&topic::presence_event("connected", "pump-8"))
        .await;
    let path = "/v1/tenants/default/twins/pump-8";
    let (_, twin) = http.get(path).await;
    assert_eq!(twin["connection"]["status"], "CONNECTED", "{twin}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_disconnects_devices_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = connect_known_device(&http, &server, "pump-14").await;
    let path = "/v1/tenants/default/twins/pump-14";
    assert!(
        server.stop(),
        "the hub stops cleanly with a device connected"
    );
    pump.closed().await;
    let server = Server::start_in(dir.path(), ANONYMOUS);
    let http = HttpClient::new(&server);
    let (_, history) = http.get(&format!("{path}/history?kind=connection")).await;
    let entries: Vec<(&str, &str)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let status = entry["state"]["status"].as_str().unwrap();
            (status, entry["change_reason"].as_str().unwrap())
        })
        .collect();
    // Recorded by the stopping hub itself, not by the next start's sweep.
    assert_eq!(
        entries,
        [("CONNECTED", "connected"), ("DISCONNECTED", "disconnected")],
        "{history}"
    );
}

/// A minimal MQTT 3.1.1 CONNECT with a clean session and no credentials.
fn connect_packet(client_id: &str, keep_alive_secs: u16) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02];
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_log_in_with_their_credentials_and_use_only_their_own_topics() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let (user, password) = http.credential_in("acme", "devices/pump-9").await;
    assert_eq!(user, "acme/devices/pump-9");

    let refused = |credentials: Option<(&str, &str)>| Options {
        credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
        ..Options::default()
    };
    let wrong = connect_with(
        server.mqtt,
        "pump-9",
        refused(Some((&user, "not-the-password"))),
    )
    .await;
    assert_eq!(wrong.err(), Some(ConnectReturnCode::BadUserNamePassword));
    let nobody = connect_with(server.mqtt, "pump-9", refused(None)).await;
    assert_eq!(nobody.err(), Some(ConnectReturnCode::NotAuthorized));

    let mut pump = login(server.mqtt, "any-client-id", &user, &password).await;
    // The credential names the thing, whatever the client id.
    pump.subscribe(&topic::everything("pump-9")).await;
    assert!(
        !pump
            .try_subscribe(&topic::accepted("pump-10", ShadowOp::Update))
            .await
    );
    assert!(!pump.try_subscribe(&topic::delta("+")).await);
    pump.update_accepted("pump-9", r#"{"state":{"reported":{"ok":true}}}"#)
        .await;
    let (status, twin) = http.get("/v1/tenants/acme/twins/pump-9").await;
    assert_eq!(status, 200);
    assert_eq!(
        twin["connection"]["status"], "CONNECTED",
        "a device with credentials gets its twin on connect"
    );
    // Publishing to another thing's shadow changes nothing.
    pump.publish(
        &topic::request("pump-10", ShadowOp::Update),
        r#"{"state":{"reported":{"x":1}}}"#,
    )
    .await;
    pump.publish(&topic::request("pump-9", ShadowOp::Get), "")
        .await;
    pump.recv_json(&topic::accepted("pump-9", ShadowOp::Get))
        .await;
    let (status, _) = http.get("/v1/tenants/acme/twins/pump-10").await;
    assert_eq!(status, 404);

    // An application of the tenant may use every thing's topics and sees presence.
    let (app_user, app_password) = http.credential_in("acme", "apps/dashboard").await;
    let mut app = login(server.mqtt, "dashboard-1", &app_user, &app_password).await;
    app.subscribe(&topic::accepted("+", ShadowOp::Update)).await;
    app.subscribe("$aws/events/presence/#").await;
    app.publish(
        &topic::request("pump-10", ShadowOp::Update),
        r#"{"state":{"desired":{"x":1}}}"#,
    )
    .await;
    let accepted = app
        .recv_on(&topic::accepted("pump-10", ShadowOp::Update))
        .await;
    assert_eq!(accepted.json()["state"]["desired"]["x"], 1);
    let (_, twin) = http.get("/v1/tenants/acme/twins/pump-10").await;
    assert_eq!(twin["desired"]["state"]["x"], 1);
    drop(pump);
    app.recv_json(&topic::presence_event("disconnected", "any-client-id"))
        .await;

    // Revoking the credential keeps the device out.
    let (_, list) = http
        .get("/v1/tenants/acme/devices/pump-9/credentials")
        .await;
    let id = list["items"][0]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = http
        .delete(&format!("/v1/tenants/acme/devices/pump-9/credentials/{id}"))
        .await;
    assert_eq!(revoked.status.as_u16(), 204);
    let again = connect_with(server.mqtt, "pump-9", refused(Some((&user, &password)))).await;
    assert_eq!(again.err(), Some(ConnectReturnCode::BadUserNamePassword));
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_never_see_each_other() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let (a_user, a_password) = http.credential_in("tenant-a", "apps/app").await;
    let (b_user, b_password) = http.credential_in("tenant-b", "apps/app").await;
    let (d_user, d_password) = http.credential_in("tenant-a", "devices/pump").await;
    let mut a = login(server.mqtt, "app-a", &a_user, &a_password).await;
    let mut b = login(server.mqtt, "app-b", &b_user, &b_password).await;
    a.subscribe("#").await;
    b.subscribe("#").await;
    b.subscribe("$aws/#").await;
    a.subscribe(&topic::everything("pump")).await;
    let pump = login(server.mqtt, "pump", &d_user, &d_password).await;
    pump.publish("sensors/temp", "21").await;
    pump.publish(
        &topic::request("pump", ShadowOp::Update),
        r#"{"state":{"reported":{"t":1}}}"#,
    )
    .await;
    assert_eq!(a.recv_on("sensors/temp").await.payload, b"21");
    a.recv_on(&topic::accepted("pump", ShadowOp::Update)).await;
    b.expect_silence("sensors/temp", Duration::from_millis(500))
        .await;
    b.expect_silence(
        &topic::accepted("pump", ShadowOp::Update),
        Duration::from_millis(100),
    )
    .await;
    // Naming the broker's internal prefix reaches nothing either.
    b.subscribe("$tenants/tenant-a/n/#").await;
    pump.publish("sensors/temp", "22").await;
    assert_eq!(a.recv_on("sensors/temp").await.payload, b"22");
    b.expect_silence(
        "$tenants/tenant-a/n/sensors/temp",
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_acl_rules_decide_ordinary_topics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doppel.toml");
    std::fs::write(
        &config,
        r#"
[[mqtt.acl]]
permission = "allow"
clients = "anonymous"
topic = "telemetry/{thing}/#"

[[mqtt.acl]]
permission = "deny"
clients = "anonymous"
topic = "telemetry/#"
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let config = config.to_str().unwrap().to_owned();
    let server = Server::start_in(
        &data,
        &["--mqtt-allow-anonymous", "true", "--config", &config],
    );
    let mut pump = connect(server.mqtt, "pump-11").await;
    pump.subscribe("telemetry/pump-11/#").await;
    assert!(
        !pump.try_subscribe("telemetry/+/temp").await,
        "would bring other things' telemetry"
    );
    let other = connect(server.mqtt, "pump-12").await;
    other.publish("telemetry/pump-11/temp", "spoofed").await;
    pump.publish("telemetry/pump-11/temp", "mine").await;
    let message = pump.recv_on("telemetry/pump-11/temp").await;
    assert_eq!(
        message.payload, b"mine",
        "the spoofed publish was delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_keeps_retained_messages_wills_and_offline_messages() {
    let server = Server::start_with(ANONYMOUS);
    let mut publisher = connect(server.mqtt, "publisher").await;
    publisher
        .publish_retained("site/berlin/status", "online")
        .await;
    publisher.acked().await;
    let mut late = connect(server.mqtt, "late").await;
    late.subscribe("site/+/status").await;
    let retained = late.recv_on("site/berlin/status").await;
    assert!(retained.retain);
    assert_eq!(retained.payload, b"online");

    // A last will goes out when its client vanishes.
    let will = Options {
        last_will: Some(("site/berlin/will".into(), "gone".into())),
        ..Options::default()
    };
    let doomed = connect_with(server.mqtt, "doomed", will).await.unwrap();
    late.subscribe("site/berlin/will").await;
    drop(doomed);
    assert_eq!(late.recv_on("site/berlin/will").await.payload, b"gone");

    // A kept session receives what was published while it was away (QoS 1).
    let kept = || Options {
        clean_session: false,
        ..Options::default()
    };
    let mut sleeper = connect_with(server.mqtt, "sleeper", kept()).await.unwrap();
    sleeper.subscribe("jobs/#").await;
    sleeper.disconnect().await;
    publisher.publish("jobs/1", "run").await;
    publisher.acked().await;
    let mut sleeper = connect_with(server.mqtt, "sleeper", kept()).await.unwrap();
    assert_eq!(sleeper.recv_on("jobs/1").await.payload, b"run");
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_violations_close_only_that_connection() {
    let server = Server::start_with(&[
        "--mqtt-allow-anonymous",
        "true",
        "--mqtt-max-packet-bytes",
        "2048",
    ]);
    let mut bystander = connect(server.mqtt, "bystander").await;
    bystander.subscribe("chat/#").await;

    // A packet of a reserved type after CONNECT.
    let mut rogue = std::net::TcpStream::connect(server.mqtt).unwrap();
    rogue.set_read_timeout(Some(common::mqtt::WAIT)).unwrap();
    rogue.write_all(&connect_packet("rogue", 30)).unwrap();
    let mut connack = [0u8; 4];
    rogue.read_exact(&mut connack).unwrap();
    rogue.write_all(&[0xF0, 0x00]).unwrap();
    let mut rest = Vec::new();
    let closed = rogue.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the broker closes the rogue connection: {closed:?}"
    );

    // A packet larger than the limit.
    let mut big = connect(server.mqtt, "big").await;
    big.publish("chat/big", vec![b'x'; 4096]).await;
    big.closed().await;

    let speaker = connect(server.mqtt, "speaker").await;
    speaker.publish("chat/hello", "still here").await;
    assert_eq!(bystander.recv_on("chat/hello").await.payload, b"still here");
    bystander
        .expect_silence("chat/big", Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twins_left_connected_by_a_crash_are_disconnected_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), ANONYMOUS);
    let http = HttpClient::new(&server);
    let _pump = connect_known_device(&http, &server, "pump-13").await;
    let path = "/v1/tenants/default/twins/pump-13";
    server.kill();
    let server = Server::start_in(dir.path(), ANONYMOUS);
    let http = HttpClient::new(&server);
    let twin = eventually_connection(&http, path, "DISCONNECTED").await;
    assert!(twin["connection"]["last_disconnected_at"].is_string());
    let (_, history) = http.get(&format!("{path}/history?kind=connection")).await;
    let last = history["items"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        last["change_reason"],
        "the hub restarted while the device was connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_does_not_move_the_shadow_version() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = device(&server, "pump-15").await;
    let version = pump
        .update_accepted("pump-15", r#"{"state":{"reported":{"n":1}}}"#)
        .await["version"]
        .as_u64()
        .unwrap();
    pump.disconnect().await;
    // Firmware keeps the version of its last accepted update across the reconnect.
    let mut pump = device(&server, "pump-15").await;
    let conditional = json!({"state": {"reported": {"n": 2}}, "version": version});
    pump.publish_json(&topic::request("pump-15", ShadowOp::Update), &conditional)
        .await;
    let accepted = pump
        .recv_json(&topic::accepted("pump-15", ShadowOp::Update))
        .await;
    assert_eq!(accepted["version"], version + 1);
    // The document version counted the presence changes as well.
    let (_, twin) = http.get("/v1/tenants/default/twins/pump-15").await;
    assert_eq!(twin["shadow_version"], version + 1);
    assert!(twin["version"].as_u64().unwrap() > version + 1, "{twin}");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_credential_ends_the_sessions_that_used_it() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let base = "/v1/tenants/acme/devices/pump-16/credentials";
    let create = || async {
        let (status, body) = http.post(base, &json!({})).await;
        assert_eq!(status, 201, "{body}");
        let field = |name: &str| body[name].as_str().unwrap().to_owned();
        (field("username"), field("password"), field("credential_id"))
    };
    let (user, old_password, old_id) = create().await;
    let (_, new_password, _) = create().await;
    let mut on_old = login(server.mqtt, "pump-16-a", &user, &old_password).await;
    let mut on_new = login(server.mqtt, "pump-16-b", &user, &new_password).await;
    on_new
        .subscribe(&topic::accepted("pump-16", ShadowOp::Update))
        .await;
    let removed = http.delete(&format!("{base}/{old_id}")).await;
    assert_eq!(removed.status.as_u16(), 204);
    on_old.closed().await;
    // The session on the remaining credential carries on.
    on_new
        .update_accepted("pump-16", r#"{"state":{"reported":{"ok":1}}}"#)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_device_whose_first_update_makes_its_twin_shows_connected() {
    let server = Server::start_with(ANONYMOUS);
    let http = HttpClient::new(&server);
    let mut pump = device(&server, "pump-17").await;
    pump.update_accepted("pump-17", r#"{"state":{"reported":{"on":true}}}"#)
        .await;
    let path = "/v1/tenants/default/twins/pump-17";
    let (_, twin) = http.get(path).await;
    assert_eq!(twin["connection"]["status"], "CONNECTED", "{twin}");
    assert!(
        twin["connection"]["last_connected_at"].is_string(),
        "{twin}"
    );
    pump.disconnect().await;
    eventually_connection(&http, path, "DISCONNECTED").await;
}

/// A connection's buffers start small (2 KiB to read, empty to write: vendor patch
/// rmqtt-net-0004) and must grow for a packet many times their size, in both directions.
#[tokio::test(flavor = "multi_thread")]
async fn packets_many_times_a_connections_first_buffers_pass_whole_both_ways() {
    let server = Server::start_with(ANONYMOUS);
    let mut pump = device(&server, "pump-big").await;
    let blob: String = (0..50_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let update = json!({"state": {"reported": {"blob": blob}}, "clientToken": "big-1"});
    pump.publish_json(&topic::request("pump-big", ShadowOp::Update), &update)
        .await;
    let accepted = pump
        .recv_json(&topic::accepted("pump-big", ShadowOp::Update))
        .await;
    assert_eq!(accepted["clientToken"], "big-1");
    assert_eq!(accepted["state"]["reported"]["blob"], blob);

    let mut reader = connect(server.mqtt, "bulk-reader").await;
    reader.subscribe("bulk/#").await;
    let writer = connect(server.mqtt, "bulk-writer").await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    writer.publish("bulk/1", payload.clone()).await;
    assert_eq!(reader.recv_on("bulk/1").await.payload, payload);
}
