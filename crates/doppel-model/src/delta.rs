//! The delta: what the device still has to do to reach the desired state.

use serde_json::{Map, Value};

/// The desired leaves that differ from reported.
///
/// Nested objects are compared key by key and keep their paths; arrays and other leaves are
/// compared whole; keys that only reported has are not part of the delta (the device may report
/// more than anyone desires). A desired object that reported lacks or holds as a non-object is
/// included whole.
pub fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (Value::Object(want_inner), Some(Value::Object(have_inner))) => {
                let inner = delta(want_inner, have_inner);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (want, Some(have)) if want == have => {}
            (want, _) => {
                out.insert(key.clone(), want.clone());
            }
        }
    }
    out
}

/// Whether [`delta`] would be non-empty, found without building it: the first differing leaf
/// answers. For checks that run on every write (indexes, gauges, queries).
pub fn has_delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> bool {
    desired
        .iter()
        .any(|(key, want)| match (want, reported.get(key)) {
            (Value::Object(want_inner), Some(Value::Object(have_inner))) => {
                has_delta(want_inner, have_inner)
            }
            (want, Some(have)) => want != have,
            (_, None) => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn d(desired: Value, reported: Value) -> Value {
        Value::Object(delta(
            desired.as_object().unwrap(),
            reported.as_object().unwrap(),
        ))
    }

    #[test]
    fn nested_paths_are_kept_and_equal_leaves_dropped() {
        assert_eq!(
            d(
                json!({"light": {"on": true, "level": 5}, "mode": "eco"}),
                json!({"light": {"on": true, "level": 3}, "mode": "eco"})
            ),
            json!({"light": {"level": 5}})
        );
    }

    #[test]
    fn arrays_are_compared_whole_and_reported_only_keys_ignored() {
        assert_eq!(
            d(json!({"l": [1, 2]}), json!({"l": [1, 2], "extra": 1})),
            json!({})
        );
        assert_eq!(
            d(json!({"l": [1, 2]}), json!({"l": [1]})),
            json!({"l": [1, 2]})
        );
    }

    #[test]
    fn a_desired_object_over_a_reported_scalar_is_included_whole() {
        assert_eq!(
            d(json!({"a": {"b": 1}}), json!({"a": 7})),
            json!({"a": {"b": 1}})
        );
    }

    fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::from),
            (0i64..3).prop_map(Value::from)
        ];
        let value = leaf.prop_recursive(3, 16, 3, |inner| {
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        });
        prop::collection::btree_map("[a-c]", value, 0..4).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The quick check says exactly what building the delta would.
        #[test]
        fn has_delta_agrees_with_delta(desired in arb_object(), reported in arb_object()) {
            prop_assert_eq!(has_delta(&desired, &reported), !delta(&desired, &reported).is_empty());
        }

        /// Once the device reports what the delta asks for, nothing is left to do.
        #[test]
        fn reporting_the_delta_empties_it(desired in arb_object(), reported in arb_object()) {
            let pending = delta(&desired, &reported);
            let mut after = Value::Object(reported);
            json_patch::merge(&mut after, &Value::Object(pending));
            prop_assert!(delta(&desired, after.as_object().unwrap()).is_empty());
        }

        /// A twin whose reported state equals its desired state has an empty delta.
        #[test]
        fn equal_states_have_no_delta(state in arb_object()) {
            prop_assert!(delta(&state, &state).is_empty());
        }
    }
}
