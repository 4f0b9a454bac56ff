use std::time::Duration;

use super::{ChaosPlan, ChaosStep};

const MAX_PHASE: Duration = Duration::from_millis(500);

#[test]
fn the_same_seed_gives_the_same_plan_and_another_seed_does_not() {
    let plan = ChaosPlan::generate(7, 100, MAX_PHASE);
    assert_eq!(plan, ChaosPlan::generate(7, 100, MAX_PHASE));
    assert_ne!(plan, ChaosPlan::generate(8, 100, MAX_PHASE));
}

#[test]
fn a_plan_has_the_requested_steps_of_every_kind_within_the_bound() {
    let plan = ChaosPlan::generate(1, 1_000, MAX_PHASE);
    assert_eq!(plan.steps.len(), 1_000);
    let mut seen = [0; 4];
    for step in &plan.steps {
        let durations = match *step {
            ChaosStep::Cut(length) => {
                seen[0] += 1;
                vec![length]
            }
            ChaosStep::Heal(length) => {
                seen[1] += 1;
                vec![length]
            }
            ChaosStep::Delay(delay, length) => {
                seen[2] += 1;
                vec![delay, length]
            }
            ChaosStep::Restart => {
                seen[3] += 1;
                vec![]
            }
        };
        assert!(
            durations.iter().all(|duration| *duration <= MAX_PHASE),
            "{step:?}"
        );
    }
    // Uniform over four kinds: 250 expected each; 150 is more than six standard deviations off.
    assert!(seen.iter().all(|&count| count > 150), "{seen:?}");
}

#[test]
fn edge_sizes() {
    assert!(ChaosPlan::generate(1, 0, MAX_PHASE).steps.is_empty());
    let instant = ChaosPlan::generate(1, 50, Duration::ZERO);
    assert!(instant.steps.iter().all(|step| match *step {
        ChaosStep::Cut(length) | ChaosStep::Heal(length) => length.is_zero(),
        ChaosStep::Delay(delay, length) => delay.is_zero() && length.is_zero(),
        ChaosStep::Restart => true,
    }));
    // Durations beyond u64 nanoseconds are capped rather than overflowing.
    assert_eq!(ChaosPlan::generate(1, 10, Duration::MAX).steps.len(), 10);
}
