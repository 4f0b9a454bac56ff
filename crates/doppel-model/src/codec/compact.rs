//! The second twin record format: the first one's JSON, except that each section's metadata
//! keeps only the leaves whose time differs from the section's `updated_at`.
//!
//! A device that reports its whole state writes every leaf at once, so its metadata is one
//! timestamp repeated at every leaf: about two fifths of a sensor twin's record, kept in memory
//! for every twin of the fleet and parsed on every write. The section's `updated_at` is the time
//! of its last write, which is the time of the leaves that write touched, so those leaves need
//! no stamp of their own; reading the record puts them back from the state's shape.

use crate::error::ModelError;
use crate::meta::Meta;
use crate::patch::leaf_metadata;
use crate::replica_state::ReplicaState;
use crate::time::Millis;
use crate::twin::{Connection, Section, Twin};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// A twin as the compact record writes it; field for field the twin's own serialization.
#[derive(serde::Serialize)]
pub(super) struct CompactTwin<'a> {
    version: u64,
    shadow_version: u64,
    created_at: Millis,
    updated_at: Millis,
    reported: CompactSection<'a>,
    desired: CompactSection<'a>,
    connection: &'a Connection,
    meta: &'a Meta,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<&'a ReplicaState>,
}

impl<'a> CompactTwin<'a> {
    /// The compact form of `twin`, or `None` when a section's metadata does not have its state's
    /// shape (written by hand, not by a merge), which only the full form keeps exactly.
    pub(super) fn of(twin: &'a Twin) -> Option<Self> {
        // No `..`: a field added to the twin must be added here too, or it would not be stored.
        let Twin {
            version,
            shadow_version,
            created_at,
            updated_at,
            reported,
            desired,
            connection,
            meta,
            deleted,
            replica,
        } = twin;
        Some(Self {
            version: *version,
            shadow_version: *shadow_version,
            created_at: *created_at,
            updated_at: *updated_at,
            reported: CompactSection::of(reported)?,
            desired: CompactSection::of(desired)?,
            connection,
            meta,
            deleted: *deleted,
            replica: replica.as_deref(),
        })
    }
}

#[derive(serde::Serialize)]
struct CompactSection<'a> {
    state: &'a Map<String, Value>,
    metadata: KeptStamps<'a>,
    version: u64,
    updated_at: Option<Millis>,
}

impl<'a> CompactSection<'a> {
    fn of(section: &'a Section) -> Option<Self> {
        let Section {
            state,
            metadata,
            version,
            updated_at,
        } = section;
        mirrors(state, metadata).then_some(Self {
            state,
            metadata: KeptStamps {
                state,
                metadata,
                elided: *updated_at,
            },
            version: *version,
            updated_at: *updated_at,
        })
    }
}

/// Whether `metadata` has exactly the keys of `state` at every level, an object where the state
/// has an object and a leaf where it has a leaf: the shape merging a patch keeps.
fn mirrors(state: &Map<String, Value>, metadata: &Map<String, Value>) -> bool {
    state.len() == metadata.len()
        && state
            .iter()
            .all(|(key, value)| match (value, metadata.get(key)) {
                (Value::Object(inner), Some(Value::Object(stamps))) => mirrors(inner, stamps),
                (Value::Object(_), _) | (_, Some(Value::Object(_)) | None) => false,
                (_, Some(_)) => true,
            })
}

/// The metadata leaves that differ from `elided` (the section's own time), with the objects
/// that lead to them.
struct KeptStamps<'a> {
    state: &'a Map<String, Value>,
    metadata: &'a Map<String, Value>,
    elided: Option<Millis>,
}

impl KeptStamps<'_> {
    fn below<'b>(&'b self, key: &str) -> Option<KeptStamps<'b>> {
        match (self.state.get(key), self.metadata.get(key)) {
            (Some(Value::Object(state)), Some(Value::Object(metadata))) => Some(KeptStamps {
                state,
                metadata,
                elided: self.elided,
            }),
            _ => None,
        }
    }

    /// Whether `stamp` is not the one [`leaf_metadata`] makes of the section's time, which
    /// reading puts back (an integer stamp equals that `Value` exactly when its `i64` does).
    fn kept(&self, stamp: &Value) -> bool {
        self.elided.is_none_or(|at| stamp.as_i64() != Some(at.0))
    }

    fn keeps_any(&self) -> bool {
        self.metadata
            .iter()
            .any(|(key, stamp)| match self.below(key) {
                Some(inner) => inner.keeps_any(),
                None => self.kept(stamp),
            })
    }
}

impl Serialize for KeptStamps<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, stamp) in self.metadata {
            match self.below(key) {
                Some(inner) if inner.keeps_any() => map.serialize_entry(key, &inner)?,
                Some(_) => {}
                None if self.kept(stamp) => map.serialize_entry(key, stamp)?,
                None => {}
            }
        }
        map.end()
    }
}

/// Puts back the stamps a compact record left out: each section's metadata from the shape of
/// its state, its own time at every leaf the record kept no stamp for.
pub(super) fn expand(twin: &mut Twin) -> Result<(), ModelError> {
    for section in [&mut twin.reported, &mut twin.desired] {
        let kept = std::mem::take(&mut section.metadata);
        section.metadata = expanded(&section.state, kept, section.updated_at)?;
    }
    Ok(())
}

fn expanded(
    state: &Map<String, Value>,
    mut kept: Map<String, Value>,
    at: Option<Millis>,
) -> Result<Map<String, Value>, ModelError> {
    let mut metadata = Map::new();
    for (key, value) in state {
        let stamp = match (value, kept.remove(key)) {
            (Value::Object(inner), None) => Value::Object(expanded(inner, Map::new(), at)?),
            (Value::Object(inner), Some(Value::Object(stamps))) => {
                Value::Object(expanded(inner, stamps, at)?)
            }
            (Value::Object(_), Some(_)) => return Err(corrupt("a leaf stamp for an object")),
            (_, Some(Value::Object(_))) => return Err(corrupt("an object of stamps for a leaf")),
            (_, Some(stamp)) => stamp,
            (_, None) => leaf_metadata(at.ok_or_else(|| corrupt("a missing stamp"))?),
        };
        metadata.insert(key.clone(), stamp);
    }
    if let Some(key) = kept.keys().next() {
        return Err(corrupt(&format!(
            "a stamp for {key:?}, which the state lacks"
        )));
    }
    Ok(metadata)
}

fn corrupt(what: &str) -> ModelError {
    ModelError::CorruptRecord(format!("compact twin record with {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn section_after(patches: &[(Value, i64)]) -> Section {
        let mut section = Section::default();
        for (patch, at) in patches {
            merge(
                &mut section.state,
                &mut section.metadata,
                &object(patch.clone()),
                Millis(*at),
            );
            section.updated_at = Some(Millis(*at));
        }
        section
    }

    fn kept(section: &Section) -> Value {
        serde_json::to_value(CompactSection::of(section).expect("mirrors").metadata)
            .expect("serializes")
    }

    #[test]
    fn only_stamps_older_than_the_section_are_kept() {
        let whole =
            section_after(&[(json!({"a": 1, "b": {"c": true, "d": {}}, "e": [1, 2]}), 100)]);
        assert_eq!(kept(&whole), json!({}));

        let partly = section_after(&[
            (json!({"a": 1, "b": {"c": true, "x": 2}, "e": [1]}), 100),
            (json!({"a": 2, "b": {"c": false}}), 200),
        ]);
        assert_eq!(kept(&partly), json!({"b": {"x": 100}, "e": 100}));
    }

    #[test]
    fn a_section_never_written_keeps_every_stamp() {
        let mut section = section_after(&[(json!({"a": 1, "b": {"c": 2}}), 100)]);
        section.updated_at = None;
        assert_eq!(kept(&section), json!({"a": 100, "b": {"c": 100}}));
    }

    #[test]
    fn metadata_of_another_shape_has_no_compact_form() {
        let mut section = section_after(&[(json!({"a": 1, "b": {"c": 2}}), 100)]);
        section.metadata.remove("a");
        assert!(CompactSection::of(&section).is_none());
        let mut section = section_after(&[(json!({"a": 1}), 100)]);
        section.metadata.insert("a".into(), json!({"c": 100}));
        assert!(CompactSection::of(&section).is_none());
        let mut section = section_after(&[(json!({"a": {"b": 1}}), 100)]);
        section.metadata.insert("a".into(), json!(100));
        assert!(CompactSection::of(&section).is_none());
    }

    #[test]
    fn stamps_that_do_not_fit_the_state_are_corrupt() {
        let state = object(json!({"a": 1, "b": {"c": 2}}));
        let at = Some(Millis(5));
        for kept in [
            json!({"z": 1}),
            json!({"a": {"x": 1}}),
            json!({"b": 1}),
            json!({"b": {"z": 1}}),
        ] {
            assert!(
                matches!(
                    expanded(&state, object(kept.clone()), at),
                    Err(ModelError::CorruptRecord(_))
                ),
                "{kept}"
            );
        }
        assert!(matches!(
            expanded(&state, Map::new(), None),
            Err(ModelError::CorruptRecord(_))
        ));
    }
}
