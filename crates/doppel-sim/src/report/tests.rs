use std::time::Duration;

use doppel_netfault::LinkModel;
use serde_json::{Value, json};

use super::{Counters, DeviceStats, SimReport, Totals};
use crate::config::SimConfig;
use crate::histogram::Histogram;

fn device(reports: u64, partitioned_ms: u64, connected: bool) -> DeviceStats {
    DeviceStats {
        counters: Counters {
            connects: 3,
            connect_failures: 1,
            subscribe_failures: 0,
            reports_sent: reports,
            reports_acknowledged: reports - 1,
            deltas_applied: 2,
            commands_acknowledged: 1,
            disconnects: 2,
            connections_lost: 0,
        },
        partitioned: Duration::from_millis(partitioned_ms),
        observed: Duration::from_secs(4),
        connected,
    }
}

fn report() -> SimReport {
    let mut config = SimConfig::new("127.0.0.1:1883", 2);
    config.link = Some(LinkModel {
        disconnect_rate: 0.5,
        reconnect_rate: 2.0,
    });
    config.interval = Duration::from_millis(200);
    config.jitter = Duration::from_millis(50);
    config.duration = Duration::from_secs(4);
    let mut latency = Histogram::new();
    // Tops of their buckets, so the percentiles read back exactly.
    for micros in [1_023, 2_047, 3_071, 49_151] {
        latency.record_micros(micros);
    }
    SimReport::new(
        &config,
        2,
        Duration::from_secs(4),
        false,
        vec![device(20, 1_000, true), device(10, 600, false)],
        &latency,
    )
}

#[test]
fn totals_add_up_every_device() {
    let devices = [device(20, 1_000, true), device(10, 600, false)];
    let totals = Totals::of(&devices);
    assert_eq!(totals.devices, 2);
    assert_eq!(totals.connected_at_end, 1);
    assert_eq!(totals.counters.connects, 6);
    assert_eq!(totals.counters.reports_sent, 30);
    assert_eq!(totals.counters.reports_acknowledged, 28);
    assert_eq!(totals.counters.deltas_applied, 4);
    assert_eq!(totals.counters.commands_acknowledged, 2);
    assert_eq!(totals.counters.disconnects, 4);
    assert!((totals.partitioned_seconds - 1.6).abs() < 1e-9);
    assert!((totals.observed_seconds - 8.0).abs() < 1e-9);
}

/// The JSON report is read by scripts (and the end-to-end test): its shape is an interface.
#[test]
fn the_json_report_has_its_documented_shape() {
    let json: Value = serde_json::from_str(&report().to_json().expect("JSON")).expect("JSON");
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|object| object.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&json),
        [
            "connect_failures_by_kind",
            "devices",
            "elapsed_seconds",
            "interrupted",
            "latency_ms",
            "partitioned",
            "rates",
            "settings",
            "totals"
        ]
    );
    assert_eq!(
        keys(&json["totals"]),
        [
            "commands_acknowledged",
            "connect_failures",
            "connected_at_end",
            "connections_lost",
            "connects",
            "deltas_applied",
            "devices",
            "disconnects",
            "observed_seconds",
            "partitioned_seconds",
            "reports_acknowledged",
            "reports_sent",
            "subscribe_failures"
        ]
    );
    assert_eq!(json["settings"]["devices"], 2);
    assert_eq!(json["settings"]["interval_seconds"], 0.2);
    assert_eq!(json["settings"]["disconnect_rate"], 0.5);
    assert_eq!(json["settings"]["credentials"], false);
    assert_eq!(json["rates"]["reports_per_second"], 7.5);
    assert_eq!(json["rates"]["acknowledged_per_second"], 7.0);
    assert_eq!(json["partitioned"]["expected_fraction"], 0.2);
    assert_eq!(json["partitioned"]["fraction"], 0.2);
    assert_eq!(json["latency_ms"]["count"], 4);
    assert_eq!(json["latency_ms"]["p50"], 2.047);
    assert_eq!(json["latency_ms"]["p99"], 49.151);
    assert_eq!(json["latency_ms"]["max"], 49.151);
    assert_eq!(
        json["devices"][1],
        json!({
            "thing": "sim-000001",
            "connects": 3,
            "connect_failures": 1,
            "subscribe_failures": 0,
            "reports_sent": 10,
            "reports_acknowledged": 9,
            "deltas_applied": 2,
            "commands_acknowledged": 1,
            "disconnects": 2,
            "connections_lost": 0,
            "partitioned_seconds": 0.6,
            "observed_seconds": 4.0,
            "connected_at_end": false
        })
    );
}

#[test]
fn without_samples_latencies_are_null() {
    let config = SimConfig::new("127.0.0.1:1883", 1);
    let report = SimReport::new(
        &config,
        1,
        Duration::ZERO,
        true,
        vec![DeviceStats::default()],
        &Histogram::new(),
    );
    let json: Value = serde_json::from_str(&report.to_json().expect("JSON")).expect("JSON");
    assert_eq!(
        json["latency_ms"],
        json!({"count": 0, "p50": null, "p99": null, "p999": null, "max": null})
    );
    assert_eq!(json["rates"]["reports_per_second"], 0.0);
    assert_eq!(json["partitioned"]["fraction"], 0.0);
    assert_eq!(json["interrupted"], true);
    assert!(report.table().contains("- / - / - ms"));
}

#[test]
fn the_table_shows_every_figure_on_its_own_line() {
    let table = report().table();
    for line in [
        "doppel sim: 2 devices against 127.0.0.1:1883 for 4.0 s",
        "connected at end       1 of 2",
        "connects               6 (2 failed)",
        "disconnects            4 by the link model, 0 lost",
        "reports sent           30 (7.5/s)",
        "reports acknowledged   28 (7.0/s)",
        "deltas applied         4",
        "commands acknowledged  2",
        "partitioned            20.00% of device time (λ/(λ+μ) = 20.00%)",
        "latency p50/p99/p99.9  2.047 / 49.151 / 49.151 ms (max 49.151 ms, 4 samples)",
    ] {
        assert!(table.contains(line), "{line:?} missing from\n{table}");
    }
    assert!(
        !table.contains("subscribe failures"),
        "shown only when there are some"
    );
}

#[test]
fn connect_failures_are_shown_by_kind_when_there_are_some() {
    assert_eq!(report().connect_failures_summary(), None);
    assert!(!report().table().contains("connect failures"));
    let report = report()
        .with_connect_failures_by_kind([("bad user name or password", 3), ("timed out", 1)].into());
    assert_eq!(
        report.connect_failures_summary().as_deref(),
        Some("3 bad user name or password, 1 timed out")
    );
    let table = report.table();
    assert!(
        table.contains("connect failures       3 bad user name or password, 1 timed out"),
        "{table}"
    );
    let json: Value = serde_json::from_str(&report.to_json().expect("JSON")).expect("JSON");
    assert_eq!(
        json["connect_failures_by_kind"],
        json!({"bad user name or password": 3, "timed out": 1})
    );
}
