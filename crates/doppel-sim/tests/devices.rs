//! Simulated devices against a scripted MQTT broker: what each device sends, in which order,
//! and whether the report counts what the broker saw. (The end-to-end test against the real hub
//! is `crates/doppel/tests/sim.rs`.)

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use doppel_netfault::{LinkModel, LinkState};
use doppel_sim::config::thing_name;
use doppel_sim::timing::{connect_offset, link_schedule};
use doppel_sim::{Credentials, ProgressMode, SimConfig, SimError, SimReport};
use doppel_wire::shadow::{self, ShadowAnswer, ShadowOp};
use doppel_wire::topic;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the scripted broker behaves.
#[derive(Clone, Copy)]
struct Script {
    /// The CONNACK code for every CONNECT.
    connack: ConnectReturnCode,
    /// Whether to refuse every subscription.
    refuse_subscriptions: bool,
    /// Whether to PUBACK the devices' publishes.
    puback: bool,
    /// Whether to send each device a delta and a command once it has subscribed.
    deliver: bool,
}

const FRIENDLY: Script = Script {
    connack: ConnectReturnCode::Success,
    refuse_subscriptions: false,
    puback: true,
    deliver: false,
};

/// The delta every device gets when the script delivers.
const DELTA: &str = r#"{"state":{"mode":"boost","light":{"level":7}},"version":3,"timestamp":1}"#;

/// What the broker saw.
#[derive(Default, Debug)]
struct Seen {
    /// Every CONNECT.
    connects: Vec<Connect>,
    /// Every SUBSCRIBE: the client id and the filters, in order.
    subscriptions: Vec<(String, Vec<(String, QoS)>)>,
    /// Every PUBLISH from a device: topic and payload.
    publishes: Vec<(String, Value)>,
    /// Packet ids the devices acknowledged (of the broker's deliveries).
    pubacks: Vec<u16>,
    /// Connections that ended with DISCONNECT.
    clean_disconnects: usize,
    /// Connections that ended without one, after a CONNECT.
    dropped: usize,
    /// Connections that ended before sending anything.
    abandoned: usize,
    /// Connections not ended yet.
    open: usize,
}

/// What the broker saw, and a signal for every connection that ends.
#[derive(Default)]
struct Shared {
    seen: Mutex<Seen>,
    ended: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().expect("not poisoned")
    }

    /// Counts the end of a connection with `count` and wakes whoever waits for it.
    fn end(&self, count: impl FnOnce(&mut Seen)) {
        let mut seen = self.lock();
        count(&mut seen);
        seen.open -= 1;
        self.ended.notify_all();
    }
}

/// A broker on a thread of its own, following a [`Script`].
struct Broker {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Broker {
    fn start(script: Script) -> Broker {
        let shared = Arc::new(Shared::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let ours = Arc::clone(&shared);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
                addr_tx
                    .send(listener.local_addr().expect("an address"))
                    .expect("the test waits");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    ours.lock().open += 1;
                    tokio::spawn(serve(stream, script, Arc::clone(&ours)));
                }
            });
        });
        let addr = addr_rx.recv().expect("the broker starts");
        Broker { addr, shared }
    }

    /// What the broker saw, once every connection it accepted has ended: a run returns as soon
    /// as its devices have sent DISCONNECT, which the broker may not have read yet.
    fn seen(&self) -> MutexGuard<'_, Seen> {
        let (seen, timeout) = self
            .shared
            .ended
            .wait_timeout_while(self.shared.lock(), Duration::from_secs(10), |seen| {
                seen.open > 0
            })
            .expect("not poisoned");
        assert!(!timeout.timed_out(), "connections still open: {seen:?}");
        seen
    }

    /// A configuration of `devices` devices against this broker that reports every 100 ms.
    fn config(&self, devices: u32, duration: Duration) -> SimConfig {
        let mut config = SimConfig::new(self.addr.to_string(), devices);
        config.interval = Duration::from_millis(100);
        config.jitter = Duration::from_millis(20);
        config.duration = duration;
        config
    }
}

async fn serve(mut stream: TcpStream, script: Script, shared: Arc<Shared>) {
    let mut buffer = BytesMut::new();
    let mut thing = String::new();
    loop {
        let packet = match Packet::read(&mut buffer, 1 << 20) {
            Ok(packet) => packet,
            Err(CodecError::InsufficientBytes(_)) => match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => {
                    shared.end(|seen| {
                        if thing.is_empty() {
                            seen.abandoned += 1;
                        } else {
                            seen.dropped += 1;
                        }
                    });
                    return;
                }
                Ok(_) => continue,
            },
            Err(err) => panic!("a device sent a malformed packet: {err}"),
        };
        let mut replies = Vec::new();
        {
            let mut seen = shared.lock();
            match packet {
                Packet::Connect(connect) => {
                    thing = connect.client_id.clone();
                    seen.connects.push(connect);
                    replies.push(Packet::ConnAck(ConnAck::new(script.connack, false)));
                }
                Packet::Subscribe(subscribe) => {
                    let code = if script.refuse_subscriptions {
                        SubscribeReasonCode::Failure
                    } else {
                        SubscribeReasonCode::Success(QoS::AtLeastOnce)
                    };
                    replies.push(Packet::SubAck(SubAck::new(
                        subscribe.pkid,
                        vec![code; subscribe.filters.len()],
                    )));
                    seen.subscriptions.push((
                        thing.clone(),
                        subscribe
                            .filters
                            .into_iter()
                            .map(|filter| (filter.path, filter.qos))
                            .collect(),
                    ));
                    if script.deliver {
                        let mut delta = Publish::new(
                            shadow::answer(&thing, None, ShadowAnswer::Delta),
                            QoS::AtLeastOnce,
                            DELTA,
                        );
                        delta.pkid = 100;
                        let mut command = Publish::new(
                            topic::command_delivery(&thing, "cmd-1"),
                            QoS::AtLeastOnce,
                            r#"{"id":"cmd-1","type":"reboot","payload":{},"attempt":1}"#,
                        );
                        command.pkid = 101;
                        replies.extend([Packet::Publish(command), Packet::Publish(delta)]);
                    }
                }
                Packet::Publish(publish) => {
                    let payload = serde_json::from_slice(&publish.payload).expect("JSON");
                    seen.publishes.push((publish.topic.clone(), payload));
                    if publish.qos == QoS::AtLeastOnce && script.puback {
                        replies.push(Packet::PubAck(PubAck::new(publish.pkid)));
                    }
                }
                Packet::PubAck(ack) => seen.pubacks.push(ack.pkid),
                Packet::PingReq => replies.push(Packet::PingResp),
                Packet::Disconnect => {
                    drop(seen);
                    shared.end(|seen| seen.clean_disconnects += 1);
                    return;
                }
                other => panic!("a device sent {other:?}"),
            }
        }
        for reply in replies {
            let mut bytes = BytesMut::new();
            reply.write(&mut bytes, 1 << 20).expect("encodable");
            if stream.write_all(&bytes).await.is_err() {
                shared.end(|seen| seen.dropped += 1);
                return;
            }
        }
    }
}

fn run(config: &SimConfig) -> SimReport {
    doppel_sim::run(config, ProgressMode::Hidden).expect("the run succeeds")
}

fn reports_of<'a>(seen: &'a Seen, thing: &str) -> Vec<&'a Value> {
    let topic = shadow::request(thing, None, ShadowOp::Update);
    seen.publishes
        .iter()
        .filter(|(published, _)| *published == topic)
        .map(|(_, payload)| payload)
        .collect()
}

#[test]
fn devices_connect_subscribe_report_apply_deltas_and_acknowledge_commands() {
    let broker = Broker::start(Script {
        deliver: true,
        ..FRIENDLY
    });
    let report = run(&broker.config(3, Duration::from_millis(1_500)));
    let seen = broker.seen();

    let mut clients: Vec<_> = seen.connects.iter().map(|c| c.client_id.clone()).collect();
    clients.sort();
    assert_eq!(clients, ["sim-000000", "sim-000001", "sim-000002"]);
    for connect in &seen.connects {
        assert!(connect.clean_session);
        assert_eq!(connect.keep_alive, 60);
        assert!(connect.login.is_none(), "anonymous");
    }
    assert_eq!(seen.subscriptions.len(), 3);
    for (thing, subscription) in &seen.subscriptions {
        assert_eq!(
            subscription,
            &[
                (topic::command_delivery(thing, "+"), QoS::AtLeastOnce),
                (
                    shadow::answer(thing, None, ShadowAnswer::Delta),
                    QoS::AtLeastOnce
                ),
            ],
            "commands first, so they come before the delta on a reconnect"
        );
    }

    for index in 0..3 {
        let thing = thing_name("sim", index);
        let reports = reports_of(&seen, &thing);
        // One at once, then every 100 ms ± 20 ms for 1.5 s, and the delta's.
        assert!(
            reports.len() >= 12,
            "{thing} sent {} reports",
            reports.len()
        );
        assert!(
            reports.contains(
                &&json!({"state": {"reported": {"mode": "boost", "light": {"level": 7}}}})
            ),
            "{thing} applied the delta as reported"
        );
        let last = reports.last().expect("reports");
        assert_eq!(last["state"]["reported"]["mode"], "boost", "and kept it");
        assert_eq!(last["state"]["reported"]["light"]["level"], 7);
        assert!(last["state"]["reported"]["temperature"].is_number());
        let ack_topic = topic::command_ack(&thing, "cmd-1");
        let acks: Vec<_> = seen
            .publishes
            .iter()
            .filter(|(topic, _)| *topic == ack_topic)
            .collect();
        assert_eq!(acks.len(), 1, "{thing} acknowledged its command once");
        assert_eq!(acks[0].1, json!({"status": "SUCCEEDED"}));
    }
    let mut pubacks = seen.pubacks.clone();
    pubacks.sort_unstable();
    assert_eq!(
        pubacks,
        [100, 100, 100, 101, 101, 101],
        "deliveries acknowledged"
    );

    let updates = seen
        .publishes
        .iter()
        .filter(|(topic, _)| topic.ends_with("/shadow/update"))
        .count();
    let totals = &report.totals;
    assert_eq!(totals.devices, 3);
    assert_eq!(totals.counters.connects, 3);
    assert_eq!(totals.connected_at_end, 3);
    assert_eq!(
        seen.clean_disconnects, 3,
        "DISCONNECT at the end of the run"
    );
    assert_eq!(
        totals.counters.reports_sent,
        u64::try_from(updates).expect("small")
    );
    assert_eq!(
        totals.counters.reports_acknowledged,
        totals.counters.reports_sent
    );
    assert_eq!(
        report.latency_ms.count,
        totals.counters.reports_acknowledged
    );
    assert_eq!(totals.counters.deltas_applied, 3);
    assert_eq!(totals.counters.commands_acknowledged, 3);
    assert_eq!(
        totals.counters.disconnects + totals.counters.connections_lost,
        0
    );
    assert_eq!(report.partitioned.fraction, 0.0);
}

#[test]
fn each_device_follows_its_own_link_schedule() {
    let broker = Broker::start(FRIENDLY);
    let model = LinkModel {
        disconnect_rate: 4.0,
        reconnect_rate: 8.0,
    };
    let duration = Duration::from_secs(2);
    let mut config = broker.config(4, duration);
    config.link = Some(model);
    config.seed = 9;
    let report = run(&config);
    let seen = broker.seen();

    let totals = &report.totals;
    assert!(
        totals.counters.disconnects > 0,
        "λ = 4/s over 2 s cuts every device"
    );
    // An Up phase can end during a handshake: the broker saw a CONNECT that the device gave
    // up on. Every other connection ended with a partition or with the run.
    let connects = u64::try_from(seen.connects.len()).expect("small");
    let abandoned_handshakes = connects - totals.counters.connects;
    assert!(
        abandoned_handshakes <= 2,
        "{abandoned_handshakes} handshakes cut short"
    );
    assert_eq!(
        u64::try_from(seen.dropped).expect("small"),
        totals.counters.disconnects + abandoned_handshakes,
        "a partition closes the socket without DISCONNECT"
    );
    assert_eq!(
        seen.clean_disconnects,
        usize::try_from(totals.connected_at_end).expect("small")
    );
    for (index, device) in (0..).zip(&report.devices) {
        // The Down time of the device's schedule (seed + index) between its slot and the end.
        let mut schedule = link_schedule(Some(&model), 9, index).expect("a model");
        let mut at = connect_offset(index, config.connect_rate);
        let mut down = Duration::ZERO;
        while at < duration {
            let (state, length) = schedule.next().expect("endless");
            let end = (at + length).min(duration);
            if state == LinkState::Down {
                down += end - at;
            }
            at = end;
        }
        let measured = device.stats.partitioned;
        let gap = measured.abs_diff(down);
        assert!(
            gap < Duration::from_micros(10),
            "{}: partitioned {measured:?}, its schedule says {down:?}",
            device.thing
        );
    }
    assert!(report.partitioned.fraction > 0.0 && report.partitioned.fraction < 1.0);
    assert_eq!(report.partitioned.expected_fraction, 4.0 / 12.0);
}

#[test]
fn credentials_log_each_device_in_under_its_own_name() {
    let broker = Broker::start(FRIENDLY);
    let mut config = broker.config(2, Duration::from_millis(300));
    config.credentials = Some(Credentials {
        tenant: "acme".to_owned(),
        username_template: "{tenant}/devices/{thing}".to_owned(),
        password: "pw-1".to_owned(),
    });
    run(&config);
    let seen = broker.seen();
    let mut logins: Vec<_> = seen
        .connects
        .iter()
        .map(|connect| {
            let login = connect.login.as_ref().expect("a login");
            (login.username.clone(), login.password.clone())
        })
        .collect();
    logins.sort();
    assert_eq!(
        logins,
        [
            ("acme/devices/sim-000000".to_owned(), "pw-1".to_owned()),
            ("acme/devices/sim-000001".to_owned(), "pw-1".to_owned()),
        ]
    );
}

#[test]
fn a_hub_that_refuses_every_device_fails_the_run_with_its_reason() {
    let broker = Broker::start(Script {
        connack: ConnectReturnCode::NotAuthorized,
        ..FRIENDLY
    });
    let err = doppel_sim::run(
        &broker.config(2, Duration::from_millis(500)),
        ProgressMode::Hidden,
    )
    .expect_err("nothing connected");
    assert!(matches!(err, SimError::NoneConnected { .. }), "{err}");
    assert!(err.to_string().contains("NotAuthorized"), "{err}");
    assert!(broker.seen().connects.len() >= 2, "every device tried");
}

#[test]
fn unacknowledged_reports_are_sent_but_not_counted_as_acknowledged() {
    let broker = Broker::start(Script {
        puback: false,
        ..FRIENDLY
    });
    let report = run(&broker.config(1, Duration::from_millis(2_500)));
    let totals = &report.totals;
    // More reports than a device remembers in flight: the oldest are forgotten, not kept.
    assert!(
        totals.counters.reports_sent > 16,
        "{} reports",
        totals.counters.reports_sent
    );
    assert_eq!(totals.counters.reports_acknowledged, 0);
    assert_eq!(report.latency_ms.count, 0);
    assert_eq!(report.latency_ms.p50, None);
}

#[test]
fn refused_subscriptions_are_counted() {
    let broker = Broker::start(Script {
        refuse_subscriptions: true,
        ..FRIENDLY
    });
    let report = run(&broker.config(2, Duration::from_millis(300)));
    assert_eq!(
        report.totals.counters.subscribe_failures, 4,
        "two filters per device"
    );
    assert!(report.table().contains("subscribe failures"));
}
