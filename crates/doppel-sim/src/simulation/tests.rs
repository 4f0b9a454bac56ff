use std::net::TcpListener;

use super::{SimError, gather, run, shard_devices};
use crate::config::{ConfigError, SimConfig};
use crate::histogram::Histogram;
use crate::progress::ProgressMode;
use crate::report::{Counters, DeviceStats};
use crate::shard::ShardOutcome;

#[test]
fn shards_share_every_device_exactly_once() {
    for (devices, tasks) in [(10, 3), (1, 4), (100_000, 2), (7, 7), (0, 2)] {
        let mut all: Vec<u32> = (0..tasks)
            .flat_map(|task| shard_devices(devices, tasks, task))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..devices).collect::<Vec<_>>());
    }
    assert_eq!(shard_devices(10, 3, 1), [1, 4, 7]);
}

#[test]
fn gathering_puts_devices_back_in_order() {
    let stats = |reports| DeviceStats {
        counters: Counters {
            reports_sent: reports,
            ..Counters::default()
        },
        ..DeviceStats::default()
    };
    let mut latency = Histogram::new();
    latency.record_micros(5);
    let outcomes = vec![
        ShardOutcome {
            devices: vec![0, 2],
            stats: vec![stats(10), stats(12)],
            latency: latency.clone(),
            first_error: None,
            connect_failures_by_kind: [("timed out", 1)].into(),
        },
        ShardOutcome {
            devices: vec![1],
            stats: vec![stats(11)],
            latency,
            first_error: Some("refused".to_owned()),
            connect_failures_by_kind: [("timed out", 2), ("not authorised", 1)].into(),
        },
    ];
    let (devices, latency, first_error, failures_by_kind) = gather(3, outcomes);
    let reports: Vec<u64> = devices
        .iter()
        .map(|device| device.counters.reports_sent)
        .collect();
    assert_eq!(reports, [10, 11, 12]);
    assert_eq!(latency.count(), 2);
    assert_eq!(first_error.as_deref(), Some("refused"));
    assert_eq!(
        failures_by_kind,
        [("not authorised", 1), ("timed out", 3)].into()
    );
}

#[test]
fn a_bad_setting_stops_the_run_before_it_starts() {
    let mut config = SimConfig::new("127.0.0.1:1", 1);
    config.connect_rate = 0;
    let err = run(&config, ProgressMode::Hidden).expect_err("refused");
    assert!(
        matches!(err, SimError::Config(ConfigError::ConnectRate)),
        "{err}"
    );
}

#[test]
fn a_hub_that_is_not_there_fails_the_run_at_once() {
    // A port that was just free: nothing listens on it any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let config = SimConfig::new(addr.to_string(), 1);
    let err = run(&config, ProgressMode::Hidden).expect_err("unreachable");
    assert!(matches!(err, SimError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot reach the hub at {addr}")),
        "{err}"
    );
}

#[test]
fn a_hub_address_that_does_not_resolve_is_named() {
    let config = SimConfig::new("no-such-host.invalid:1883", 1);
    let err = run(&config, ProgressMode::Hidden).expect_err("unresolvable");
    assert!(matches!(err, SimError::Resolve { .. }), "{err}");
    let config = SimConfig::new("missing-port", 1);
    let err = run(&config, ProgressMode::Hidden).expect_err("no port");
    assert!(matches!(err, SimError::Resolve { .. }), "{err}");
}

#[test]
fn more_devices_than_open_files_are_refused_with_the_way_out() {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(_, hard)| hard)
        .expect("limits can be read");
    let Ok(devices) = u32::try_from(limit + 1) else {
        return; // A hard limit beyond u32: no run can exceed it.
    };
    if devices > crate::config::MAX_DEVICES {
        return;
    }
    let config = SimConfig::new("127.0.0.1:1", devices);
    let err = run(&config, ProgressMode::Hidden).expect_err("too many devices");
    assert!(matches!(err, SimError::TooManyDevices { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("ulimit -n"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}
