//! Stale-device detection: a device whose twin says CONNECTED but which has said nothing for
//! longer than its device type's expected activity interval is marked UNKNOWN.
//!
//! Each shard keeps the deadline of every CONNECTED twin it owns in an ordered set, updated
//! with every committed change of the twin, and sleeps until the soonest: the check visits only
//! the twins whose time is up, never the whole fleet.

use doppel_model::{ConnectionStatus, Millis, Twin, TwinKey};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Default expected activity interval: a day, the seed design's default for a device that
/// reports at least daily.
pub const DEFAULT_ACTIVITY_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of device may stay silent while connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityIntervals {
    /// For devices whose type is not listed, or that have none.
    pub default: Duration,
    /// By `device_type`.
    pub by_device_type: HashMap<String, Duration>,
}

impl Default for ActivityIntervals {
    fn default() -> Self {
        Self {
            default: DEFAULT_ACTIVITY_INTERVAL,
            by_device_type: HashMap::new(),
        }
    }
}

impl ActivityIntervals {
    /// How long a twin of `device_type` may stay silent.
    pub fn of_type(&self, device_type: Option<&str>) -> Duration {
        device_type
            .and_then(|kind| self.by_device_type.get(kind))
            .copied()
            .unwrap_or(self.default)
    }

    fn of(&self, twin: &Twin) -> Duration {
        self.of_type(twin.meta.device_type.as_deref())
    }
}

/// The silence deadlines of one shard's connected twins.
#[derive(Default)]
pub(crate) struct SilenceTimer {
    intervals: ActivityIntervals,
    /// Soonest first.
    due: BTreeSet<(Millis, TwinKey)>,
    /// Each tracked twin's deadline and the last sign of life it counts from.
    tracked: HashMap<TwinKey, (Millis, Millis)>,
}

impl SilenceTimer {
    pub(crate) fn new(intervals: ActivityIntervals) -> SilenceTimer {
        SilenceTimer {
            intervals,
            ..SilenceTimer::default()
        }
    }

    /// Follows a committed change of `key`: a live CONNECTED twin gets a deadline counted from
    /// its last sign of life; any other state has none.
    pub(crate) fn track(&mut self, key: &TwinKey, twin: Option<&Twin>) {
        if let Some((deadline, _)) = self.tracked.remove(key) {
            self.due.remove(&(deadline, key.clone()));
        }
        let Some(twin) = twin.and_then(Twin::live) else {
            return;
        };
        if twin.connection.status != ConnectionStatus::Connected {
            return;
        }
        let since = twin.connection.last_active_at().unwrap_or(twin.updated_at);
        let interval = i64::try_from(self.intervals.of(twin).as_millis()).unwrap_or(i64::MAX);
        let deadline = Millis(since.0.saturating_add(interval));
        self.due.insert((deadline, key.clone()));
        self.tracked.insert(key.clone(), (deadline, since));
    }

    /// The soonest deadline.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.due.first().map(|(deadline, _)| *deadline)
    }

    /// The twins whose deadline has come, with the last sign of life each was silent since.
    /// They stay tracked until their change is committed (or they were heard from meanwhile).
    pub(crate) fn take_due(&mut self, now: Millis) -> Vec<(TwinKey, Millis)> {
        let mut found = Vec::new();
        while let Some((deadline, key)) = self.due.first().cloned() {
            if deadline > now {
                break;
            }
            self.due.remove(&(deadline, key.clone()));
            if let Some((_, since)) = self.tracked.remove(&key) {
                found.push((key, since));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
