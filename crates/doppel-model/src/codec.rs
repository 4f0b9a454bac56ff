//! The stored byte form of twins and history entries.
//!
//! A one-byte tag leads every twin record so that a store can tell live twins from tombstones
//! (for listings) without decoding the document, and so the format can evolve. Twins are written
//! in the second format (`compact`: metadata stamps equal to their section's time left out) and
//! read in both; the first stays for twins whose metadata a merge did not shape.

mod compact;

use crate::error::ModelError;
use crate::history::HistoryEntry;
use crate::twin::Twin;
use bytes::Bytes;

const TAG_LIVE_V1: u8 = 1;
const TAG_TOMBSTONE_V1: u8 = 2;
const TAG_LIVE_COMPACT: u8 = 3;
const TAG_TOMBSTONE_COMPACT: u8 = 4;
const TAG_HISTORY_V1: u8 = 1;

/// A twin record in its stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedTwin(pub Bytes);

impl EncodedTwin {
    pub fn encode(twin: &Twin) -> Self {
        let pick = |live, tombstone| if twin.deleted { tombstone } else { live };
        Self(match compact::CompactTwin::of(twin) {
            Some(compact) => tagged_json(pick(TAG_LIVE_COMPACT, TAG_TOMBSTONE_COMPACT), &compact),
            None => tagged_json(pick(TAG_LIVE_V1, TAG_TOMBSTONE_V1), twin),
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Twin, ModelError> {
        match bytes.split_first() {
            Some((&TAG_LIVE_V1 | &TAG_TOMBSTONE_V1, json)) => parse_json("twin", json),
            Some((&TAG_LIVE_COMPACT | &TAG_TOMBSTONE_COMPACT, json)) => {
                let mut twin = parse_json("twin", json)?;
                compact::expand(&mut twin)?;
                Ok(twin)
            }
            _ => Err(unknown_tag("twin", bytes)),
        }
    }

    /// Whether stored bytes are a live twin rather than a tombstone.
    pub fn is_live(bytes: &[u8]) -> bool {
        matches!(bytes.first(), Some(&TAG_LIVE_V1 | &TAG_LIVE_COMPACT))
    }
}

/// A history entry in its stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedHistory(pub Bytes);

impl EncodedHistory {
    pub fn encode(entry: &HistoryEntry) -> Self {
        Self(tagged_json(TAG_HISTORY_V1, entry))
    }

    pub fn decode(bytes: &[u8]) -> Result<HistoryEntry, ModelError> {
        match bytes.split_first() {
            Some((&TAG_HISTORY_V1, json)) => parse_json("history entry", json),
            _ => Err(unknown_tag("history entry", bytes)),
        }
    }
}

fn tagged_json(tag: u8, value: &impl serde::Serialize) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.push(tag);
    // Serializing our own plain structs and JSON values to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    Bytes::from(out)
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, ModelError> {
    serde_json::from_slice(json).map_err(|err| ModelError::CorruptRecord(format!("{what}: {err}")))
}

fn unknown_tag(what: &str, bytes: &[u8]) -> ModelError {
    ModelError::CorruptRecord(format!(
        "{what} with unknown format tag {:?}",
        bytes.first()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Millis;
    use serde_json::{Value, json};

    #[test]
    fn twins_round_trip_and_tombstones_are_marked() {
        let mut twin = Twin {
            version: 3,
            updated_at: Millis(5),
            ..Twin::default()
        };
        twin.meta.tags.insert("site".into(), "berlin".into());
        twin.desired.state = json!({"a": [1, {"b": null}]}).as_object().unwrap().clone();
        let encoded = EncodedTwin::encode(&twin);
        assert!(EncodedTwin::is_live(&encoded.0));
        assert_eq!(EncodedTwin::decode(&encoded.0).unwrap(), twin);

        twin.deleted = true;
        let tombstone = EncodedTwin::encode(&twin);
        assert!(!EncodedTwin::is_live(&tombstone.0));
        assert_eq!(EncodedTwin::decode(&tombstone.0).unwrap(), twin);
    }

    /// A sensor twin after a whole report, a partial one and a desired change, as merges shape
    /// it: stamps of three different times.
    fn merged_twin() -> Twin {
        let mut twin = Twin {
            version: 4,
            shadow_version: 3,
            created_at: Millis(100),
            updated_at: Millis(300),
            ..Twin::default()
        };
        let writes = [
            (
                false,
                json!({"t": 20.5, "battery": {"level": 80, "charging": false}, "errors": [], "light": {}}),
                100,
            ),
            (false, json!({"t": 21.0, "battery": {"level": 79}}), 200),
            (true, json!({"mode": "eco"}), 300),
        ];
        for (desired, patch, at) in writes {
            let section = if desired {
                &mut twin.desired
            } else {
                &mut twin.reported
            };
            crate::patch::merge(
                &mut section.state,
                &mut section.metadata,
                patch.as_object().expect("a patch is an object"),
                Millis(at),
            );
            section.updated_at = Some(Millis(at));
            section.version += 1;
        }
        twin.connection.last_activity_at = Some(Millis(200));
        twin
    }

    #[test]
    fn merged_twins_are_stored_compact_and_read_back_whole() {
        let twin = merged_twin();
        let compact = EncodedTwin::encode(&twin);
        assert_eq!(compact.0[0], TAG_LIVE_COMPACT);
        assert_eq!(
            EncodedTwin::decode(&compact.0).expect("a compact record"),
            twin
        );
        let full = tagged_json(TAG_LIVE_V1, &twin);
        assert!(
            compact.0.len() < full.len(),
            "{} bytes compact, {} in full",
            compact.0.len(),
            full.len()
        );
        // The stamps of the later partial report and of the desired change are left out.
        let stored: serde_json::Value =
            serde_json::from_slice(&compact.0[1..]).expect("JSON after the tag");
        assert_eq!(
            stored["reported"]["metadata"],
            json!({"battery": {"charging": 100}, "errors": 100})
        );
        assert_eq!(stored["desired"]["metadata"], json!({}));

        let mut tombstone = twin;
        tombstone.deleted = true;
        let encoded = EncodedTwin::encode(&tombstone);
        assert_eq!(encoded.0[0], TAG_TOMBSTONE_COMPACT);
        assert!(!EncodedTwin::is_live(&encoded.0));
        assert_eq!(
            EncodedTwin::decode(&encoded.0).expect("a compact tombstone"),
            tombstone
        );
    }

    /// Records written before the compact format are read as they were.
    #[test]
    fn first_format_records_are_still_read() {
        let twin = merged_twin();
        let full = tagged_json(TAG_LIVE_V1, &twin);
        assert!(EncodedTwin::is_live(&full));
        assert_eq!(
            EncodedTwin::decode(&full).expect("a first-format record"),
            twin
        );
        let json = br#"{"version":2,"shadow_version":2,"created_at":5,"updated_at":5,"reported":{"state":{"a":{"b":1}},"metadata":{"a":{"b":5}},"version":1,"updated_at":5},"desired":{"state":{},"metadata":{},"version":0,"updated_at":null},"connection":{"status":"UNKNOWN","last_connected_at":null,"last_disconnected_at":null,"last_activity_at":5,"sequence":0},"meta":{"device_type":null,"firmware_version":null,"capabilities":[],"tags":{}}}"#;
        let record = [&[TAG_LIVE_V1][..], json].concat();
        let read = EncodedTwin::decode(&record).expect("a first-format record");
        assert_eq!(
            Value::Object(read.reported.metadata),
            json!({"a": {"b": 5}})
        );
        assert_eq!(read.reported.updated_at, Some(Millis(5)));
    }

    proptest::proptest! {
        /// Whatever merges made the sections, the compact record reads back as the same twin.
        #[test]
        fn any_merged_twin_round_trips(
            writes in proptest::collection::vec(
                (crate::patch::tests::arb_object(), 0i64..4, proptest::bool::ANY),
                1..6,
            )
        ) {
            let mut twin = Twin::default();
            for (patch, at, desired) in &writes {
                let section = if *desired { &mut twin.desired } else { &mut twin.reported };
                crate::patch::merge(&mut section.state, &mut section.metadata, patch, Millis(*at));
                section.updated_at = Some(Millis(*at));
            }
            let encoded = EncodedTwin::encode(&twin);
            proptest::prop_assert_eq!(encoded.0[0], TAG_LIVE_COMPACT);
            proptest::prop_assert_eq!(EncodedTwin::decode(&encoded.0).expect("a compact record"), twin);
        }
    }

    #[test]
    fn unknown_formats_are_reported_not_guessed() {
        assert!(matches!(
            EncodedTwin::decode(b"\x09{}"),
            Err(ModelError::CorruptRecord(_))
        ));
        assert!(matches!(
            EncodedHistory::decode(b""),
            Err(ModelError::CorruptRecord(_))
        ));
    }
}
