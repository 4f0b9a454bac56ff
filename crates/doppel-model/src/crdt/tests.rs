use super::*;
use crate::time::Millis;
use proptest::prelude::*;
use serde_json::json;
use std::sync::LazyLock;

const REPLICAS: [&str; 3] = ["a", "b", "c"];

fn stamp(wall: i64, logical: u32) -> Hlc {
    Hlc {
        wall: Millis(wall),
        logical,
    }
}

fn joined(a: &Crdt, b: &Crdt) -> Crdt {
    let mut out = a.clone();
    out.join(b).unwrap();
    out
}

fn applied(kind: CrdtKind, ops: &[(Value, &str, Hlc)]) -> Crdt {
    let mut state = Crdt::new(kind);
    for (op, replica, stamp) in ops {
        state.apply(op, replica, *stamp).unwrap();
    }
    state
}

// ---------------------------------------------------------------------------------------------
// Generated histories

/// Values for registers and sets: equal numbers spelt differently (`1`, `1.0`), an object whose
/// key order could matter, and `null`, which a register must tell apart from empty.
static VALUES: LazyLock<[Value; 8]> = LazyLock::new(|| {
    [
        json!("x"),
        json!(1),
        json!(1.0),
        json!({"k": [1, 2], "a": null}),
        json!("y"),
        json!(true),
        json!(null),
        json!([]),
    ]
});

/// Numbers where a plain f64 comparison goes wrong: signed zeros, integers past 2^53, and a
/// pair (99999999999999999 < 1e17) whose texts sort the other way.
static NUMBERS: LazyLock<[Value; 12]> = LazyLock::new(|| {
    [
        json!(0),
        json!(-0.0),
        json!(0.0),
        json!(1),
        json!(1.0),
        json!(-3),
        json!(2.5),
        json!(9_007_199_254_740_993_u64),
        json!(9_007_199_254_740_992.0),
        json!(99_999_999_999_999_999_u64),
        json!(1e17),
        json!(u64::MAX),
    ]
});

/// Random material for one operation, read differently by each kind, so that one generated
/// history drives all six kinds.
#[derive(Clone, Debug)]
struct OpSeed {
    pick: usize,
    amount: i64,
    mask: u8,
}

fn arb_seed() -> impl Strategy<Value = OpSeed> {
    (any::<usize>(), -1000i64..1000, any::<u8>()).prop_map(|(pick, amount, mask)| OpSeed {
        pick,
        amount,
        mask,
    })
}

fn op_for(kind: CrdtKind, seed: &OpSeed) -> Value {
    match kind {
        CrdtKind::GCounter => json!({"increment": seed.amount.unsigned_abs()}),
        CrdtKind::PnCounter if seed.pick.is_multiple_of(2) => json!({"increment": seed.amount}),
        CrdtKind::PnCounter => json!({"decrement": seed.amount.unsigned_abs()}),
        CrdtKind::LwwRegister => VALUES[seed.pick % VALUES.len()].clone(),
        CrdtKind::MaxRegister | CrdtKind::MinRegister => NUMBERS[seed.pick % NUMBERS.len()].clone(),
        CrdtKind::OrSet => {
            // Four candidate elements: the low bits of the mask pick the adds, the high the
            // removes, so one op sometimes adds and removes the same element.
            let chosen = |bits: u8| -> Vec<Value> {
                (0..4)
                    .filter(|i| bits & (1 << i) != 0)
                    .map(|i| VALUES[i].clone())
                    .collect()
            };
            let (adds, removes) = (chosen(seed.mask & 0xF), chosen(seed.mask >> 4));
            match (adds.is_empty(), removes.is_empty()) {
                (false, true) | (true, true) => json!({"add": adds}),
                (true, false) => json!({"remove": removes}),
                (false, false) => json!({"add": adds, "remove": removes}),
            }
        }
    }
}

/// One event in a history of three replicas.
#[derive(Clone, Debug)]
enum Step {
    /// `replica` writes, its wall clock reading `now` (which may jump back).
    Update {
        replica: usize,
        seed: OpSeed,
        now: i64,
    },
    /// `to` receives and joins `from`'s whole state.
    Sync { from: usize, to: usize },
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..3usize, arb_seed(), 0i64..6)
            .prop_map(|(replica, seed, now)| Step::Update { replica, seed, now }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    // Fewer than 24 steps, three in four of them updates: about 6 updates per replica at most
    // on average, enough for every interleaving of adds, removes and syncs to show up.
    proptest::collection::vec(step, 0..24)
}

/// The replicas' states after a history, with each replica's last HLC timestamp.
struct Run {
    states: [Crdt; 3],
    clocks: [Hlc; 3],
}

fn run(kind: CrdtKind, steps: &[Step]) -> Run {
    let mut states = [(); 3].map(|()| Crdt::new(kind));
    let mut clocks = [Hlc::ZERO; 3];
    for step in steps {
        match step {
            Step::Update { replica, seed, now } => {
                clocks[*replica] = Hlc::tick(clocks[*replica], Millis(*now));
                states[*replica]
                    .apply(&op_for(kind, seed), REPLICAS[*replica], clocks[*replica])
                    .unwrap();
            }
            Step::Sync { from, to } => {
                let sent = states[*from].clone();
                states[*to].join(&sent).unwrap();
            }
        }
    }
    Run { states, clocks }
}

/// Each replica sends its whole state to each other one, in the given order. Once every ordered
/// pair has had its turn, every replica holds every update, whatever the order.
fn sync_all(states: &mut [Crdt], pairs: &[(usize, usize)]) {
    for &(from, to) in pairs {
        let sent = states[from].clone();
        states[to].join(&sent).unwrap();
    }
}

fn all_pairs(replicas: usize) -> Vec<(usize, usize)> {
    (0..replicas)
        .flat_map(|from| (0..replicas).map(move |to| (from, to)))
        .filter(|(from, to)| from != to)
        .collect()
}

/// One event among up to four counter replicas; indices wrap to the number of replicas.
#[derive(Clone, Debug)]
enum Gossip {
    Increment { replica: usize, amount: i64 },
    Sync { from: usize, to: usize },
}

fn arb_gossip() -> impl Strategy<Value = Gossip> {
    prop_oneof![
        (0..4usize, -50i64..50).prop_map(|(replica, amount)| Gossip::Increment { replica, amount }),
        (0..4usize, 0..4usize).prop_map(|(from, to)| Gossip::Sync { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Join is a semilattice join for every kind, so replicas agree however often and in
    /// whatever order they exchange states.
    #[test]
    fn join_is_associative_commutative_and_idempotent(steps in arb_steps()) {
        for kind in CrdtKind::ALL {
            let Run { states: [a, b, c], .. } = run(kind, &steps);
            prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)), "{}", kind);
            prop_assert_eq!(joined(&a, &b), joined(&b, &a), "{}", kind);
            prop_assert_eq!(&joined(&a, &a), &a, "{}", kind);

            let everything = joined(&joined(&a, &b), &c);
            let mut states = [a, b, c];
            sync_all(&mut states, &all_pairs(3));
            for state in &states {
                prop_assert_eq!(state, &everything, "{} after every replica synced", kind);
            }
        }
    }

    /// Updates only grow the state, the join is the least state above both, and the order is
    /// the one the join induces.
    #[test]
    fn updates_and_joins_only_grow_the_state(
        steps in arb_steps(),
        seed in arb_seed(),
        writer in 0..3usize,
        now in 0i64..8,
    ) {
        for kind in CrdtKind::ALL {
            let Run { states: [a, b, c], clocks } = run(kind, &steps);
            let mut next = a.clone();
            next.apply(&op_for(kind, &seed), REPLICAS[writer], Hlc::tick(clocks[writer], Millis(now)))
                .unwrap();
            prop_assert!(a.is_included_in(&next), "{}: {:?} then {:?}", kind, a, next);

            let ab = joined(&a, &b);
            prop_assert!(a.is_included_in(&ab) && b.is_included_in(&ab), "{}", kind);
            prop_assert_eq!(a.is_included_in(&b), joined(&a, &b) == b, "{}", kind);
            prop_assert_eq!(b.is_included_in(&c), joined(&b, &c) == c, "{}", kind);
            if a.is_included_in(&c) && b.is_included_in(&c) {
                prop_assert!(ab.is_included_in(&c), "{}: the join is the least upper bound", kind);
            }
            prop_assert!(Crdt::new(kind).is_included_in(&a) && a.is_included_in(&a), "{}", kind);
        }
    }

    /// A state reads back from JSON as itself, so a stored or sent state loses nothing.
    #[test]
    fn serde_round_trips(steps in arb_steps()) {
        for kind in CrdtKind::ALL {
            // The join of all three replicas holds every update of the history.
            let Run { states: [a, b, c], .. } = run(kind, &steps);
            let state = joined(&joined(&a, &b), &c);
            let text = serde_json::to_string(&state).unwrap();
            let back: Crdt = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &state, "{}: {}", kind, text);
            prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }

    /// Replicas that increment and gossip in any order, repeating syncs, count every increment
    /// exactly once: never more at any moment, all of them once everyone has synced, and
    /// syncing again changes nothing.
    #[test]
    fn counters_count_every_increment_once_however_replicas_sync(
        replicas in 2..5usize,
        events in proptest::collection::vec(arb_gossip(), 0..32),
        final_order in Just(all_pairs(4)).prop_shuffle(),
    ) {
        let names = ["a", "b", "c", "d"];
        let mut grow = vec![Crdt::new(CrdtKind::GCounter); replicas];
        let mut both = vec![Crdt::new(CrdtKind::PnCounter); replicas];
        let (mut grown, mut net) = (0u64, 0i64);
        for (at, event) in events.into_iter().enumerate() {
            match event {
                Gossip::Increment { replica, amount } => {
                    let replica = replica % replicas;
                    let at = stamp(at as i64, 0);
                    grow[replica]
                        .apply(&json!({"increment": amount.unsigned_abs()}), names[replica], at)
                        .unwrap();
                    both[replica]
                        .apply(&json!({"increment": amount}), names[replica], at)
                        .unwrap();
                    grown += amount.unsigned_abs();
                    net += amount;
                }
                Gossip::Sync { from, to } => {
                    let pair = [(from % replicas, to % replicas)];
                    sync_all(&mut grow, &pair);
                    sync_all(&mut both, &pair);
                }
            }
            for counter in &grow {
                prop_assert!(counter.value().as_u64().unwrap() <= grown, "never counts twice");
            }
        }
        let order: Vec<_> = final_order
            .into_iter()
            .filter(|&(from, to)| from < replicas && to < replicas)
            .collect();
        sync_all(&mut grow, &order);
        sync_all(&mut both, &order);
        for (g, pn) in grow.iter().zip(&both) {
            prop_assert_eq!(g.value(), json!(grown));
            prop_assert_eq!(pn.value(), json!(net));
        }
        let (grow_before, both_before) = (grow.clone(), both.clone());
        sync_all(&mut grow, &order);
        sync_all(&mut both, &all_pairs(replicas));
        prop_assert_eq!(grow, grow_before);
        prop_assert_eq!(both, both_before);
    }
}

// ---------------------------------------------------------------------------------------------
// Kinds and shapes

#[test]
fn kinds_parse_in_either_spelling() {
    for kind in CrdtKind::ALL {
        assert_eq!(CrdtKind::parse(kind.name()), Some(kind));
        assert_eq!(CrdtKind::parse(&kind.name().to_uppercase()), Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.name()));
        assert_eq!(Crdt::new(kind).kind(), kind);
    }
    assert_eq!(CrdtKind::parse("G-Counter"), Some(CrdtKind::GCounter));
    assert_eq!(CrdtKind::parse("PN-Counter"), Some(CrdtKind::PnCounter));
    assert_eq!(CrdtKind::parse("LWW-Register"), Some(CrdtKind::LwwRegister));
    assert_eq!(CrdtKind::parse("OR-Set"), Some(CrdtKind::OrSet));
    assert_eq!(CrdtKind::parse("counter"), None);
    assert_eq!(CrdtKind::parse("gcounter"), None);
    assert_eq!(CrdtKind::parse(""), None);
}

#[test]
fn empty_states_have_empty_values_and_compact_json() {
    let expected = [
        (json!(0), json!({"type": "g_counter", "counts": {}})),
        (
            json!(0),
            json!({"type": "pn_counter", "increments": {}, "decrements": {}}),
        ),
        (json!(null), json!({"type": "lww_register"})),
        (json!(null), json!({"type": "max_register"})),
        (json!(null), json!({"type": "min_register"})),
        (json!([]), json!({"type": "or_set", "elements": []})),
    ];
    for (kind, (value, encoded)) in CrdtKind::ALL.into_iter().zip(expected) {
        let state = Crdt::new(kind);
        assert_eq!(state.value(), value, "{kind}");
        assert_eq!(serde_json::to_value(&state).unwrap(), encoded, "{kind}");
        assert_eq!(serde_json::from_value::<Crdt>(encoded).unwrap(), state);
    }
}

#[test]
fn states_serialize_compactly_and_stably() {
    let at = stamp(1_764_530_000_000, 0);
    let g = applied(
        CrdtKind::GCounter,
        &[(json!({"increment": 5}), "edge-1", at)],
    );
    assert_eq!(
        serde_json::to_value(&g).unwrap(),
        json!({"type": "g_counter", "counts": {"edge-1": 5}})
    );
    let pn = applied(
        CrdtKind::PnCounter,
        &[
            (json!({"increment": 5}), "edge-1", at),
            (json!({"decrement": 1}), "edge-2", at),
        ],
    );
    assert_eq!(
        serde_json::to_value(&pn).unwrap(),
        json!({"type": "pn_counter", "increments": {"edge-1": 5}, "decrements": {"edge-2": 1}})
    );
    assert_eq!(pn.value(), json!(4));
    let lww = applied(
        CrdtKind::LwwRegister,
        &[(json!({"mode": "eco"}), "hub", at)],
    );
    assert_eq!(
        serde_json::to_value(&lww).unwrap(),
        json!({"type": "lww_register", "current": {
            "value": {"mode": "eco"},
            "stamp": {"wall": 1_764_530_000_000_i64, "logical": 0},
            "replica": "hub",
        }})
    );
    let max = applied(CrdtKind::MaxRegister, &[(json!(21.5), "hub", at)]);
    assert_eq!(
        serde_json::to_value(&max).unwrap(),
        json!({"type": "max_register", "value": 21.5})
    );
    let set = applied(
        CrdtKind::OrSet,
        &[
            (json!({"add": ["on", 7]}), "hub", at),
            (json!({"remove": [7]}), "hub", stamp(1_764_530_000_000, 1)),
        ],
    );
    let tag = json!({"replica": "hub", "stamp": {"wall": 1_764_530_000_000_i64, "logical": 0}});
    assert_eq!(
        serde_json::to_value(&set).unwrap(),
        json!({"type": "or_set", "elements": [
            {"value": "on", "added": [tag]},
            {"value": 7, "added": [tag], "removed": [tag]},
        ]})
    );
    assert_eq!(set.value(), json!(["on"]));
}

#[test]
fn an_element_listed_twice_in_stored_json_is_read_as_the_join_of_both() {
    let tag = |logical: u32| json!({"replica": "a", "stamp": {"wall": 1, "logical": logical}});
    let stored = json!({"type": "or_set", "elements": [
        {"value": {"b": 1, "a": 2}, "added": [tag(0)]},
        {"value": {"a": 2, "b": 1}, "added": [tag(1)], "removed": [tag(0)]},
    ]});
    let set: Crdt = serde_json::from_value(stored).unwrap();
    assert_eq!(
        serde_json::to_value(&set).unwrap(),
        json!({"type": "or_set", "elements": [
            {"value": {"a": 2, "b": 1}, "added": [tag(0), tag(1)], "removed": [tag(0)]},
        ]})
    );
}

#[test]
fn elements_are_identified_by_canonical_json_whatever_the_key_order() {
    // Guards the assumption in `canonical`: if serde_json's `preserve_order` feature were ever
    // switched on, equal objects would print differently and this would fail.
    assert_eq!(canonical(&json!({"b": 1, "a": 2})), r#"{"a":2,"b":1}"#);
    let mut set = applied(
        CrdtKind::OrSet,
        &[(json!({"add": [{"b": 1, "a": 2}]}), "a", stamp(1, 0))],
    );
    set.apply(&json!({"remove": [{"a": 2, "b": 1}]}), "a", stamp(2, 0))
        .unwrap();
    assert_eq!(set.value(), json!([]));
}

// ---------------------------------------------------------------------------------------------
// Operations

#[test]
fn invalid_operations_are_refused_and_change_nothing() {
    use CrdtKind::*;
    let cases = [
        (GCounter, json!({"increment": -1}), "only grows"),
        (GCounter, json!({"increment": 1.5}), "whole number"),
        (GCounter, json!({"increment": "1"}), "whole number"),
        (
            GCounter,
            json!({"decrement": 1}),
            r#"expected {"increment": n}"#,
        ),
        (GCounter, json!({"increment": 1, "by": "me"}), "expected"),
        (GCounter, json!(5), "expected"),
        (PnCounter, json!({"increment": 0.5}), "whole number"),
        (PnCounter, json!({"increment": u64::MAX}), "whole number"),
        (PnCounter, json!({"decrement": -1}), "whole number"),
        (PnCounter, json!({"add": 1}), r#"{"decrement": n}"#),
        (PnCounter, json!({}), "expected"),
        (PnCounter, json!(null), "expected"),
        (
            MaxRegister,
            json!("3"),
            "expected a JSON number, got a string",
        ),
        (MaxRegister, json!(null), "expected a JSON number, got null"),
        (MinRegister, json!({"value": 3}), "got an object"),
        (OrSet, json!("x"), "expected"),
        (OrSet, json!([]), "expected"),
        (OrSet, json!({}), "at least one"),
        (OrSet, json!({"add": "x"}), r#""add" must be an array"#),
        (OrSet, json!({"remove": 1}), r#""remove" must be an array"#),
        (
            OrSet,
            json!({"add": [], "clear": true}),
            r#"the key "clear""#,
        ),
    ];
    for (kind, op, says) in cases {
        let mut state = applied(kind, &[]);
        let before = state.clone();
        let err = state.apply(&op, "a", stamp(1, 0)).unwrap_err();
        assert!(
            matches!(&err, CrdtError::InvalidOperation { kind: k, .. } if *k == kind),
            "{kind} {op}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{kind} {op}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid {kind} operation: "))
        );
        assert_eq!(state, before, "{kind} {op}");
    }
}

#[test]
fn a_long_operation_is_quoted_only_in_part() {
    let op = json!({"increment": "9".repeat(1000)});
    let err = Crdt::new(CrdtKind::GCounter)
        .apply(&op, "a", stamp(1, 0))
        .unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn counters_refuse_to_overflow() {
    let mut g = applied(
        CrdtKind::GCounter,
        &[(json!({"increment": u64::MAX - 1}), "a", stamp(1, 0))],
    );
    let err = g
        .apply(&json!({"increment": 2}), "b", stamp(1, 0))
        .unwrap_err();
    assert!(err.to_string().contains("would exceed"), "{err}");
    g.apply(&json!({"increment": 1}), "b", stamp(1, 0)).unwrap();
    assert_eq!(g.value(), json!(u64::MAX));

    let mut pn = applied(
        CrdtKind::PnCounter,
        &[(json!({"increment": i64::MAX}), "a", stamp(1, 0))],
    );
    let before = pn.clone();
    assert!(
        pn.apply(&json!({"increment": 1}), "a", stamp(2, 0))
            .is_err()
    );
    assert_eq!(pn, before);
    pn.apply(&json!({"decrement": u64::MAX}), "b", stamp(2, 0))
        .unwrap();
    assert_eq!(pn.value(), json!(i64::MIN));
    assert!(
        pn.apply(&json!({"increment": -1}), "b", stamp(3, 0))
            .is_err()
    );
}

#[test]
fn joined_counters_beyond_the_range_show_the_end_of_the_range() {
    let near_max = |replica| {
        applied(
            CrdtKind::GCounter,
            &[(json!({"increment": u64::MAX}), replica, stamp(1, 0))],
        )
    };
    assert_eq!(
        joined(&near_max("a"), &near_max("b")).value(),
        json!(u64::MAX)
    );
    let up = |replica| {
        applied(
            CrdtKind::PnCounter,
            &[(json!({"increment": i64::MAX}), replica, stamp(1, 0))],
        )
    };
    assert_eq!(joined(&up("a"), &up("b")).value(), json!(i64::MAX));
}

#[test]
fn joining_different_kinds_is_refused() {
    let mut g = Crdt::new(CrdtKind::GCounter);
    let pn = Crdt::new(CrdtKind::PnCounter);
    assert_eq!(
        g.join(&pn),
        Err(CrdtError::KindMismatch {
            expected: CrdtKind::GCounter,
            found: CrdtKind::PnCounter
        })
    );
    assert_eq!(g, Crdt::new(CrdtKind::GCounter));
    assert!(!g.is_included_in(&pn) && !pn.is_included_in(&g));
}

#[test]
fn the_last_writer_wins_whichever_state_arrives_first() {
    let older = applied(CrdtKind::LwwRegister, &[(json!("eco"), "hub", stamp(5, 0))]);
    let newer = applied(CrdtKind::LwwRegister, &[(json!(null), "edge", stamp(5, 1))]);
    assert_eq!(joined(&older, &newer).value(), json!(null));
    assert_eq!(joined(&newer, &older), joined(&older, &newer));
    assert!(older.is_included_in(&newer) && !newer.is_included_in(&older));

    // Same stamp: the replica id decides.
    let tie = applied(
        CrdtKind::LwwRegister,
        &[(json!("boost"), "zed", stamp(5, 0))],
    );
    assert_eq!(joined(&older, &tie).value(), json!("boost"));

    // A write stamped before the current one loses, as it would in a join.
    let mut stale = newer.clone();
    stale.apply(&json!("late"), "hub", stamp(4, 0)).unwrap();
    assert_eq!(stale, newer);
}

#[test]
fn number_registers_compare_numbers_exactly() {
    let max_of = |numbers: &[Value]| {
        let ops: Vec<_> = numbers
            .iter()
            .map(|n| (n.clone(), "a", stamp(1, 0)))
            .collect();
        (
            applied(CrdtKind::MaxRegister, &ops).value(),
            applied(CrdtKind::MinRegister, &ops).value(),
        )
    };
    assert_eq!(
        max_of(&[json!(3), json!(-2.5), json!(7)]),
        (json!(7), json!(-2.5))
    );
    assert_eq!(
        max_of(&[json!(u64::MAX), json!(u64::MAX - 1)]),
        (json!(u64::MAX), json!(u64::MAX - 1)),
        "both round to the same f64"
    );
    assert_eq!(
        max_of(&[json!(99_999_999_999_999_999_u64), json!(1e17)]),
        (json!(1e17), json!(99_999_999_999_999_999_u64))
    );
    assert_eq!(
        max_of(&[
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_992.5_f64)
        ])
        .0,
        json!(9_007_199_254_740_993_u64)
    );
    assert_eq!(max_of(&[json!(-1), json!(-0.5)]), (json!(-0.5), json!(-1)));
    // Equal numbers spelt differently: a fixed choice, whichever comes first.
    assert_eq!(
        max_of(&[json!(1), json!(1.0)]),
        max_of(&[json!(1.0), json!(1)])
    );
    assert_eq!(max_of(&[]), (json!(null), json!(null)));
    // Minus zero equals zero by `==`; it is stored as zero so that equal states print alike.
    let zero = applied(CrdtKind::MaxRegister, &[(json!(-0.0), "a", stamp(1, 0))]);
    assert_eq!(
        serde_json::to_string(&zero).unwrap(),
        r#"{"type":"max_register","value":0.0}"#
    );
}

#[test]
fn a_concurrent_add_wins_over_a_remove() {
    let add = json!({"add": ["fan"]});
    let remove = json!({"remove": ["fan"]});
    let mut hub = applied(CrdtKind::OrSet, &[(add.clone(), "hub", stamp(1, 0))]);
    let mut edge = hub.clone();
    // The edge removes the element it saw while the hub adds it again.
    edge.apply(&remove, "edge", stamp(2, 0)).unwrap();
    hub.apply(&add, "hub", stamp(3, 0)).unwrap();
    assert_eq!(edge.value(), json!([]));
    assert_eq!(joined(&hub, &edge).value(), json!(["fan"]));
    assert_eq!(joined(&edge, &hub).value(), json!(["fan"]));

    // A remove that has seen every add removes the element for good.
    let mut synced = joined(&hub, &edge);
    synced.apply(&remove, "edge", stamp(4, 0)).unwrap();
    assert_eq!(joined(&synced, &hub).value(), json!([]));
}

#[test]
fn an_op_that_adds_and_removes_an_element_leaves_it_present() {
    let mut set = applied(
        CrdtKind::OrSet,
        &[(json!({"add": ["a", "b"]}), "hub", stamp(1, 0))],
    );
    set.apply(
        &json!({"add": ["b", "c"], "remove": ["a", "b", "z"]}),
        "hub",
        stamp(2, 0),
    )
    .unwrap();
    assert_eq!(set.value(), json!(["b", "c"]));
}

#[test]
fn set_values_are_sorted_by_canonical_text() {
    let set = applied(
        CrdtKind::OrSet,
        &[(
            json!({"add": ["b", 10, "a", 9, null, {"k": 1}]}),
            "hub",
            stamp(1, 0),
        )],
    );
    assert_eq!(set.value(), json!(["a", "b", 10, 9, null, {"k": 1}]));
}
