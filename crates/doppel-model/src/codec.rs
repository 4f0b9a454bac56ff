//! The stored byte form of twins and history entries.
//!
//! A one-byte tag leads every twin record so that a store can tell live twins from tombstones
//! (for listings) without decoding the document, and so the format can evolve.

use crate::error::ModelError;
use crate::history::HistoryEntry;
use crate::twin::Twin;
use bytes::Bytes;

const TAG_LIVE_V1: u8 = 1;
const TAG_TOMBSTONE_V1: u8 = 2;
const TAG_HISTORY_V1: u8 = 1;

/// A twin record in its stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedTwin(pub Bytes);

impl EncodedTwin {
    pub fn encode(twin: &Twin) -> Self {
        let tag = if twin.deleted {
            TAG_TOMBSTONE_V1
        } else {
            TAG_LIVE_V1
        };
        Self(tagged_json(tag, twin))
    }

    pub fn decode(bytes: &[u8]) -> Result<Twin, ModelError> {
        match bytes.split_first() {
            Some((&TAG_LIVE_V1 | &TAG_TOMBSTONE_V1, json)) => parse_json("twin", json),
            _ => Err(unknown_tag("twin", bytes)),
        }
    }

    /// Whether stored bytes are a live twin rather than a tombstone.
    pub fn is_live(bytes: &[u8]) -> bool {
        bytes.first() == Some(&TAG_LIVE_V1)
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
    use serde_json::json;

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
