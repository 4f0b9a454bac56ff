use std::time::Duration;

use proptest::prelude::*;

use super::{LinkModel, LinkModelError, LinkState, holding_time};

/// Enough phases that sampling error is far below the tolerances: with 100,000 phases of each
/// kind the relative standard error of a mean is about 0.3%.
const PHASES: usize = 200_000;

/// (λ, μ) pairs from flaky to mostly down, so the law is checked away from the symmetric case.
const MODELS: [(f64, f64); 4] = [(1.0, 1.0), (0.1, 2.0), (5.0, 0.5), (20.0, 20.0)];

fn model(disconnect_rate: f64, reconnect_rate: f64) -> LinkModel {
    LinkModel {
        disconnect_rate,
        reconnect_rate,
    }
}

/// Total Up and Down seconds and the number of phases of each, over `PHASES` phases.
fn totals(model: &LinkModel, seed: u64) -> [(f64, usize); 2] {
    let mut totals = [(0.0, 0); 2];
    for (state, duration) in model.schedule(seed).take(PHASES) {
        let slot = &mut totals[usize::from(state == LinkState::Down)];
        slot.0 += duration.as_secs_f64();
        slot.1 += 1;
    }
    totals
}

#[test]
fn measured_down_fraction_matches_the_model() {
    for (seed, &(lambda, mu)) in (1..).zip(MODELS.iter()) {
        let model = model(lambda, mu);
        let [(up, _), (down, _)] = totals(&model, seed);
        let measured = down / (up + down);
        let expected = model.expected_down_fraction();
        assert!(
            (measured - expected).abs() < 0.01,
            "λ={lambda} μ={mu}: measured {measured}, expected {expected}"
        );
    }
}

#[test]
fn mean_phase_durations_are_the_inverse_rates() {
    for (seed, &(lambda, mu)) in (100..).zip(MODELS.iter()) {
        let [(up, ups), (down, downs)] = totals(&model(lambda, mu), seed);
        assert_eq!((ups, downs), (PHASES / 2, PHASES / 2));
        let mean_up = up / ups as f64;
        let mean_down = down / downs as f64;
        assert!(
            (mean_up * lambda - 1.0).abs() < 0.02,
            "λ={lambda}: mean up {mean_up}s, expected {}s",
            1.0 / lambda
        );
        assert!(
            (mean_down * mu - 1.0).abs() < 0.02,
            "μ={mu}: mean down {mean_down}s, expected {}s",
            1.0 / mu
        );
    }
}

#[test]
fn expected_down_fraction_is_lambda_over_lambda_plus_mu() {
    assert_eq!(model(1.0, 3.0).expected_down_fraction(), 0.25);
    assert_eq!(model(2.0, 2.0).expected_down_fraction(), 0.5);
}

#[test]
fn the_same_seed_gives_the_same_schedule_and_another_seed_does_not() {
    let model = model(3.0, 7.0);
    let first: Vec<_> = model.schedule(42).take(1_000).collect();
    let again: Vec<_> = model.schedule(42).take(1_000).collect();
    let other: Vec<_> = model.schedule(43).take(1_000).collect();
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn validate_accepts_positive_finite_rates() {
    assert_eq!(model(0.001, 1e6).validate(), Ok(()));
}

#[test]
fn validate_rejects_zero_negative_infinite_and_nan_rates() {
    for bad in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        match model(bad, 1.0).validate() {
            Err(LinkModelError::InvalidRate { name, value }) => {
                assert_eq!(name, "disconnect_rate");
                assert!(value.is_nan() || value == bad, "{value} reported for {bad}");
            }
            other => panic!("disconnect_rate {bad} gave {other:?}"),
        }
        match model(1.0, bad).validate() {
            Err(LinkModelError::InvalidRate { name, .. }) => assert_eq!(name, "reconnect_rate"),
            other => panic!("reconnect_rate {bad} gave {other:?}"),
        }
    }
}

#[test]
fn the_error_names_the_field_and_the_value() {
    let error = model(1.0, -2.0).validate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "reconnect_rate must be a finite number of events per second above zero, got -2"
    );
}

#[test]
fn an_invalid_rate_gives_a_phase_that_never_ends_rather_than_a_panic() {
    for rate in [0.0, -1.0, f64::NAN] {
        assert_eq!(holding_time(rate, 0.5), Duration::MAX);
    }
    assert_eq!(holding_time(f64::INFINITY, 0.5), Duration::ZERO);
    assert_eq!(holding_time(f64::MIN_POSITIVE, 0.5), Duration::MAX);
    let phases: Vec<_> = model(0.0, 1.0).schedule(1).take(2).collect();
    assert_eq!(phases[0], (LinkState::Up, Duration::MAX));
}

#[test]
fn inverse_transform_edges() {
    // u = 0 is a possible sample and gives a zero-length phase, not a negative one.
    assert_eq!(holding_time(2.0, 0.0), Duration::ZERO);
    // The median of an exponential of rate r is ln 2 / r, to the nanosecond `Duration` keeps.
    let median = holding_time(2.0, 0.5).as_secs_f64();
    assert!((median - std::f64::consts::LN_2 / 2.0).abs() <= 1e-9);
}

proptest! {
    #[test]
    fn schedules_alternate_from_up(
        lambda in 1e-3_f64..1e3,
        mu in 1e-3_f64..1e3,
        seed: u64,
    ) {
        let model = model(lambda, mu);
        let phases: Vec<_> = model.schedule(seed).take(64).collect();
        for (index, (state, duration)) in phases.iter().enumerate() {
            let expected = if index % 2 == 0 { LinkState::Up } else { LinkState::Down };
            prop_assert_eq!(*state, expected);
            prop_assert!(*duration < Duration::MAX);
        }
        let again: Vec<_> = model.schedule(seed).take(64).collect();
        prop_assert_eq!(phases, again);
    }
}
