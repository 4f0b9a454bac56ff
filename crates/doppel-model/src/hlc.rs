//! Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! A timestamp is a wall-clock millisecond plus a logical counter. It orders events like a
//! Lamport clock (every event is stamped strictly after everything its replica has seen), yet
//! stays close to physical time: the wall part is always the largest wall clock reading seen so
//! far, so last-writer-wins reads as "latest" to a person. The caller reads the clock and passes
//! `now` in; this module never looks at time itself.
//!
//! Laws, for `t = tick(last, now)` and `o = observe(last, remote, now)`:
//! - `t > last`, `o > last` and `o > remote` (monotone even when the wall clock jumps back);
//! - `t.wall == max(now, last.wall)` and `o.wall == max(now, last.wall, remote.wall)`, except when
//!   the logical counter is exhausted at `u32::MAX`, where the wall part moves on by one
//!   millisecond instead.
//!
//! Known weakness: a single replica whose wall clock is far ahead drags every replica that hears
//! from it ahead too; the clock cannot tell a fast clock from a late one.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical clock timestamp. Ordered by wall part, then logical part (the field order
/// gives the derived `Ord` exactly that meaning).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// The largest wall clock reading (Unix milliseconds) this replica has seen, its own or in a
    /// message; it is what keeps the clock close to physical time.
    pub wall: Millis,
    /// Orders events within one millisecond of `wall`, and events that happen while the local
    /// wall clock lags behind `wall`.
    pub logical: u32,
}

impl Hlc {
    /// The timestamp before every event; the starting point of a fresh replica.
    pub const ZERO: Hlc = Hlc {
        wall: Millis(0),
        logical: 0,
    };

    /// The timestamp of a local event (or of sending a message) at wall-clock `now`, strictly
    /// after `last`, the replica's previous timestamp.
    pub fn tick(last: Hlc, now: Millis) -> Hlc {
        if now > last.wall {
            Hlc {
                wall: now,
                logical: 0,
            }
        } else {
            last.successor()
        }
    }

    /// The replica's new timestamp after receiving a message stamped `remote` at wall-clock
    /// `now`: strictly after both `last` and `remote`.
    pub fn observe(last: Hlc, remote: Hlc, now: Millis) -> Hlc {
        // The paper's receive rule spells out three cases (which of the walls is largest); all of
        // them amount to ticking from the later of the two timestamps.
        Hlc::tick(last.max(remote), now)
    }

    /// The smallest timestamp after `self` that keeps the wall part: the next logical count, or
    /// when that is exhausted the next millisecond. Saturating the counter instead would hand
    /// out the same timestamp twice.
    fn successor(self) -> Hlc {
        match (self.logical.checked_add(1), self.wall.0.checked_add(1)) {
            (Some(logical), _) => Hlc {
                wall: self.wall,
                logical,
            },
            (None, Some(wall)) => Hlc {
                wall: Millis(wall),
                logical: 0,
            },
            // The very last timestamp, 292 million years from now: nothing lies after it, so the
            // clock stops rather than wrapping back to the past.
            (None, None) => self,
        }
    }
}

impl fmt::Display for Hlc {
    /// `wall.logical`, e.g. `1764530000000.3`, so that a person reads it as milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall.0, self.logical)
    }
}

#[cfg(test)]
mod tests;
