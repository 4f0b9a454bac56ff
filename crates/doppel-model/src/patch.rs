//! JSON merge patch (RFC 7396) applied to a state and its per-leaf metadata in one walk.

use crate::error::{ModelError, Subject, json_type_name};
use crate::time::Millis;
use serde_json::{Map, Value};

/// Applies `patch` to `state` as RFC 7396 describes (objects merge, `null` deletes, anything else
/// replaces), and keeps `metadata` the same shape as `state` with `now` (Unix milliseconds) at
/// every leaf the patch wrote.
pub fn merge(
    state: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: Millis,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                state.remove(key);
                metadata.remove(key);
            }
            Value::Object(inner_patch) => {
                let mut inner_state = take_object(state, key);
                let mut inner_metadata = take_object(metadata, key);
                merge(&mut inner_state, &mut inner_metadata, inner_patch, now);
                state.insert(key.clone(), Value::Object(inner_state));
                metadata.insert(key.clone(), Value::Object(inner_metadata));
            }
            leaf => {
                state.insert(key.clone(), leaf.clone());
                metadata.insert(key.clone(), leaf_metadata(now));
            }
        }
    }
}

/// The metadata recorded for a leaf written at `now`: the bare number, because every twin of the
/// fleet holds one per leaf in memory (adapters render it as `{"timestamp": ...}`).
pub fn leaf_metadata(now: Millis) -> Value {
    Value::from(now.0)
}

/// Takes the object at `key` out of `map`; a missing key or a non-object yields an empty object,
/// as RFC 7396 replaces a non-object target before merging into it.
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    }
}

/// Checks that `value` is an object and returns it.
pub fn as_object(what: Subject, value: &Value) -> Result<&Map<String, Value>, ModelError> {
    value.as_object().ok_or(ModelError::NotAnObject {
        what,
        found: json_type_name(value),
    })
}

/// Nesting depth: a scalar is 0, `{}` or `[]` is 1, `{"a": {}}` is 2.
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Rejects a state nested deeper than `limit`.
pub fn check_depth(what: &'static str, value: &Value, limit: usize) -> Result<(), ModelError> {
    let depth = depth(value);
    if depth > limit {
        return Err(ModelError::TooDeep { what, depth, limit });
    }
    Ok(())
}

/// Serialized size of a JSON value (an object, a whole state) in bytes, without allocating the
/// text.
pub fn serialized_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing JSON values to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn null_deletes_and_objects_merge() {
        let mut state = obj(json!({"a": 1, "b": {"c": 2, "d": 3}}));
        let mut meta = Map::new();
        merge(
            &mut state,
            &mut meta,
            &obj(json!({"a": null, "b": {"c": 5}})),
            Millis(7),
        );
        assert_eq!(Value::Object(state), json!({"b": {"c": 5, "d": 3}}));
        assert_eq!(Value::Object(meta), json!({"b": {"c": 7}}));
    }

    #[test]
    fn metadata_leaves_follow_state_leaves() {
        let mut state = Map::new();
        let mut meta = Map::new();
        merge(
            &mut state,
            &mut meta,
            &obj(json!({"a": {"b": 1}, "list": [1, 2]})),
            Millis(1),
        );
        merge(&mut state, &mut meta, &obj(json!({"a": 3})), Millis(2));
        assert_eq!(Value::Object(meta), json!({"a": 2, "list": 1}));
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// JSON objects with nulls, arrays and nesting, from a few short keys so patches meet.
    pub(crate) fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-d]", arb_json(), 0..5).prop_map(|m| m.into_iter().collect())
    }

    /// Every metadata object mirrors the state: same keys, leaves where the state has leaves.
    fn mirrors(state: &Map<String, Value>, meta: &Map<String, Value>) -> bool {
        state.len() == meta.len()
            && state
                .iter()
                .all(|(key, value)| match (value, meta.get(key)) {
                    (Value::Object(inner), Some(Value::Object(inner_meta))) => {
                        mirrors(inner, inner_meta)
                    }
                    (_, Some(leaf)) => leaf.is_i64(),
                    _ => false,
                })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Our walk agrees with the json-patch crate's RFC 7396 implementation on the state.
        #[test]
        fn agrees_with_rfc7396_reference(base in arb_object(), patch in arb_object()) {
            let mut expected = Value::Object(base.clone());
            json_patch::merge(&mut expected, &Value::Object(patch.clone()));
            let mut state = base;
            let mut meta = Map::new();
            merge(&mut state, &mut meta, &patch, Millis(1));
            prop_assert_eq!(Value::Object(state.clone()), expected);
        }

        /// Applying the same patch twice is the same as applying it once.
        #[test]
        fn merge_is_idempotent(patch in arb_object()) {
            let (mut s1, mut m1) = (Map::new(), Map::new());
            merge(&mut s1, &mut m1, &patch, Millis(1));
            let (mut s2, mut m2) = (s1.clone(), m1.clone());
            merge(&mut s2, &mut m2, &patch, Millis(1));
            prop_assert_eq!(s1, s2);
            prop_assert_eq!(m1, m2);
        }

        /// Metadata always has the shape of the state it describes.
        #[test]
        fn metadata_mirrors_state(patches in prop::collection::vec(arb_object(), 1..5)) {
            let (mut state, mut meta) = (Map::new(), Map::new());
            for (i, patch) in patches.iter().enumerate() {
                merge(&mut state, &mut meta, patch, Millis(i as i64));
            }
            prop_assert!(mirrors(&state, &meta), "state {:?} meta {:?}", state, meta);
        }
    }
}
