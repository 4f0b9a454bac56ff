//! A flood of wrong passwords against the real binary: honest logins stay fast, and the flood is
//! refused, mostly without Argon2.
//!
//! Every client speaks raw MQTT 3.1.1 (a CONNECT, then its CONNACK), the flood from sockets
//! bound to several loopback addresses (Linux routes all of 127.0.0.0/8 to `lo`), the honest
//! clients from 127.0.0.1. Latencies are compared with a baseline measured in the same test,
//! never with absolute numbers.

mod common;

use common::Server;
use common::http::HttpClient;
use common::metrics::Scrape;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Notify;

/// The username under attack: it holds the most credentials, so each wrong password costs the
/// most Argon2 runs.
const TARGET: &str = "devices/target";

/// Concurrent flood clients, as in the report that found the hole.
const FLOOD_CLIENTS: usize = 48;

/// Loopback addresses the flood comes from (127.0.0.2 and on), so that the per-address limit and
/// the per-username limit both come into play.
const FLOOD_ADDRESSES: u8 = 8;

/// Pause between one flood client's attempts: 48 clients make about 240 attempts a second,
/// far more than two cores can check (each wrong password costs four Argon2 runs), while the
/// connections alone leave the shared machine some room.
const FLOOD_PACE: Duration = Duration::from_millis(200);

/// Honest logins measured before and during the flood; odd, for a median.
const SAMPLES: usize = 9;

/// Pause between honest logins during the flood, so that they span about three seconds: past the
/// end of the first backoff (1 s by default), when the flood gets a few checks again.
const HONEST_PACE: Duration = Duration::from_millis(330);

/// Longest wait for one login's answer; an honest login that takes this long counts as this
/// long, which fails the comparison by far.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How much slower than the baseline an honest login may be during the flood, plus an absolute
/// slack for the noise of a shared machine (scheduling, the flood's own connections).
const MAX_SLOWDOWN: u32 = 5;
const SLACK: Duration = Duration::from_millis(50);

/// MQTT 3.1.1 CONNACK return codes.
const ACCEPTED: u8 = 0;
const BAD_USERNAME_OR_PASSWORD: u8 = 4;

/// Where honest clients connect from.
const HONEST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// What the flood sends as its password.
const WRONG_PASSWORD: &str = "a wrong password, long enough";

const METRIC: &str = "doppel_mqtt_login_failures_total";

#[tokio::test]
async fn a_flood_of_wrong_passwords_leaves_honest_logins_fast_and_is_refused_unchecked() {
    let server = Server::start();
    let http = HttpClient::new(&server);
    let mut target = Vec::new();
    for _ in 0..doppel_auth::MAX_CREDENTIALS_PER_PRINCIPAL {
        target.push(http.credential(TARGET).await);
    }
    let (target_username, target_password) = target[0].clone();
    let mut fresh = Vec::new();
    for n in 0..2 * SAMPLES {
        fresh.push(http.credential(&format!("devices/fresh-{n}")).await);
    }
    let mut fresh = fresh.into_iter();

    // The target device logs in once, so its password is known when the flood starts.
    let first = login_time(&server, "target-first", &target_username, &target_password).await;
    let mut baseline = Vec::new();
    let mut baseline_known = Vec::new();
    for n in 0..SAMPLES {
        let (username, password) = fresh.next().expect("a fresh device");
        baseline.push(login_time(&server, &format!("before-{n}"), &username, &password).await);
        baseline_known.push(
            login_time(
                &server,
                &format!("target-before-{n}"),
                &target_username,
                &target_password,
            )
            .await,
        );
    }
    let before = Scrape::take(&server).await;

    let flood = Flood::start(server.mqtt, &target_username);
    flood.answered_by_every_client().await;
    let mut during = Vec::new();
    let mut during_known = Vec::new();
    let mut pace = tokio::time::interval(HONEST_PACE);
    for n in 0..SAMPLES {
        pace.tick().await;
        let (username, password) = fresh.next().expect("a fresh device");
        during.push(login_time(&server, &format!("during-{n}"), &username, &password).await);
        during_known.push(
            login_time(
                &server,
                &format!("target-during-{n}"),
                &target_username,
                &target_password,
            )
            .await,
        );
    }
    let outcome = flood.stop().await;
    let after = Scrape::take(&server).await;

    let counted = |reason: &str| {
        after.value(METRIC, &[("reason", reason)]) - before.value(METRIC, &[("reason", reason)])
    };
    let checked = counted("wrong_password");
    let throttled = counted("throttled_address") + counted("throttled_username");
    eprintln!(
        "first login of the target {first:?}; fresh logins: baseline median {:?}, during the flood {:?} (all: {during:?}); \
         the target again: baseline {:?}, during {:?}; flood: {} attempts, {checked} checked with Argon2, {throttled} refused unchecked",
        median(&baseline),
        median(&during),
        median(&baseline_known),
        median(&during_known),
        outcome.answered,
    );

    let limit = |baseline: &[Duration]| median(baseline) * MAX_SLOWDOWN + SLACK;
    assert!(
        median(&during) <= limit(&baseline),
        "first logins of other devices during the flood: median {:?}, baseline {:?}",
        median(&during),
        median(&baseline)
    );
    assert!(
        median(&during_known) <= limit(&baseline_known),
        "the attacked username's own device, whose password is known: median {:?}, baseline {:?}",
        median(&during_known),
        median(&baseline_known)
    );
    assert_eq!(
        outcome.unexpected, 0,
        "every flood attempt is answered `bad username or password`"
    );
    assert!(outcome.answered >= FLOOD_CLIENTS as u64, "{outcome:?}");
    assert!(
        checked + throttled >= outcome.answered as f64,
        "every refused attempt is counted: {checked} + {throttled} < {}",
        outcome.answered
    );
    assert!(
        checked * 10.0 <= outcome.answered as f64,
        "most of the flood is refused without Argon2: {checked} of {} were checked",
        outcome.answered
    );
}

/// How long `username` takes from connecting to its CONNACK, which must accept it.
async fn login_time(server: &Server, client_id: &str, username: &str, password: &str) -> Duration {
    let started = Instant::now();
    let answer = tokio::time::timeout(
        ANSWER_TIMEOUT,
        login(server.mqtt, HONEST, client_id, username, password),
    )
    .await;
    match answer {
        Ok(Some(ACCEPTED)) => started.elapsed(),
        Ok(other) => panic!("{client_id} ({username}) was not accepted: {other:?}"),
        Err(_) => ANSWER_TIMEOUT,
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// What the flood saw.
#[derive(Debug)]
struct FloodOutcome {
    /// Attempts answered with "bad username or password".
    answered: u64,
    /// Attempts answered otherwise, or not at all within [`ANSWER_TIMEOUT`].
    unexpected: u64,
}

struct Flood {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    unexpected: Arc<AtomicU64>,
    /// Flood clients that have had at least one answer.
    answered_clients: Arc<AtomicU64>,
    first_answers: Arc<Notify>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(broker: SocketAddr, username: &str) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let unexpected = Arc::new(AtomicU64::new(0));
        let answered_clients = Arc::new(AtomicU64::new(0));
        let first_answers = Arc::new(Notify::new());
        let clients = (0..FLOOD_CLIENTS)
            .map(|client| {
                let source =
                    Ipv4Addr::new(127, 0, 0, 2 + (client % FLOOD_ADDRESSES as usize) as u8);
                let username = username.to_owned();
                let (stop, answered, unexpected, answered_clients, first_answers) = (
                    stop.clone(),
                    answered.clone(),
                    unexpected.clone(),
                    answered_clients.clone(),
                    first_answers.clone(),
                );
                tokio::spawn(async move {
                    let mut pace = tokio::time::interval(FLOOD_PACE);
                    let mut first = true;
                    for attempt in 0.. {
                        pace.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let client_id = format!("flood-{client}-{attempt}");
                        let code = tokio::time::timeout(
                            ANSWER_TIMEOUT,
                            login(broker, source, &client_id, &username, WRONG_PASSWORD),
                        )
                        .await;
                        if stop.load(Ordering::Relaxed) {
                            // Answers that come after the stop are not the flood's any more.
                            return;
                        }
                        match code {
                            Ok(Some(BAD_USERNAME_OR_PASSWORD)) => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                eprintln!("{client_id}: {other:?}");
                                unexpected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if first {
                            first = false;
                            answered_clients.fetch_add(1, Ordering::Relaxed);
                            first_answers.notify_one();
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            answered,
            unexpected,
            answered_clients,
            first_answers,
            clients,
        }
    }

    /// Waits until every flood client has had an answer, so that the flood is in full swing.
    async fn answered_by_every_client(&self) {
        while self.answered_clients.load(Ordering::Relaxed) < FLOOD_CLIENTS as u64 {
            self.first_answers.notified().await;
        }
    }

    async fn stop(self) -> FloodOutcome {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.abort();
            let _ = client.await;
        }
        FloodOutcome {
            answered: self.answered.load(Ordering::Relaxed),
            unexpected: self.unexpected.load(Ordering::Relaxed),
        }
    }
}

/// One MQTT 3.1.1 CONNECT from `source`; the CONNACK's return code, or `None` if the connection
/// ended without one. The connection is closed right after.
async fn login(
    broker: SocketAddr,
    source: Ipv4Addr,
    client_id: &str,
    username: &str,
    password: &str,
) -> Option<u8> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    socket.set_nodelay(true).ok()?;
    let mut stream = socket.connect(broker).await.ok()?;
    stream
        .write_all(&common::raw::connect(
            client_id,
            4,
            Some((username, password)),
        ))
        .await
        .ok()?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.ok()?;
    (connack[0] == 0x20 && connack[1] == 2).then_some(connack[3])
}
