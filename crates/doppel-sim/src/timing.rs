//! When each device does what: its first connect, the delay between its reports and its link's
//! Up and Down phases. Pure functions of the configuration, the device's index and its seed, so
//! any device's behaviour can be recomputed after a run.

use std::time::Duration;

use doppel_netfault::{LinkModel, Schedule};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// The shortest delay between two reports, even when the jitter draws `interval - jitter = 0`:
/// a device never reports twice in one instant.
pub const MIN_REPORT_DELAY: Duration = Duration::from_millis(1);

/// Mixed into a device's seed for its own random choices (jitter, readings), so that they are
/// not the same stream as its link schedule even where the generators agree.
const DEVICE_RNG_SALT: u64 = 0x5DEE_CE66_D1CE_5EED;

/// The seed of device `index`: the run's seed plus the index, so device 7 of seed 1 and device 6
/// of seed 2 follow the same schedule, and a single device's run can be replayed alone.
pub fn device_seed(seed: u64, index: u32) -> u64 {
    seed.wrapping_add(u64::from(index))
}

/// How long after the run's start device `index` first connects: in index order, `rate` per
/// second, so the hub sees a steady stream of connects rather than a storm.
pub fn connect_offset(index: u32, rate: u32) -> Duration {
    let rate = u128::from(rate.max(1));
    let nanos = u128::from(index) * 1_000_000_000 / rate;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The delay before a device's next report: `interval` plus a uniform draw from
/// `[-jitter, +jitter]`, never below [`MIN_REPORT_DELAY`].
pub fn report_delay(interval: Duration, jitter: Duration, rng: &mut impl Rng) -> Duration {
    let jitter = jitter.min(interval);
    let spread = u64::try_from(jitter.as_nanos().saturating_mul(2)).unwrap_or(u64::MAX);
    let offset = Duration::from_nanos(rng.random_range(0..=spread));
    (interval - jitter + offset).max(MIN_REPORT_DELAY)
}

/// The Up/Down phases of device `index`'s link, or `None` when the link never goes down.
pub fn link_schedule(link: Option<&LinkModel>, seed: u64, index: u32) -> Option<Schedule> {
    link.map(|link| link.schedule(device_seed(seed, index)))
}

/// The generator of device `index`'s own random choices: report jitter and sensor readings.
pub fn device_rng(seed: u64, index: u32) -> SmallRng {
    SmallRng::seed_from_u64(device_seed(seed, index) ^ DEVICE_RNG_SALT)
}

#[cfg(test)]
mod tests;
