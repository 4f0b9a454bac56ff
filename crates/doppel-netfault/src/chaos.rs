//! Seeded chaos plans: a reproducible mix of cuts, heals, delays and restarts.
//!
//! A plan only describes; the test plays it (on a [`FaultProxy`](crate::FaultProxy) or anything
//! else), so the same plan can drive a proxy, a simulator or a restart of the system under test.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A sequence of faults to play in order. Each timed step says what the link is like for its
/// duration; after the last step the player should heal the link and remove any delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosPlan {
    /// The steps, played first to last.
    pub steps: Vec<ChaosStep>,
}

/// One step of a [`ChaosPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosStep {
    /// The link is cut for this long (two cuts in a row are one longer outage).
    Cut(Duration),
    /// The link is up, without added delay, for this long.
    Heal(Duration),
    /// The link is up with this one-way delay (first field) for this long (second field).
    Delay(Duration, Duration),
    /// Restart whatever the test has under chaos (an agent, a server). It takes no time of its
    /// own and leaves the link as it was; what a restart means is the test's to decide.
    Restart,
}

impl ChaosPlan {
    /// A plan of `steps` steps, the same for the same seed. Kinds are drawn uniformly; every
    /// duration (cut, heal, delay and how long a delay lasts) is uniform in `[0, max_phase]`, at
    /// nanosecond resolution up to `u64::MAX` nanoseconds (about 584 years).
    pub fn generate(seed: u64, steps: usize, max_phase: Duration) -> ChaosPlan {
        let mut rng = StdRng::seed_from_u64(seed);
        let max_nanos = u64::try_from(max_phase.as_nanos()).unwrap_or(u64::MAX);
        let phase = |rng: &mut StdRng| Duration::from_nanos(rng.random_range(0..=max_nanos));
        let steps = (0..steps)
            .map(|_| match rng.random_range(0..4_u8) {
                0 => ChaosStep::Cut(phase(&mut rng)),
                1 => ChaosStep::Heal(phase(&mut rng)),
                2 => ChaosStep::Delay(phase(&mut rng), phase(&mut rng)),
                _ => ChaosStep::Restart,
            })
            .collect();
        ChaosPlan { steps }
    }
}

#[cfg(test)]
mod tests;
