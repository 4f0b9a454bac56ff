use super::*;
use std::time::Duration;
use tokio::sync::mpsc;

/// Answers that wait for `release` before recording their number in `order`.
async fn held_answer(
    number: usize,
    release: oneshot::Receiver<()>,
    order: mpsc::UnboundedSender<usize>,
) {
    let _ = release.await;
    let _ = order.send(number);
}

/// Asserts that `future` does not complete within a short while.
async fn assert_pending(future: impl Future<Output = ()> + Unpin, failure: &str) {
    let waited = tokio::time::timeout(Duration::from_millis(50), future).await;
    assert!(waited.is_err(), "{failure}");
}

#[tokio::test]
async fn handing_in_an_answer_does_not_wait_for_the_one_before() {
    let pipeline = Pipeline::default();
    let (order, mut answered) = mpsc::unbounded_channel();
    let (release_first, first) = oneshot::channel();
    pipeline.then(held_answer(1, first, order.clone())).await;
    // The first answer is still held, yet the second is handed in at once.
    let (release_second, second) = oneshot::channel();
    tokio::time::timeout(
        Duration::from_secs(10),
        pipeline.then(held_answer(2, second, order)),
    )
    .await
    .expect("the pipeline took the second answer while the first was pending");
    // The second is ready first, but goes out after the first.
    release_second.send(()).expect("the second answer waits");
    tokio::task::yield_now().await;
    assert!(
        answered.try_recv().is_err(),
        "nothing is sent before the first"
    );
    release_first.send(()).expect("the first answer waits");
    assert_eq!(answered.recv().await, Some(1));
    assert_eq!(answered.recv().await, Some(2));
}

#[tokio::test]
async fn drained_waits_for_every_answer_handed_in() {
    let pipeline = Pipeline::default();
    let (order, mut answered) = mpsc::unbounded_channel();
    let (release, held) = oneshot::channel();
    pipeline.then(held_answer(1, held, order)).await;
    let drained = pipeline.drained();
    tokio::pin!(drained);
    assert_pending(&mut drained, "drained returned while an answer was pending").await;
    release.send(()).expect("the answer waits");
    drained.await;
    assert_eq!(answered.try_recv(), Ok(1));
}

#[tokio::test]
async fn a_connection_holds_at_most_max_in_flight_answers() {
    let pipeline = Pipeline::default();
    let (order, mut answered) = mpsc::unbounded_channel();
    let mut releases = Vec::new();
    for number in 0..MAX_IN_FLIGHT {
        let (release, held) = oneshot::channel();
        releases.push(release);
        pipeline
            .then(held_answer(number, held, order.clone()))
            .await;
    }
    // Released at once: only whether the pipeline takes it matters here.
    let (_, released) = oneshot::channel::<()>();
    let one_more = pipeline.then(held_answer(MAX_IN_FLIGHT, released, order));
    tokio::pin!(one_more);
    assert_pending(
        &mut one_more,
        "one more than MAX_IN_FLIGHT was taken without waiting",
    )
    .await;
    // Once the oldest is sent there is room again.
    let oldest = releases.remove(0);
    oldest.send(()).expect("the oldest answer waits");
    one_more.await;
    assert_eq!(answered.recv().await, Some(0));
}
