//! History: one entry per accepted change, and the twin as it was at an instant.

use crate::meta::Meta;
use crate::replica_state::{ReplicaDelta, Resolution};
use crate::time::Millis;
use crate::twin::{Connection, Section, Twin};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which part of the twin a change touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HistoryKind {
    Reported,
    Desired,
    /// Tags, device type, firmware version or capabilities.
    Meta,
    /// The twin was deleted; entries before it describe an earlier life of the twin.
    Deleted,
    /// Desired and reported changed together (an AWS shadow update carrying both); the state is
    /// `{"desired": {"state": .., "version": n}, "reported": {"state": .., "version": m}}`.
    State,
    /// The device connected or disconnected; the state is the twin's `connection` object.
    Connection,
}

impl HistoryKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "REPORTED" => Some(Self::Reported),
            "DESIRED" => Some(Self::Desired),
            "META" => Some(Self::Meta),
            "DELETED" => Some(Self::Deleted),
            "STATE" => Some(Self::State),
            "CONNECTION" => Some(Self::Connection),
            _ => None,
        }
    }
}

/// One accepted change of a twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub kind: HistoryKind,
    /// The document version the change produced; unique per twin and increasing with time.
    pub version: u64,
    pub recorded_at: Millis,
    /// The whole section after the change: the reported or desired state object, the meta fields
    /// as an object, or `null` for a delete. Whole states (not diffs) let `?at=` read one entry
    /// per section instead of replaying a twin's whole past.
    pub state: Value,
    /// The reported or desired section's own version after the change, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_version: Option<u64>,
    /// The device id or API principal that made the change.
    pub changed_by: String,
    pub change_reason: String,
    /// The change as replicas exchange it (its origin, vector clock and stamped properties),
    /// for twins kept by more than one replica (the hub and edge agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Box<ReplicaDelta>>,
    /// Concurrent changes this one overrode or lost to, with the losing value and the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<Resolution>,
}

/// Rebuilds the twin as it was from its history entries, newest first, all recorded at or before
/// the instant asked for. Returns `None` when the twin did not exist then.
///
/// Per-leaf metadata is not kept in history, so the rebuilt twin has empty metadata.
pub fn twin_from_history<'a>(
    newest_first: impl IntoIterator<Item = &'a HistoryEntry>,
) -> Option<Twin> {
    let mut twin: Option<Twin> = None;
    let (mut seen_reported, mut seen_desired, mut seen_meta, mut seen_connection) =
        (false, false, false, false);
    for entry in newest_first {
        if entry.kind == HistoryKind::Deleted {
            break;
        }
        let twin = twin.get_or_insert_with(|| Twin {
            version: entry.version,
            updated_at: entry.recorded_at,
            ..Twin::default()
        });
        twin.created_at = entry.recorded_at;
        let section = |state: &Value, version: Option<u64>| Section {
            state: state.as_object().cloned().unwrap_or_default(),
            metadata: Default::default(),
            version: version.unwrap_or(0),
            updated_at: Some(entry.recorded_at),
        };
        let part = |name: &str| {
            let part = &entry.state[name];
            section(&part["state"], part["version"].as_u64())
        };
        match entry.kind {
            HistoryKind::Reported if !seen_reported => {
                seen_reported = true;
                twin.reported = section(&entry.state, entry.section_version);
            }
            HistoryKind::Desired if !seen_desired => {
                seen_desired = true;
                twin.desired = section(&entry.state, entry.section_version);
            }
            HistoryKind::State => {
                if !seen_reported {
                    seen_reported = true;
                    twin.reported = part("reported");
                }
                if !seen_desired {
                    seen_desired = true;
                    twin.desired = part("desired");
                }
            }
            HistoryKind::Connection if !seen_connection => {
                seen_connection = true;
                twin.connection =
                    serde_json::from_value::<Connection>(entry.state.clone()).unwrap_or_default();
            }
            HistoryKind::Meta if !seen_meta => {
                seen_meta = true;
                twin.meta = serde_json::from_value::<Meta>(entry.state.clone()).unwrap_or_default();
            }
            _ => {}
        }
    }
    twin
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: HistoryKind, version: u64, at: i64, state: Value) -> HistoryEntry {
        HistoryEntry {
            kind,
            version,
            recorded_at: Millis(at),
            state,
            section_version: Some(version),
            changed_by: "test".into(),
            change_reason: "test".into(),
            replica: None,
            resolutions: Vec::new(),
        }
    }

    #[test]
    fn takes_the_newest_entry_of_each_section() {
        let entries = [
            entry(HistoryKind::Desired, 4, 40, json!({"d": 2})),
            entry(HistoryKind::Reported, 3, 30, json!({"r": 2})),
            entry(HistoryKind::Desired, 2, 20, json!({"d": 1})),
            entry(
                HistoryKind::Meta,
                1,
                10,
                json!({"tags": {"site": "x"}, "capabilities": []}),
            ),
        ];
        let twin = twin_from_history(&entries).unwrap();
        assert_eq!(twin.version, 4);
        assert_eq!(Value::Object(twin.desired.state), json!({"d": 2}));
        assert_eq!(Value::Object(twin.reported.state), json!({"r": 2}));
        assert_eq!(twin.meta.tags.get("site").map(String::as_str), Some("x"));
        assert_eq!(twin.created_at, Millis(10));
    }

    #[test]
    fn nothing_before_a_delete_survives_it() {
        let entries = [
            entry(HistoryKind::Deleted, 2, 20, Value::Null),
            entry(HistoryKind::Reported, 1, 10, json!({})),
        ];
        assert!(twin_from_history(&entries).is_none());
        let after = [
            entry(HistoryKind::Reported, 3, 30, json!({"x": 1})),
            entries[0].clone(),
            entries[1].clone(),
        ];
        let twin = twin_from_history(&after).unwrap();
        assert_eq!(twin.version, 3);
        assert_eq!(twin.created_at, Millis(30));
    }
}
