use super::*;
use proptest::prelude::*;
use serde_json::json;

fn hlc(wall: i64, logical: u32) -> Hlc {
    Hlc {
        wall: Millis(wall),
        logical,
    }
}

/// Walls from a narrow range so that equal walls (the interesting case) are common, and logical
/// counts that are sometimes about to be exhausted.
fn arb_hlc() -> impl Strategy<Value = Hlc> {
    let logical = prop_oneof![0u32..4, (u32::MAX - 2)..=u32::MAX];
    (arb_now(), logical).prop_map(|(wall, logical)| Hlc { wall, logical })
}

fn arb_now() -> impl Strategy<Value = Millis> {
    (0i64..12).prop_map(Millis)
}

/// What a replica does next: a local event, or receiving a message stamped `remote`.
#[derive(Clone, Debug)]
enum Event {
    Local { now: Millis },
    Receive { now: Millis, remote: Hlc },
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        arb_now().prop_map(|now| Event::Local { now }),
        (arb_now(), arb_hlc()).prop_map(|(now, remote)| Event::Receive { now, remote }),
    ]
}

#[test]
fn a_local_event_takes_the_wall_clock_when_it_is_ahead() {
    assert_eq!(Hlc::tick(hlc(10, 7), Millis(11)), hlc(11, 0));
    assert_eq!(Hlc::tick(hlc(10, 7), Millis(10)), hlc(10, 8));
    assert_eq!(
        Hlc::tick(hlc(10, 7), Millis(3)),
        hlc(10, 8),
        "a clock stepped back"
    );
}

#[test]
fn receiving_follows_the_later_of_the_two_timestamps() {
    assert_eq!(Hlc::observe(hlc(10, 2), hlc(10, 5), Millis(9)), hlc(10, 6));
    assert_eq!(Hlc::observe(hlc(10, 5), hlc(10, 2), Millis(9)), hlc(10, 6));
    assert_eq!(Hlc::observe(hlc(10, 5), hlc(12, 1), Millis(9)), hlc(12, 2));
    assert_eq!(Hlc::observe(hlc(12, 1), hlc(10, 5), Millis(9)), hlc(12, 2));
    assert_eq!(Hlc::observe(hlc(10, 5), hlc(12, 1), Millis(13)), hlc(13, 0));
}

#[test]
fn an_exhausted_logical_count_moves_on_to_the_next_millisecond() {
    assert_eq!(Hlc::tick(hlc(10, u32::MAX), Millis(10)), hlc(11, 0));
    assert_eq!(
        Hlc::observe(hlc(3, 0), hlc(10, u32::MAX), Millis(10)),
        hlc(11, 0)
    );
    let last = hlc(i64::MAX, u32::MAX);
    assert_eq!(
        Hlc::tick(last, Millis(0)),
        last,
        "the very last timestamp stays put rather than wrapping"
    );
}

#[test]
fn prints_as_wall_dot_logical_and_serializes_as_two_numbers() {
    let stamp = hlc(1_764_530_000_000, 3);
    assert_eq!(stamp.to_string(), "1764530000000.3");
    let encoded = serde_json::to_value(stamp).unwrap();
    assert_eq!(
        encoded,
        json!({"wall": 1_764_530_000_000_i64, "logical": 3})
    );
    assert_eq!(serde_json::from_value::<Hlc>(encoded).unwrap(), stamp);
    assert_eq!(Hlc::default(), Hlc::ZERO);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// A local event is stamped after the previous one, at the wall clock when it is ahead.
    #[test]
    fn tick_is_strictly_after_last_and_stays_with_physical_time(last in arb_hlc(), now in arb_now()) {
        let next = Hlc::tick(last, now);
        prop_assert!(next > last);
        let highest = now.max(last.wall);
        if last.logical == u32::MAX && now <= last.wall {
            prop_assert_eq!(next, hlc(highest.0 + 1, 0));
        } else {
            prop_assert_eq!(next.wall, highest);
        }
        if next.wall > last.wall {
            prop_assert_eq!(next.logical, 0, "a new millisecond starts its count afresh");
        }
    }

    /// A received timestamp is stamped after both clocks, and no further ahead than the largest
    /// wall clock reading among the three (one millisecond more when a count is exhausted).
    #[test]
    fn observe_is_strictly_after_both_and_stays_with_physical_time(
        last in arb_hlc(),
        remote in arb_hlc(),
        now in arb_now(),
    ) {
        let next = Hlc::observe(last, remote, now);
        prop_assert!(next > last);
        prop_assert!(next > remote);
        let highest = now.max(last.wall).max(remote.wall);
        if last.logical == u32::MAX || remote.logical == u32::MAX {
            prop_assert!(next.wall == highest || next == hlc(highest.0 + 1, 0));
        } else {
            prop_assert_eq!(next.wall, highest);
        }
        prop_assert_eq!(next, Hlc::observe(remote, last, now), "symmetric in the two clocks");
    }

    /// Whatever the wall clock does, including jumping back, a replica's timestamps only grow.
    #[test]
    fn a_wall_clock_jumping_back_never_turns_the_clock_back(
        start in arb_hlc(),
        events in proptest::collection::vec(arb_event(), 1..24),
    ) {
        let mut last = start;
        for event in events {
            let next = match event {
                Event::Local { now } => Hlc::tick(last, now),
                Event::Receive { now, remote } => {
                    let next = Hlc::observe(last, remote, now);
                    prop_assert!(next > remote);
                    next
                }
            };
            prop_assert!(next > last, "{} then {}", last, next);
            last = next;
        }
    }
}
