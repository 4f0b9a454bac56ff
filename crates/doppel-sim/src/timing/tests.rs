use std::time::Duration;

use doppel_netfault::LinkModel;
use rand::Rng;

use super::{
    MIN_REPORT_DELAY, connect_offset, device_rng, device_seed, link_schedule, report_delay,
};

const MODEL: LinkModel = LinkModel {
    disconnect_rate: 0.5,
    reconnect_rate: 2.0,
};

#[test]
fn devices_connect_in_order_at_the_connect_rate() {
    assert_eq!(connect_offset(0, 2_000), Duration::ZERO);
    assert_eq!(connect_offset(1, 2_000), Duration::from_micros(500));
    assert_eq!(connect_offset(2_000, 2_000), Duration::from_secs(1));
    assert_eq!(
        connect_offset(99_999, 2_000),
        Duration::from_micros(49_999_500)
    );
    let offsets: Vec<_> = (0..1_000).map(|index| connect_offset(index, 300)).collect();
    assert!(offsets.windows(2).all(|pair| pair[0] <= pair[1]));
}

#[test]
fn report_delays_stay_within_the_jitter_and_cover_it() {
    let interval = Duration::from_secs(10);
    let jitter = Duration::from_secs(2);
    let mut rng = device_rng(1, 0);
    let delays: Vec<_> = (0..10_000)
        .map(|_| report_delay(interval, jitter, &mut rng))
        .collect();
    let (low, high) = (interval - jitter, interval + jitter);
    assert!(delays.iter().all(|delay| (low..=high).contains(delay)));
    // Uniform over 4 s: 10,000 draws reach within 50 ms of both ends.
    let min = delays.iter().min().copied().unwrap_or_default();
    let max = delays.iter().max().copied().unwrap_or_default();
    assert!(min < low + Duration::from_millis(50), "min {min:?}");
    assert!(max > high - Duration::from_millis(50), "max {max:?}");
    let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / delays.len() as f64;
    assert!((mean - 10.0).abs() < 0.05, "mean {mean}");
}

#[test]
fn without_jitter_every_delay_is_the_interval() {
    let mut rng = device_rng(1, 0);
    let interval = Duration::from_millis(200);
    for _ in 0..100 {
        assert_eq!(report_delay(interval, Duration::ZERO, &mut rng), interval);
    }
}

#[test]
fn a_delay_is_never_zero_even_with_the_widest_jitter() {
    let mut rng = device_rng(1, 0);
    let interval = Duration::from_millis(10);
    for _ in 0..10_000 {
        let delay = report_delay(interval, interval, &mut rng);
        assert!((MIN_REPORT_DELAY..=interval * 2).contains(&delay));
    }
    // A jitter above the interval is held to the interval.
    let delay = report_delay(interval, Duration::from_secs(5), &mut rng);
    assert!(delay <= interval * 2);
}

#[test]
fn each_device_follows_the_model_with_the_run_seed_plus_its_index() {
    let schedule = link_schedule(Some(&MODEL), 40, 2).expect("a link model");
    let own: Vec<_> = schedule.take(20).collect();
    let expected: Vec<_> = MODEL.schedule(42).take(20).collect();
    assert_eq!(own, expected);
    // The same device with the same seed again: the same phases.
    let again: Vec<_> = link_schedule(Some(&MODEL), 40, 2)
        .expect("a link model")
        .take(20)
        .collect();
    assert_eq!(own, again);
    // Its neighbour's differ.
    let neighbour: Vec<_> = link_schedule(Some(&MODEL), 40, 3)
        .expect("a link model")
        .take(20)
        .collect();
    assert_ne!(own, neighbour);
}

#[test]
fn without_a_model_there_is_no_schedule() {
    assert!(link_schedule(None, 1, 0).is_none());
}

#[test]
fn seeds_wrap_instead_of_overflowing() {
    assert_eq!(device_seed(u64::MAX, 1), 0);
    assert_eq!(device_seed(1, 41), 42);
}

#[test]
fn a_device_draws_its_own_numbers_reproducibly() {
    let draw = |seed, index| {
        let mut rng = device_rng(seed, index);
        (0..8).map(|_| rng.random::<u64>()).collect::<Vec<_>>()
    };
    assert_eq!(draw(1, 5), draw(1, 5));
    assert_ne!(draw(1, 5), draw(1, 6));
}
