use super::*;
use proptest::prelude::*;
use serde_json::json;

fn clock(pairs: &[(&str, u64)]) -> VectorClock {
    pairs
        .iter()
        .map(|&(replica, count)| (replica.to_owned(), count))
        .collect()
}

/// Few replicas and small counts, so that equal entries, and so every causal relation, are common.
fn arb_clock() -> impl Strategy<Value = VectorClock> {
    proptest::collection::vec(("[a-d]", 0u64..4), 0..5)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn joined(a: &VectorClock, b: &VectorClock) -> VectorClock {
    let mut out = a.clone();
    out.join(b);
    out
}

#[test]
fn a_zero_count_is_the_same_as_a_missing_replica() {
    assert_eq!(clock(&[("a", 0)]), VectorClock::new());
    assert!(clock(&[("a", 0)]).is_empty());
    let stored: VectorClock = serde_json::from_value(json!({"a": 0, "b": 2})).unwrap();
    assert_eq!(stored, clock(&[("b", 2)]));
    assert_eq!(serde_json::to_value(&stored).unwrap(), json!({"b": 2}));
    assert_eq!(stored.get("a"), 0);
    assert_eq!(
        stored.compare(&clock(&[("b", 2), ("c", 0)])),
        Causality::Equal
    );
}

#[test]
fn counts_changes_per_replica() {
    let mut clock = VectorClock::new();
    assert_eq!(clock.increment("edge-1"), 1);
    assert_eq!(clock.increment("edge-1"), 2);
    assert_eq!(clock.increment("hub"), 1);
    assert_eq!(
        clock.iter().collect::<Vec<_>>(),
        vec![("edge-1", 2), ("hub", 1)]
    );
    assert_eq!(
        serde_json::to_value(&clock).unwrap(),
        json!({"edge-1": 2, "hub": 1})
    );
    assert_eq!(clock.total(), 3);
}

#[test]
fn compares_by_the_pointwise_order() {
    let a1 = clock(&[("a", 1)]);
    let a1b1 = clock(&[("a", 1), ("b", 1)]);
    let b2 = clock(&[("b", 2)]);
    assert_eq!(a1.compare(&a1b1), Causality::Before);
    assert_eq!(a1b1.compare(&a1), Causality::After);
    assert_eq!(a1b1.compare(&b2), Causality::Concurrent);
    assert_eq!(VectorClock::new().compare(&a1), Causality::Before);
    assert!(a1b1.dominates(&a1) && a1b1.dominates(&a1b1) && !a1.dominates(&a1b1));
    assert_eq!(
        serde_json::to_value(Causality::Concurrent).unwrap(),
        json!("concurrent")
    );
}

#[test]
fn a_replica_named_twice_keeps_its_larger_count() {
    assert_eq!(clock(&[("a", 3), ("a", 1)]), clock(&[("a", 3)]));
}

#[test]
fn adding_refuses_to_overflow_and_increment_saturates() {
    let mut clock = clock(&[("a", u64::MAX - 1)]);
    assert_eq!(clock.add("a", 2), None);
    assert_eq!(clock.get("a"), u64::MAX - 1, "unchanged");
    assert_eq!(clock.increment("a"), u64::MAX);
    assert_eq!(clock.increment("a"), u64::MAX);
    assert_eq!(clock.add("b", 0), Some(0));
    assert_eq!(clock.iter().count(), 1, "adding zero stores nothing");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Join is a semilattice join: the order in which replicas exchange clocks does not matter.
    #[test]
    fn join_is_associative_commutative_and_idempotent(
        a in arb_clock(),
        b in arb_clock(),
        c in arb_clock(),
    ) {
        prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)));
        prop_assert_eq!(joined(&a, &b), joined(&b, &a));
        prop_assert_eq!(joined(&a, &a), a);
    }

    /// The join has seen everything each input has, and is the least such clock.
    #[test]
    fn join_is_the_least_upper_bound(a in arb_clock(), b in arb_clock(), c in arb_clock()) {
        let ab = joined(&a, &b);
        prop_assert!(ab.dominates(&a) && ab.dominates(&b));
        if c.dominates(&a) && c.dominates(&b) {
            prop_assert!(c.dominates(&ab));
        }
        prop_assert_eq!(a.dominates(&b), joined(&a, &b) == a);
        prop_assert!(ab.iter().all(|(_, count)| count > 0), "no zeros stored");
    }

    /// Comparing from either side gives mirrored answers, agreeing with `dominates`.
    #[test]
    fn compare_is_antisymmetric(a in arb_clock(), b in arb_clock()) {
        let relation = a.compare(&b);
        prop_assert_eq!(b.compare(&a), relation.mirror());
        prop_assert_eq!(relation == Causality::Equal, a == b);
        prop_assert_eq!(
            a.dominates(&b),
            matches!(relation, Causality::Equal | Causality::After)
        );
    }

    /// A new change makes a clock strictly later than it was.
    #[test]
    fn increment_moves_the_clock_after_itself(a in arb_clock(), replica in "[a-e]") {
        let mut next = a.clone();
        let count = next.increment(&replica);
        prop_assert_eq!(count, a.get(&replica) + 1);
        prop_assert_eq!(next.compare(&a), Causality::After);
    }

    /// Two replicas that each change a common state without hearing from the other are
    /// concurrent, and joining them is after both.
    #[test]
    fn changes_at_two_replicas_from_a_common_clock_are_concurrent(
        common in arb_clock(),
        (left, right) in ("[a-e]", "[a-e]").prop_filter("two replicas", |(l, r)| l != r),
    ) {
        let mut a = common.clone();
        a.increment(&left);
        let mut b = common.clone();
        b.increment(&right);
        prop_assert_eq!(a.compare(&b), Causality::Concurrent);
        prop_assert_eq!(joined(&a, &b).compare(&a), Causality::After);
        prop_assert_eq!(joined(&a, &b).compare(&b), Causality::After);
    }

    /// The JSON form reads back as the same clock.
    #[test]
    fn serde_round_trips(a in arb_clock()) {
        let text = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<VectorClock>(&text).unwrap(), a);
    }
}
