use std::time::Duration;

use super::{BUCKETS, EXACT_BELOW, Histogram, bucket_of, bucket_upper};

/// Values spread over the whole range: every small one, then a geometric walk to u64::MAX.
fn probes() -> Vec<u64> {
    let mut values: Vec<u64> = (0..1_000).collect();
    let mut value = 1_000_u64;
    while let Some(next) = value.checked_add(value / 7 + 1) {
        values.extend([value - 1, value, value + 1]);
        value = next;
    }
    values.extend([u64::MAX - 1, u64::MAX]);
    values
}

#[test]
fn small_values_are_exact() {
    for value in 0..EXACT_BELOW {
        let bucket = bucket_of(value);
        assert_eq!(bucket_upper(bucket), value);
    }
}

#[test]
fn every_value_lies_in_its_bucket() {
    for value in probes() {
        let bucket = bucket_of(value);
        assert!(bucket < BUCKETS, "{value} has bucket {bucket}");
        assert!(
            value <= bucket_upper(bucket),
            "{value} above its bucket {bucket}"
        );
        if bucket > 0 {
            assert!(
                value > bucket_upper(bucket - 1),
                "{value} belongs to bucket {} too",
                bucket - 1
            );
        }
    }
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket_upper(BUCKETS - 1), u64::MAX);
}

#[test]
fn a_bucket_is_at_most_a_sixteenth_wider_than_its_values() {
    for value in probes().into_iter().filter(|value| *value > 0) {
        let upper = bucket_upper(bucket_of(value));
        let error = (upper - value) as f64 / value as f64;
        assert!(error <= 1.0 / 16.0, "{value} reads as {upper}");
    }
}

#[test]
fn percentiles_of_a_uniform_spread_are_within_the_bound() {
    let mut histogram = Histogram::new();
    for micros in 1..=10_000 {
        histogram.record_micros(micros);
    }
    assert_eq!(histogram.count(), 10_000);
    for (quantile, exact) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
        let read = histogram.quantile_micros(quantile).expect("samples") as f64;
        assert!(
            read >= exact && read <= exact * (1.0 + 1.0 / 16.0),
            "p{quantile} read {read}, exact {exact}"
        );
    }
    assert_eq!(histogram.quantile_micros(1.0), Some(10_000));
    assert_eq!(histogram.quantile_micros(0.0), Some(1));
    assert_eq!(histogram.max_micros(), Some(10_000));
}

#[test]
fn a_tail_shows_in_the_high_percentiles_only() {
    let mut histogram = Histogram::new();
    for _ in 0..990 {
        histogram.record(Duration::from_millis(2));
    }
    for _ in 0..10 {
        histogram.record(Duration::from_secs(1));
    }
    // 2 ms reads as the top of its bucket, 1,984-2,047 µs; 1 s as itself, the largest sample.
    assert_eq!(histogram.quantile_micros(0.5), Some(2_047));
    assert_eq!(histogram.quantile_micros(0.99), Some(2_047));
    assert_eq!(histogram.quantile_micros(0.999), Some(1_000_000));
}

#[test]
fn no_percentile_exceeds_the_largest_sample() {
    let mut histogram = Histogram::new();
    histogram.record_micros(1_000_001);
    assert_eq!(histogram.quantile_micros(0.5), Some(1_000_001));
    assert_eq!(histogram.quantile_micros(0.999), Some(1_000_001));
}

#[test]
fn an_empty_histogram_has_no_percentiles() {
    let histogram = Histogram::new();
    assert_eq!(histogram.count(), 0);
    assert_eq!(histogram.quantile_micros(0.5), None);
    assert_eq!(histogram.max_micros(), None);
}

#[test]
fn merging_equals_recording_everything_in_one() {
    let (mut left, mut right, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
    for micros in (0..5_000).map(|i| i * 37 % 9_973) {
        let half = if micros % 2 == 0 {
            &mut left
        } else {
            &mut right
        };
        half.record_micros(micros);
        both.record_micros(micros);
    }
    left.merge(&right);
    assert_eq!(left, both);
}
