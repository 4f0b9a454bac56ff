use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::{Link, pump};

const DELAY: Duration = Duration::from_millis(300);

/// Everything the pump delivers, read until it closes its side.
async fn read_all(reader: &mut DuplexStream) -> Vec<u8> {
    let mut received = Vec::new();
    reader
        .read_to_end(&mut received)
        .await
        .expect("the pipe reads");
    received
}

/// A shorter delay set after a chunk was read must not let a later chunk overtake it, and each
/// chunk still waits out the delay in force when it was read.
#[tokio::test(start_paused = true)]
async fn shortening_the_delay_does_not_reorder_bytes() {
    let link = watch::Sender::new(Link {
        delay: DELAY,
        ..Link::default()
    });
    let (mut writer, pump_in) = duplex(1024);
    let (pump_out, mut reader) = duplex(1024);
    let start = Instant::now();

    let feed = async {
        writer.write_all(b"first ").await.unwrap();
        // Virtual time: lets the pump read "first " on its own before the delay changes.
        sleep(Duration::from_millis(10)).await;
        link.send_modify(|link| link.delay = Duration::ZERO);
        writer.write_all(b"second").await.unwrap();
        drop(writer);
    };
    let (pumped, (), received) =
        tokio::join!(pump(pump_in, pump_out, &link), feed, read_all(&mut reader));

    pumped.unwrap();
    assert_eq!(received, b"first second");
    assert!(start.elapsed() >= DELAY, "{:?}", start.elapsed());
}

/// The end of the stream passes through after the queued bytes, as a half-close.
#[tokio::test]
async fn the_end_of_stream_follows_the_bytes() {
    let link = watch::Sender::new(Link::default());
    let (mut writer, pump_in) = duplex(64);
    let (pump_out, mut reader) = duplex(64);
    let payload: Vec<u8> = (0..10_000_u32).map(|i| (i % 251) as u8).collect();

    let feed = async {
        writer.write_all(&payload).await.unwrap();
        drop(writer);
    };
    let (pumped, (), received) =
        tokio::join!(pump(pump_in, pump_out, &link), feed, read_all(&mut reader));

    pumped.unwrap();
    assert_eq!(received, payload);
}
