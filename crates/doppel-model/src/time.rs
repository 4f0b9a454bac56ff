//! Instants as Unix milliseconds.

use crate::error::ModelError;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An instant in Unix milliseconds (UTC). Stored and compared as a plain integer so that time
/// ordering is cheap and exact; rendered as RFC 3339 at the API edge.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// Parses an RFC 3339 instant such as `2026-11-22T10:00:00Z` or with an offset.
    pub fn parse_rfc3339(text: &str) -> Result<Self, ModelError> {
        DateTime::parse_from_rfc3339(text)
            .map(|instant| Self(instant.timestamp_millis()))
            .map_err(|err| ModelError::InvalidTimestamp {
                value: text.chars().take(64).collect(),
                reason: err.to_string(),
            })
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T10:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Whole Unix seconds, rounded down (also before 1970, so a second never covers two
    /// different instants): the timestamps of AWS documents, which Doppel answers in.
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The instant `delta_ms` milliseconds earlier, saturating rather than wrapping.
    pub fn saturating_sub_ms(self, delta_ms: i64) -> Self {
        Self(self.0.saturating_sub(delta_ms))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_offsets_normalised_to_utc() {
        let t = Millis::parse_rfc3339("2026-11-22T12:00:00.250+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00.250Z");
        assert_eq!(Millis::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn rejects_text_that_is_not_an_instant() {
        assert!(Millis::parse_rfc3339("yesterday").is_err());
        assert!(Millis::parse_rfc3339("2026-11-22").is_err());
    }

    #[test]
    fn unix_seconds_round_down() {
        assert_eq!(Millis(1_719_855_498_999).unix_seconds(), 1_719_855_498);
        assert_eq!(Millis(1_719_855_499_000).unix_seconds(), 1_719_855_499);
        assert_eq!(Millis(0).unix_seconds(), 0);
        assert_eq!(Millis(-1).unix_seconds(), -1);
    }
}
