//! The proxy over real loopback sockets, with an echo server as upstream; and, under paused time,
//! its accounting and its following of a link model.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use doppel_netfault::{FaultProxy, LinkModel, LinkState};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

/// How long any single step may take before the test fails instead of hanging. Generous: it only
/// bounds failures, it never paces a passing test.
const PATIENCE: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} took longer than {PATIENCE:?}"),
    }
}

/// An echo server on port 0 that reports each connection's end, so a test can see the upstream
/// side of a cut as well as the client side.
struct Echo {
    addr: SocketAddr,
    ended: mpsc::UnboundedReceiver<()>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, ended) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let report = report.clone();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
                let _ = report.send(());
            });
        }
    });
    Echo { addr, ended }
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    within("connecting", TcpStream::connect(proxy.local_addr()))
        .await
        .unwrap()
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    within("a round trip", async {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    })
    .await;
}

/// The stream must end, by end of file or by an error, without having delivered any data.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buffer = [0; 64];
    match within("seeing the connection close", stream.read(&mut buffer)).await {
        Ok(0) | Err(_) => {}
        Ok(read) => panic!("expected a closed connection, read {read} bytes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pass_through_unchanged_and_in_order() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut payload = vec![0; 1 << 20];
    StdRng::seed_from_u64(1).fill_bytes(&mut payload);

    let stream = connect(&proxy).await;
    let (mut read, mut write) = stream.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        // The echo server ends its reply only once our end of stream reaches it through the proxy.
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    within("echoing 1 MiB", read.read_to_end(&mut echoed))
        .await
        .unwrap();
    within("the writer", writer).await.unwrap();

    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echoed bytes differ");
    assert_eq!(proxy.connections_accepted(), 1);
}

#[tokio::test]
async fn a_cut_resets_open_connections_on_both_sides() {
    let mut echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"before the cut").await;

    proxy.cut();
    assert!(proxy.is_cut());
    assert_closed(&mut stream).await;
    within("the upstream side closing", echo.ended.recv())
        .await
        .unwrap();
}

#[tokio::test]
async fn while_cut_new_connections_are_closed_and_after_heal_they_work() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    proxy.cut();

    let mut refused = connect(&proxy).await;
    // The write may fail or succeed depending on when the reset lands; nothing may come back.
    let _ = refused.write_all(b"anyone there?").await;
    assert_closed(&mut refused).await;
    assert_eq!(proxy.connections_accepted(), 1);

    proxy.heal();
    assert!(!proxy.is_cut());
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"after the heal").await;
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn a_delay_holds_each_direction_back() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"warm up").await;

    let delay = Duration::from_millis(150);
    proxy.set_delay(delay);
    let start = std::time::Instant::now();
    round_trip(&mut stream, b"slow").await;
    // Each direction waits out the delay, so a round trip takes at least twice as long.
    assert!(start.elapsed() >= 2 * delay, "{:?}", start.elapsed());

    proxy.set_delay(Duration::ZERO);
    round_trip(&mut stream, b"fast again").await;
}

#[tokio::test]
async fn an_upstream_that_refuses_closes_the_client() {
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = gone.local_addr().unwrap();
    drop(gone);
    let proxy = FaultProxy::start(upstream).await.unwrap();

    let mut stream = connect(&proxy).await;
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let mut echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"hello").await;

    drop(proxy);
    assert_closed(&mut stream).await;
    within("the upstream side closing", echo.ended.recv())
        .await
        .unwrap();
}

/// No connection is made, so any address will do as upstream.
fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

#[tokio::test(start_paused = true)]
async fn time_cut_adds_up_every_cut_including_the_current_one() {
    let proxy = FaultProxy::start(nowhere()).await.unwrap();
    assert_eq!(proxy.time_cut(), Duration::ZERO);

    proxy.cut();
    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(proxy.time_cut(), Duration::from_millis(30));
    // A second cut while cut neither restarts nor doubles the count.
    proxy.cut();
    tokio::time::advance(Duration::from_millis(5)).await;
    proxy.heal();
    assert_eq!(proxy.time_cut(), Duration::from_millis(35));

    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(proxy.time_cut(), Duration::from_millis(35));

    proxy.cut();
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_eq!(proxy.time_cut(), Duration::from_millis(55));
    proxy.heal();
    proxy.heal();
    assert_eq!(proxy.time_cut(), Duration::from_millis(55));
}

/// The time a schedule spends Down within `window`, and how many Down phases start in it.
fn down_within(model: &LinkModel, seed: u64, window: Duration) -> (Duration, u32) {
    let (mut at, mut down, mut phases) = (Duration::ZERO, Duration::ZERO, 0);
    for (state, lasts) in model.schedule(seed) {
        if at >= window {
            break;
        }
        if state == LinkState::Down {
            down += lasts.min(window - at);
            phases += 1;
        }
        at += lasts;
    }
    (down, phases)
}

#[tokio::test(start_paused = true)]
async fn following_a_model_cuts_exactly_as_its_schedule_says() {
    let model = LinkModel {
        disconnect_rate: 20.0,
        reconnect_rate: 20.0,
    };
    let (seed, window) = (7, Duration::from_secs(1));
    let (expected, down_phases) = down_within(&model, seed, window);
    assert!(
        down_phases > 3,
        "a poor seed for this test: {down_phases} down phases"
    );

    let proxy = FaultProxy::start(nowhere()).await.unwrap();
    let start = Instant::now();
    proxy.follow(&model, seed, window).finished().await;

    assert_eq!(start.elapsed(), window);
    assert!(!proxy.is_cut());
    // The timer wheel rounds each wake-up up to the next millisecond, so each Down phase may be
    // off by less than a millisecond; phases are timed from one start, so errors do not add up.
    let tolerance = Duration::from_millis(u64::from(down_phases));
    let measured = proxy.time_cut();
    assert!(
        measured.abs_diff(expected) <= tolerance,
        "cut for {measured:?}, the schedule says {expected:?} ± {tolerance:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_follow_handle_mid_cut_heals() {
    let model = LinkModel {
        disconnect_rate: 1.0,
        reconnect_rate: 1.0,
    };
    let seed = 3;
    let mut schedule = model.schedule(seed);
    let (Some((LinkState::Up, up)), Some((LinkState::Down, down))) =
        (schedule.next(), schedule.next())
    else {
        panic!("schedules start Up then Down");
    };
    assert!(down > Duration::from_millis(10), "a poor seed: {down:?}");

    let proxy = FaultProxy::start(nowhere()).await.unwrap();
    let following = proxy.follow(&model, seed, Duration::from_secs(3600));
    // Virtual time: lands in the middle of the first Down phase.
    sleep(up + down / 2).await;
    assert!(proxy.is_cut());
    assert!(!following.is_finished());

    following.stop();
    assert!(!proxy.is_cut());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_fast_model_disturbs_a_real_client_and_ends_healed() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let model = LinkModel {
        disconnect_rate: 20.0,
        reconnect_rate: 20.0,
    };
    let following = proxy.follow(&model, 11, Duration::from_secs(1));

    // A client that keeps trying one short exchange per connection, as a reconnecting agent
    // would, until the model's time is up.
    let (mut succeeded, mut failed) = (0_u32, 0_u32);
    while !following.is_finished() {
        let attempt = timeout(PATIENCE, async {
            let mut stream = TcpStream::connect(proxy.local_addr()).await?;
            stream.write_all(b"ping").await?;
            let mut pong = [0; 4];
            stream.read_exact(&mut pong).await?;
            std::io::Result::Ok(pong)
        });
        match attempt.await {
            Ok(Ok(pong)) => {
                assert_eq!(&pong, b"ping");
                succeeded += 1;
            }
            Ok(Err(_)) => failed += 1,
            Err(_) => panic!("an exchange hung instead of failing"),
        }
        // Pacing, not waiting for a condition: about a hundred attempts over the second.
        sleep(Duration::from_millis(10)).await;
    }
    within("following to finish", following.finished()).await;

    assert!(
        succeeded > 0 && failed > 0,
        "{succeeded} succeeded, {failed} failed"
    );
    assert!(proxy.connections_accepted() > 0);
    assert!(proxy.time_cut() > Duration::ZERO);
    assert!(!proxy.is_cut());
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"healed").await;
}
