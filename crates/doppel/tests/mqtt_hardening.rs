//! The attacks of issue 13 on the MQTT and HTTP listeners, each reproduced against the real
//! binary: session takeover and kick-outs through a client id, sockets that never finish a
//! handshake, a subscriber that never reads, too many connections, and the CONNECT packets and
//! retained requests MQTT or AWS IoT forbid.

mod common;

use common::http::HttpClient;
use common::metrics::Scrape;
use common::mqtt::{self, Mqtt, Options, WAIT};
use common::raw;
use common::topic::{self, ShadowOp};
use common::{Server, closed_by_server};
use rumqttc::ConnectReturnCode;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits to be sure that something does not arrive.
const QUIET: Duration = Duration::from_secs(1);

async fn login(
    server: &Server,
    client_id: &str,
    (user, password): &(String, String),
    clean: bool,
) -> Mqtt {
    let options = Options {
        credentials: Some((user.clone(), password.clone())),
        clean_session: clean,
        ..Options::default()
    };
    mqtt::connect_with(server.mqtt, client_id, options)
        .await
        .unwrap_or_else(|code| panic!("{user} as {client_id} refused: {code:?}"))
}

async fn twin_status(http: &HttpClient, device: &str) -> String {
    let twin = http.twin(device).await;
    twin["connection"]["status"]
        .as_str()
        .expect("a connection status")
        .to_owned()
}

#[tokio::test]
async fn a_client_id_neither_kicks_out_nor_takes_over_another_principals_session() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let victim = http.credential("devices/pump-7").await;
    let other_tenant = http.credential_in("t1", "devices/pump-9").await;
    let same_tenant = http.credential("devices/pump-8").await;

    // Kick-outs: the victim stays connected while others use its client id.
    let mut device = login(&server, "pump-7", &victim, true).await;
    device.subscribe(&topic::delta("pump-7")).await;
    for attacker in [&other_tenant, &same_tenant] {
        let intruder = login(&server, "pump-7", attacker, true).await;
        assert!(!intruder.session_present);
        http.patch_desired("pump-7", &json!({"valve": attacker.0}))
            .await;
        let delta = device.recv_json(&topic::delta("pump-7")).await;
        assert_eq!(delta["state"]["valve"], json!(attacker.0));
        assert!(device.is_open(), "{} kicked the victim out", attacker.0);
        drop(intruder);
    }
    assert_eq!(twin_status(&http, "pump-7").await, "CONNECTED");

    // Takeover: the victim's kept session, with a queued command and a delta waiting in it, is
    // resumed by nobody else.
    device
        .subscribe(&topic::command_delivery("pump-7", "#"))
        .await;
    device.disconnect().await;
    let device = login(&server, "pump-7", &victim, false).await;
    let mut device = device;
    device.subscribe(&topic::delta("pump-7")).await;
    device
        .subscribe(&topic::command_delivery("pump-7", "#"))
        .await;
    device.disconnect().await;
    http.queue_command(
        "pump-7",
        &json!({"type": "unlock", "payload": {"pin": "4321"}}),
    )
    .await;
    http.patch_desired("pump-7", &json!({"door": "open"})).await;
    for attacker in [&other_tenant, &same_tenant] {
        let mut intruder = login(&server, "pump-7", attacker, false).await;
        assert!(
            !intruder.session_present,
            "{} resumed the victim's session",
            attacker.0
        );
        intruder.expect_nothing(QUIET).await;
        intruder.disconnect().await;
    }
    let mut device = login(&server, "pump-7", &victim, false).await;
    assert!(device.session_present, "the victim's own session was kept");
    let command = device
        .recv_where("the command", |topic| {
            topic.starts_with(&topic::command_delivery("pump-7", ""))
        })
        .await;
    assert_eq!(command.json()["payload"]["pin"], "4321");
}

#[tokio::test]
async fn sockets_that_never_finish_a_handshake_are_closed() {
    let server = Server::start_with(&[
        "--mqtt-connect-timeout",
        "1s",
        "--http-header-timeout",
        "1s",
    ]);
    let http = server.http_addr();
    let mut silent_mqtt = Vec::new();
    let mut silent_http = Vec::new();
    let mut slow_http = Vec::new();
    for _ in 0..20 {
        silent_mqtt.push(TcpStream::connect(server.mqtt).await.expect("connect"));
        silent_http.push(TcpStream::connect(http).await.expect("connect"));
        let mut slow = TcpStream::connect(http).await.expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        slow_http.push(slow);
    }
    // A header byte every 300 ms keeps a slow client busy, but not past the header timeout.
    let dribble = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for slow in &mut slow_http {
                let _ = slow.write_all(b"X").await;
            }
        }
        slow_http
    });
    for (kind, sockets) in [("MQTT", &mut silent_mqtt), ("HTTP", &mut silent_http)] {
        for socket in sockets.iter_mut() {
            assert!(
                closed_by_server(socket, Duration::from_secs(8)).await,
                "a silent {kind} socket was still open"
            );
        }
    }
    let mut slow_http = dribble.await.expect("the dribbling task");
    for socket in &mut slow_http {
        assert!(
            closed_by_server(socket, Duration::from_secs(1)).await,
            "a slow-header HTTP socket was still open"
        );
    }
}

/// Raises this test process's own open-files limit, so that it can hold the sockets it floods
/// with.
fn allow_many_sockets() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("limits");
    rlimit::increase_nofile_limit(hard).expect("raise the soft open-files limit");
}

/// Opens `count` sockets to `addr` that send nothing; the kernel completes connects for a
/// listener that does not accept, up to its backlog, so all of them are counted either way.
async fn flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(socket)) => sockets.push(socket),
            // Past the backlog a connect hangs or is refused: the flood is as large as it gets.
            _ => break,
        }
    }
    sockets
}

#[tokio::test]
async fn a_flood_of_idle_sockets_on_one_listener_leaves_the_other_serving() {
    allow_many_sockets();
    // 512 open files, as the attack had; timeouts long enough that the flood stays.
    let server = Server::start_with_open_files(
        512,
        &[
            "--mqtt-connect-timeout",
            "60s",
            "--http-header-timeout",
            "60s",
            "--mqtt-allow-anonymous",
            "true",
        ],
    );
    let http = HttpClient::new(&server);
    let mqtt_flood = flood(server.mqtt, 600).await;
    let (status, _) = tokio::time::timeout(WAIT, http.get("/healthz"))
        .await
        .expect("HTTP answers during an MQTT flood");
    assert!(status.is_success());
    drop(mqtt_flood);

    let http_flood = flood(server.http_addr(), 600).await;
    let device = tokio::time::timeout(WAIT, mqtt::connect(server.mqtt, "pump-1"))
        .await
        .expect("an MQTT login succeeds during an HTTP flood");
    device.disconnect().await;
    drop(http_flood);
}

/// The resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A client that subscribes to `filter` over a socket with a tiny receive buffer and then
/// never reads again.
async fn reader_that_stops(addr: SocketAddr, client_id: &str, filter: &str, qos: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(&raw::connect(client_id, 4, None))
        .await
        .expect("CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.expect("CONNACK");
    assert_eq!(connack[3], 0, "connection accepted");
    stream
        .write_all(&raw::subscribe(filter, qos))
        .await
        .expect("SUBSCRIBE");
    let mut suback = [0u8; 5];
    stream.read_exact(&mut suback).await.expect("SUBACK");
    assert_eq!(suback[4], qos, "subscription granted");
    stream
}

#[tokio::test]
async fn a_subscriber_that_never_reads_costs_a_bounded_queue_then_its_session() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    let _qos0 = reader_that_stops(server.mqtt, "sink-0", "flood/#", 0).await;
    let qos1 = reader_that_stops(server.mqtt, "sink-1", "flood/#", 1).await;
    let publisher = mqtt::connect(server.mqtt, "source").await;
    let before = resident_bytes(server.pid());
    let message = vec![b'x'; 60_000];
    for i in 0..2_000 {
        // QoS 0 messages first (dropped for both sinks), then QoS 1 ones (which end sink-1's
        // session: a message reaches a subscriber at the lower of the two QoS).
        let qos = if i < 1_000 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        };
        publisher
            .client
            .publish(format!("flood/{}", i % 8), qos, false, message.clone())
            .await
            .expect("queue a publish");
        if i % 100 == 99 {
            // Let the broker keep up, so that what piles up is what waits for the sinks.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    common::eventually("dropping and disconnecting for the sinks", WAIT, || async {
        let scrape = Scrape::take(&server).await;
        scrape.value(
            "doppel_mqtt_messages_dropped_total",
            &[("reason", "queue_full")],
        ) > 0.0
            && scrape.value("doppel_mqtt_slow_clients_disconnected_total", &[]) >= 1.0
    })
    .await;
    let grown = resident_bytes(server.pid()).saturating_sub(before);
    // 120 MB went to each sink; without a bound the hub held most of it (737 MiB in the
    // attack). The default bound is 4 MiB and 1,000 messages per session.
    assert!(
        grown < 32 * 1024 * 1024,
        "the hub grew by {} MiB for two clients that never read",
        grown / (1024 * 1024)
    );
    drop(qos1);
}

#[tokio::test]
async fn connections_beyond_mqtt_max_connections_are_refused() {
    let server = Server::start_with(&[
        "--mqtt-allow-anonymous",
        "true",
        "--mqtt-max-connections",
        "5",
    ]);
    let mut held = Vec::new();
    for i in 0..5 {
        held.push(mqtt::connect(server.mqtt, &format!("pump-{i}")).await);
    }
    let refused = mqtt::connect_with(server.mqtt, "pump-5", Options::default()).await;
    assert!(
        matches!(refused, Err(ConnectReturnCode::ServiceUnavailable)),
        "{:?}",
        refused.err()
    );
    let refused5 = connack_code(server.mqtt, &raw::connect("pump-5", 5, None)).await;
    assert_eq!(refused5, 0x97, "MQTT 5: quota exceeded");
    // A place that frees up can be taken again.
    held.pop().expect("a held connection").disconnect().await;
    common::eventually("a freed place to be taken", WAIT, || async {
        mqtt::connect_with(server.mqtt, "pump-5", Options::default())
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn one_credential_holds_at_most_mqtt_max_connections_per_principal_sessions() {
    let server = Server::start_with(&["--mqtt-max-connections-per-principal", "2"]);
    let http = HttpClient::new(&server);
    let leaked = http.credential("devices/pump-7").await;
    let neighbour = http.credential("devices/pump-8").await;
    let mut held = vec![
        login(&server, "pump-7", &leaked, true).await,
        login(&server, "spare", &leaked, true).await,
    ];
    let options = Options {
        credentials: Some(leaked.clone()),
        ..Options::default()
    };
    let refused = mqtt::connect_with(server.mqtt, "third", options.clone()).await;
    assert!(
        matches!(refused, Err(ConnectReturnCode::ServiceUnavailable)),
        "{:?}",
        refused.err()
    );
    let (user, password) = (&leaked.0, &leaked.1);
    let refused5 = connack_code(
        server.mqtt,
        &raw::connect("third", 5, Some((user.as_str(), password.as_str()))),
    )
    .await;
    assert_eq!(refused5, 0x97, "MQTT 5: quota exceeded");
    // Its own session can be taken over, and another device is not held back.
    let taken_over = login(&server, "pump-7", &leaked, true).await;
    let _neighbour = login(&server, "pump-8", &neighbour, true).await;
    assert_eq!(twin_status(&http, "pump-7").await, "CONNECTED");
    // A session that ends frees its place.
    held.pop().expect("a held connection").disconnect().await;
    common::eventually("a freed place to be taken", WAIT, || async {
        mqtt::connect_with(server.mqtt, "third", options.clone())
            .await
            .is_ok()
    })
    .await;
    drop(taken_over);
}

/// Sends `packet` as the first packet of a connection and returns the CONNACK's return code.
async fn connack_code(addr: SocketAddr, packet: &[u8]) -> u8 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(packet).await.expect("CONNECT");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("a CONNACK")
        .expect("read CONNACK");
    assert_eq!(connack[0], 0x20, "a CONNACK: {connack:?}");
    connack[3]
}

#[tokio::test]
async fn a_nul_in_the_client_id_and_mqtt_3_1_are_refused() {
    let server = Server::start_with(&["--mqtt-allow-anonymous", "true"]);
    // 2: identifier rejected (MQTT-1.5.3-2 forbids U+0000).
    assert_eq!(
        connack_code(server.mqtt, &raw::connect("pump\0-7", 4, None)).await,
        2
    );
    // 1: unacceptable protocol version (level 3 under the name MQTT).
    assert_eq!(
        connack_code(server.mqtt, &raw::connect("pump-7", 3, None)).await,
        1
    );
    assert_eq!(
        connack_code(server.mqtt, &raw::connect("pump-7", 4, None)).await,
        0
    );
}

#[tokio::test]
async fn a_retained_shadow_request_is_neither_applied_nor_kept() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let device = http.credential("devices/pump-7").await;
    let app = http.credential("apps/watcher").await;
    let client = login(&server, "pump-7", &device, true).await;
    client
        .publish_retained(
            &topic::request("pump-7", ShadowOp::Update),
            br#"{"state": {"reported": {"on": true}}}"#.to_vec(),
        )
        .await;
    let mut watcher = login(&server, "watcher", &app, true).await;
    watcher
        .subscribe(&topic::request("pump-7", ShadowOp::Update))
        .await;
    watcher.expect_nothing(QUIET).await;
    assert_eq!(http.twin("pump-7").await["reported"]["state"], json!({}));
    // The same update, not retained, is applied.
    client
        .publish_json(
            &topic::request("pump-7", ShadowOp::Update),
            &json!({"state": {"reported": {"on": true}}}),
        )
        .await;
    common::eventually("the plain update to be applied", WAIT, || async {
        http.twin("pump-7").await["reported"]["state"] == json!({"on": true})
    })
    .await;
}
