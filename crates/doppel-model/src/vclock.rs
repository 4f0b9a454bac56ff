//! Vector clocks: which changes, counted per originating replica, a state has seen.
//!
//! The clocks form a join semilattice: `join` is the pointwise maximum, and the causal order is
//! the pointwise order, with a replica missing from a clock counting as zero. Two clocks
//! neither of which dominates the other describe concurrent histories, which is exactly when a
//! merge has to reconcile.
//!
//! Known weakness: a clock keeps one entry per replica that ever wrote, forever; nothing here
//! retires replicas that are gone.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Replica id to the number of changes that replica originated; a missing replica counts as 0.
///
/// Zero counts are never stored, so that a clock has exactly one representation: `==`, the
/// serialized form and the size all depend only on what the clock means. Serialized as a JSON
/// object, e.g. `{"edge-1": 5, "hub": 2}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VectorClock(BTreeMap<String, u64>);

/// How the histories behind two clocks relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Causality {
    /// Both have seen exactly the same changes.
    Equal,
    /// `self` happened before `other`: `other` has seen everything `self` has, and more.
    Before,
    /// `self` happened after `other`: `self` has seen everything `other` has, and more.
    After,
    /// Each has seen a change the other has not.
    Concurrent,
}

impl Causality {
    /// The same relation seen from the other clock.
    pub fn mirror(self) -> Causality {
        match self {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            same => same,
        }
    }
}

impl VectorClock {
    /// The clock of a state that has seen no change.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many changes `replica` originated that this clock has seen.
    pub fn get(&self, replica: &str) -> u64 {
        self.0.get(replica).copied().unwrap_or(0)
    }

    /// Counts one more change by `replica` and returns its new count. Saturates at `u64::MAX`,
    /// which no replica reaches at any realistic rate of changes.
    pub fn increment(&mut self, replica: &str) -> u64 {
        self.add(replica, 1).unwrap_or(u64::MAX)
    }

    /// Adds `amount` to the count of `replica` and returns the new count, or `None`, changing
    /// nothing, if it would overflow. Adding zero stores nothing.
    pub(crate) fn add(&mut self, replica: &str, amount: u64) -> Option<u64> {
        let count = self.get(replica).checked_add(amount)?;
        if count > 0 {
            self.0.insert(replica.to_owned(), count);
        }
        Some(count)
    }

    /// The sum of all counts; `u128` because the sum of several `u64` counts may not fit a `u64`.
    pub(crate) fn total(&self) -> u128 {
        self.0.values().map(|&count| u128::from(count)).sum()
    }

    /// Makes this clock the least one that has seen everything both clocks have: the pointwise
    /// maximum.
    pub fn join(&mut self, other: &VectorClock) {
        for (replica, &count) in &other.0 {
            let entry = self.0.entry(replica.clone()).or_insert(0);
            *entry = (*entry).max(count);
        }
    }

    /// How the history behind `self` relates to the one behind `other`.
    pub fn compare(&self, other: &VectorClock) -> Causality {
        match (self.dominates(other), other.dominates(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// Whether `self` has seen every change `other` has (pointwise `self >= other`): the
    /// relation is `Equal` or `After`.
    pub fn dominates(&self, other: &VectorClock) -> bool {
        // Only other's entries can exceed self's: a replica missing from other counts as 0.
        other
            .0
            .iter()
            .all(|(replica, &count)| self.get(replica) >= count)
    }

    /// Whether the clock has seen no change at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The replicas with a non-zero count, in order of replica id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.0
            .iter()
            .map(|(replica, &count)| (replica.as_str(), count))
    }
}

impl FromIterator<(String, u64)> for VectorClock {
    /// Builds a clock from `(replica, count)` pairs, dropping zero counts. A replica named twice
    /// keeps its larger count, as a join of the two would.
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(pairs: I) -> Self {
        let mut clock = VectorClock::new();
        for (replica, count) in pairs {
            if count > 0 {
                let entry = clock.0.entry(replica).or_insert(0);
                *entry = (*entry).max(count);
            }
        }
        clock
    }
}

impl<'de> Deserialize<'de> for VectorClock {
    /// Reads the JSON object form, dropping zero counts so that a stored `{"a": 0}` equals `{}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, u64>::deserialize(deserializer)
            .map(|counts| counts.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
