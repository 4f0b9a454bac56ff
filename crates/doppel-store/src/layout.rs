//! How keys and history buckets are laid out; shared by every backend so they agree.

use doppel_model::{Millis, TwinKey};

/// History is partitioned into time buckets of a fixed width, so retention drops whole buckets
/// instead of visiting each old entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryBuckets {
    /// Width of one bucket in milliseconds.
    pub width_ms: i64,
}

impl HistoryBuckets {
    /// Buckets `width_ms` wide; widths below one millisecond are raised to one.
    pub fn new(width_ms: i64) -> Self {
        Self {
            width_ms: width_ms.max(1),
        }
    }

    /// The start of the bucket holding `at`.
    pub fn start_of(&self, at: Millis) -> i64 {
        at.0 - at.0.rem_euclid(self.width_ms)
    }
}

/// The key of a history entry: `twin key 0x00 version(big-endian)`, so one twin's entries are a
/// contiguous range in version order.
pub fn history_key(twin: &TwinKey, version: u64) -> Vec<u8> {
    let mut key = history_prefix(twin);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The prefix shared by every history key of `twin`. Ids cannot contain 0x00, so no other twin's
/// keys share it.
pub fn history_prefix(twin: &TwinKey) -> Vec<u8> {
    let mut prefix = twin.to_bytes();
    prefix.push(doppel_model::id::KEY_SEPARATOR);
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_model::{DeviceId, TenantId};

    #[test]
    fn buckets_align_to_their_width_even_before_the_epoch() {
        let buckets = HistoryBuckets::new(1000);
        assert_eq!(buckets.start_of(Millis(2500)), 2000);
        assert_eq!(buckets.start_of(Millis(-1)), -1000);
    }

    #[test]
    fn history_keys_sort_by_version_and_never_collide_across_devices() {
        let twin = |d: &str| TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(d).unwrap());
        assert!(history_key(&twin("a"), 2) < history_key(&twin("a"), 256));
        assert!(!history_key(&twin("a2"), 1).starts_with(&history_prefix(&twin("a"))));
    }
}
