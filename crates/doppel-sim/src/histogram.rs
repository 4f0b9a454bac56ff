//! A latency histogram of fixed logarithmic buckets, for percentiles without keeping samples.
//!
//! Values are whole microseconds. Below [`EXACT_BELOW`] every value has a bucket of its own;
//! above, each power of two is split into [`SUB_BUCKETS`] equal buckets, so a percentile read
//! from the histogram is at most 1/16 (6.25%) above the true value, whatever the range. Every
//! `u64` has a bucket, so nothing is ever clamped or dropped, and the whole table is a fixed
//! 7.6 KiB: one per shard, merged at the end.

use std::time::Duration;

/// How many buckets each power of two is split into; the relative error bound is its inverse.
const SUB_BUCKETS: u64 = 16;

/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();

/// Values below this (microseconds) are counted exactly: one bucket per value.
pub const EXACT_BELOW: u64 = 2 * SUB_BUCKETS;

/// Enough buckets for every `u64`: the exact ones (two powers' worth), then [`SUB_BUCKETS`] for
/// each power of two from [`EXACT_BELOW`] up to 2^64 (`64 - SUB_BITS - 1` of them).
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_BUCKETS as usize;

/// Counts of latencies by logarithmic bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Samples per bucket; see [`bucket_of`].
    counts: Box<[u64]>,
    /// Samples recorded.
    total: u64,
    /// The largest sample, exact, so the top percentile is never reported above it.
    max: u64,
}

impl std::fmt::Debug for Histogram {
    // Nearly a thousand counters say less than the summary.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    /// Counts one latency, rounded down to whole microseconds.
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Counts one latency of `micros` microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        if let Some(count) = self.counts.get_mut(bucket_of(micros)) {
            *count += 1;
        }
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Adds every sample of `other` (another shard's histogram).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample in microseconds, or `None` when empty.
    pub fn max_micros(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The `quantile` (0.5 for the median, 0.999 for p99.9) in microseconds, or `None` when
    /// empty: the upper bound of the bucket that holds the sample of that rank, but never above
    /// the largest sample. It is therefore never below the true value and at most 6.25% above.
    pub fn quantile_micros(&self, quantile: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // The rank (1-based) of the sample: the smallest r with r/total >= quantile.
        let quantile = quantile.clamp(0.0, 1.0);
        let rank = ((quantile * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper(bucket).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// The bucket of `micros`: itself below [`EXACT_BELOW`]; above, the power of two it falls in
/// and which of that power's [`SUB_BUCKETS`] equal slices, read off its top bits.
pub fn bucket_of(micros: u64) -> usize {
    if micros < EXACT_BELOW {
        return usize::try_from(micros).unwrap_or(usize::MAX);
    }
    let exponent = 63 - micros.leading_zeros();
    let shift = exponent - SUB_BITS;
    // The top SUB_BITS + 1 bits: between SUB_BUCKETS and 2 * SUB_BUCKETS - 1.
    let mantissa = micros >> shift;
    usize::try_from(u64::from(shift) * SUB_BUCKETS + mantissa).unwrap_or(usize::MAX)
}

/// The largest value in `bucket` (the inverse of [`bucket_of`]).
pub fn bucket_upper(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < EXACT_BELOW {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket % SUB_BUCKETS + SUB_BUCKETS;
    // The last bucket ends at u64::MAX; shifting its end up would overflow.
    ((mantissa + 1) << shift).wrapping_sub(1)
}

#[cfg(test)]
mod tests;
