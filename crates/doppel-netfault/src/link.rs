//! The two-state link model: a link that is Up or Down, with exponential holding times.
//!
//! Up lasts an exponential time of rate λ (`disconnect_rate`), Down one of rate μ
//! (`reconnect_rate`), independently. Mean Up time is 1/λ, mean Down time 1/μ, and the long-run
//! fraction of time Down is (1/μ) / (1/λ + 1/μ) = λ/(λ+μ).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A link that alternates between [`LinkState::Up`] and [`LinkState::Down`].
///
/// Both rates must be finite and above zero; [`LinkModel::validate`] checks that before a test
/// relies on the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// λ, per second: how fast an Up link goes down. The mean Up time is 1/λ seconds.
    pub disconnect_rate: f64,
    /// μ, per second: how fast a Down link comes back. The mean Down time is 1/μ seconds.
    pub reconnect_rate: f64,
}

/// Whether the link carries traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Traffic flows.
    Up,
    /// Traffic is cut.
    Down,
}

/// Why a [`LinkModel`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkModelError {
    /// A rate was zero, negative, infinite or NaN.
    #[error("{name} must be a finite number of events per second above zero, got {value}")]
    InvalidRate {
        /// The field at fault: `disconnect_rate` or `reconnect_rate`.
        name: &'static str,
        /// The value it held.
        value: f64,
    },
}

impl LinkModel {
    /// Checks that both rates are finite and above zero.
    ///
    /// # Errors
    ///
    /// [`LinkModelError::InvalidRate`] naming the first rate that is not.
    pub fn validate(&self) -> Result<(), LinkModelError> {
        for (name, value) in [
            ("disconnect_rate", self.disconnect_rate),
            ("reconnect_rate", self.reconnect_rate),
        ] {
            if !is_valid_rate(value) {
                return Err(LinkModelError::InvalidRate { name, value });
            }
        }
        Ok(())
    }

    /// The long-run fraction of time the link is Down: λ/(λ+μ). Meaningful only for a model that
    /// passes [`LinkModel::validate`].
    pub fn expected_down_fraction(&self) -> f64 {
        self.disconnect_rate / (self.disconnect_rate + self.reconnect_rate)
    }

    /// The phases the link goes through, starting Up, as a seeded and therefore reproducible
    /// endless iterator of `(state, how long it lasts)`.
    ///
    /// The schedule of a model that fails [`LinkModel::validate`] is still defined, so that no
    /// caller can panic on it: a phase whose rate is zero, negative or NaN never ends (it lasts
    /// [`Duration::MAX`]), and one whose rate is infinite lasts no time at all.
    pub fn schedule(&self, seed: u64) -> Schedule {
        Schedule {
            model: *self,
            rng: StdRng::seed_from_u64(seed),
            next: LinkState::Up,
        }
    }
}

impl LinkState {
    fn toggled(self) -> LinkState {
        match self {
            LinkState::Up => LinkState::Down,
            LinkState::Down => LinkState::Up,
        }
    }
}

/// The endless, reproducible sequence of phases of a [`LinkModel`]; see [`LinkModel::schedule`].
#[derive(Debug, Clone)]
pub struct Schedule {
    /// A copy, so the schedule outlives the model it came from.
    model: LinkModel,
    /// The only source of randomness, so one seed fixes every phase.
    rng: StdRng,
    /// The state of the phase the next call yields; phases alternate.
    next: LinkState,
}

impl Iterator for Schedule {
    type Item = (LinkState, Duration);

    fn next(&mut self) -> Option<Self::Item> {
        let state = self.next;
        let rate = match state {
            LinkState::Up => self.model.disconnect_rate,
            LinkState::Down => self.model.reconnect_rate,
        };
        self.next = state.toggled();
        Some((state, holding_time(rate, self.rng.random())))
    }
}

fn is_valid_rate(rate: f64) -> bool {
    rate.is_finite() && rate > 0.0
}

/// An exponential holding time of `rate` from `uniform`, a sample of [0, 1), by inverse
/// transform: if U is uniform then -ln(1 - U)/rate is exponential with that rate.
fn holding_time(rate: f64, uniform: f64) -> Duration {
    if rate.is_nan() || rate <= 0.0 {
        return Duration::MAX;
    }
    // `ln_1p(-u)` is ln(1 - u) without the rounding of 1 - u, which matters for small u; since
    // 1 - u lies in (0, 1] the logarithm is finite and at most zero.
    let seconds = -(-uniform).ln_1p() / rate;
    // Only a rate so small that the phase outlasts `Duration` fails here; it means "never ends".
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests;
