//! What a run measured: counters per device and in total, rates, the partitioned fraction and
//! latency percentiles, as a summary table for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::config::{SimConfig, thing_name};
use crate::histogram::Histogram;

/// Event counters, per device and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Connections that reached CONNACK.
    pub connects: u64,
    /// Connection attempts that failed: refused, timed out, or refused by the hub's CONNACK.
    pub connect_failures: u64,
    /// Subscriptions the hub refused (SUBACK failure): the device then misses its deltas or
    /// commands, which usually means an ACL or credentials problem.
    pub subscribe_failures: u64,
    /// Shadow updates published: periodic reports and the reports that apply a delta.
    pub reports_sent: u64,
    /// Shadow updates the hub acknowledged (PUBACK, sent once the update is durable).
    pub reports_acknowledged: u64,
    /// Delta messages applied (each answered by a report of the delta's state).
    pub deltas_applied: u64,
    /// Command acknowledgements the hub took (PUBACK of `.../commands/{id}/ack`).
    pub commands_acknowledged: u64,
    /// Connections the device closed because its link went Down.
    pub disconnects: u64,
    /// Connections lost otherwise: the hub closed them or the socket failed.
    pub connections_lost: u64,
}

impl Counters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Counters) {
        self.connects += other.connects;
        self.connect_failures += other.connect_failures;
        self.subscribe_failures += other.subscribe_failures;
        self.reports_sent += other.reports_sent;
        self.reports_acknowledged += other.reports_acknowledged;
        self.deltas_applied += other.deltas_applied;
        self.commands_acknowledged += other.commands_acknowledged;
        self.disconnects += other.disconnects;
        self.connections_lost += other.connections_lost;
    }
}

/// What one device did during a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceStats {
    /// What happened to it, counted.
    #[serde(flatten)]
    pub counters: Counters,
    /// Time spent in Down phases of the link model.
    #[serde(rename = "partitioned_seconds", serialize_with = "seconds")]
    pub partitioned: Duration,
    /// Time from the device's first connect slot to the end of the run (or to its
    /// interruption): the denominator of its partitioned fraction.
    #[serde(rename = "observed_seconds", serialize_with = "seconds")]
    pub observed: Duration,
    /// Whether the device was connected when the run ended.
    #[serde(rename = "connected_at_end")]
    pub connected: bool,
}

/// The sum over all devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Devices simulated.
    pub devices: u64,
    /// Devices connected when the run ended.
    pub connected_at_end: u64,
    /// Every device's counters, added up.
    #[serde(flatten)]
    pub counters: Counters,
    /// Device-seconds spent partitioned.
    pub partitioned_seconds: f64,
    /// Device-seconds observed.
    pub observed_seconds: f64,
}

impl Totals {
    /// The sum of `devices`.
    pub fn of<'a>(devices: impl IntoIterator<Item = &'a DeviceStats>) -> Totals {
        let mut totals = Totals::default();
        for device in devices {
            totals.devices += 1;
            totals.connected_at_end += u64::from(device.connected);
            totals.counters.add(&device.counters);
            totals.partitioned_seconds += device.partitioned.as_secs_f64();
            totals.observed_seconds += device.observed.as_secs_f64();
        }
        totals
    }
}

/// The settings a run was made with, echoed in its report so a result can be reproduced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The hub as given.
    pub hub: String,
    /// How many devices.
    pub devices: u32,
    /// The thing-name prefix.
    pub prefix: String,
    /// Mean seconds between reports.
    pub interval_seconds: f64,
    /// ± seconds around the interval.
    pub jitter_seconds: f64,
    /// The planned duration.
    pub duration_seconds: f64,
    /// λ per second (0: the link never goes down).
    pub disconnect_rate: f64,
    /// μ per second.
    pub reconnect_rate: f64,
    /// The run's seed.
    pub seed: u64,
    /// First connects per second.
    pub connect_rate: u32,
    /// Shard tasks.
    pub tasks: usize,
    /// Whether devices logged in with credentials.
    pub credentials: bool,
}

impl Settings {
    /// The settings of `config`, run with `tasks` shard tasks (fewer than asked when there are
    /// fewer devices).
    pub fn of(config: &SimConfig, tasks: usize) -> Settings {
        Settings {
            hub: config.hub.clone(),
            devices: config.devices,
            prefix: config.prefix.clone(),
            interval_seconds: config.interval.as_secs_f64(),
            jitter_seconds: config.jitter.as_secs_f64(),
            duration_seconds: config.duration.as_secs_f64(),
            disconnect_rate: config.link.map_or(0.0, |link| link.disconnect_rate),
            reconnect_rate: config.link.map_or(0.0, |link| link.reconnect_rate),
            seed: config.seed,
            connect_rate: config.connect_rate,
            tasks,
            credentials: config.credentials.is_some(),
        }
    }
}

/// Per-second rates over the run's elapsed time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// Shadow updates published per second.
    pub reports_per_second: f64,
    /// Shadow updates acknowledged per second.
    pub acknowledged_per_second: f64,
}

/// How much of the devices' time their links were down, measured and as the model predicts.
///
/// Every link starts Up, so a run not much longer than a mean cycle (1/λ + 1/μ) measures less
/// than λ/(λ+μ), which is the long-run fraction: with λ = 0.02/s and μ = 0.2/s, a 60 s run
/// measured 8.3% against 9.1%.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partitioned {
    /// Partitioned device-seconds over observed device-seconds.
    pub fraction: f64,
    /// λ/(λ+μ), the long-run fraction of the link model; 0 without one.
    pub expected_fraction: f64,
}

/// Publish-to-PUBACK latency of shadow updates, in milliseconds; `null` without samples. Read
/// from a histogram: never below the true value, at most 6.25% above it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Updates acknowledged (the samples).
    pub count: u64,
    /// The median.
    pub p50: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
    /// The 99.9th percentile.
    pub p999: Option<f64>,
    /// The slowest.
    pub max: Option<f64>,
}

impl Latency {
    /// The percentiles of `histogram`.
    pub fn of(histogram: &Histogram) -> Latency {
        let millis = |micros: Option<u64>| micros.map(|micros| micros as f64 / 1_000.0);
        Latency {
            count: histogram.count(),
            p50: millis(histogram.quantile_micros(0.5)),
            p99: millis(histogram.quantile_micros(0.99)),
            p999: millis(histogram.quantile_micros(0.999)),
            max: millis(histogram.max_micros()),
        }
    }
}

/// One device's line in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    /// Its thing name.
    pub thing: String,
    /// What it did.
    #[serde(flatten)]
    pub stats: DeviceStats,
}

/// Everything a run measured. Its JSON form is what `--report-json` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// How the run was made.
    pub settings: Settings,
    /// Seconds from the start to the end (earlier when interrupted).
    pub elapsed_seconds: f64,
    /// Whether the run was stopped before its duration (Ctrl-C).
    pub interrupted: bool,
    /// Counters summed over devices.
    pub totals: Totals,
    /// Report rates.
    pub rates: Rates,
    /// Measured against expected partitioned time.
    pub partitioned: Partitioned,
    /// Publish-to-PUBACK latency of shadow updates.
    pub latency_ms: Latency,
    /// Failed connection attempts by kind, in words: a CONNACK refusal's meaning ("bad user
    /// name or password", "not authorised", ...), "timed out", "socket error", ...
    pub connect_failures_by_kind: BTreeMap<&'static str, u64>,
    /// Every device's own counters, in device order.
    pub devices: Vec<DeviceReport>,
}

impl SimReport {
    /// The report of a run of `config` with `tasks` shard tasks that lasted `elapsed`, from each
    /// device's counters (in device order) and the merged latency histogram.
    pub fn new(
        config: &SimConfig,
        tasks: usize,
        elapsed: Duration,
        interrupted: bool,
        devices: Vec<DeviceStats>,
        latency: &Histogram,
    ) -> SimReport {
        let totals = Totals::of(&devices);
        let seconds = elapsed.as_secs_f64();
        let per_second = |count: u64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        let fraction = if totals.observed_seconds > 0.0 {
            totals.partitioned_seconds / totals.observed_seconds
        } else {
            0.0
        };
        SimReport {
            settings: Settings::of(config, tasks),
            elapsed_seconds: seconds,
            interrupted,
            rates: Rates {
                reports_per_second: per_second(totals.counters.reports_sent),
                acknowledged_per_second: per_second(totals.counters.reports_acknowledged),
            },
            partitioned: Partitioned {
                fraction,
                expected_fraction: config
                    .link
                    .map_or(0.0, |link| link.expected_down_fraction()),
            },
            latency_ms: Latency::of(latency),
            connect_failures_by_kind: BTreeMap::new(),
            totals,
            devices: devices
                .into_iter()
                .zip(0..)
                .map(|(stats, index)| DeviceReport {
                    thing: thing_name(&config.prefix, index),
                    stats,
                })
                .collect(),
        }
    }

    /// The report with the failed connection attempts counted by kind, which the shards count
    /// apart from the devices.
    pub fn with_connect_failures_by_kind(mut self, kinds: BTreeMap<&'static str, u64>) -> Self {
        self.connect_failures_by_kind = kinds;
        self
    }

    /// The failed connection attempts by kind, as `3 bad user name or password, 1 timed out`;
    /// `None` when every attempt succeeded.
    pub fn connect_failures_summary(&self) -> Option<String> {
        if self.connect_failures_by_kind.is_empty() {
            return None;
        }
        let kinds: Vec<String> = self
            .connect_failures_by_kind
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        Some(kinds.join(", "))
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    ///
    /// None in practice: every field serialises; the error is serde_json's.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let totals = &self.totals;
        let counts = &totals.counters;
        let settings = &self.settings;
        let mut rows: Vec<(&str, String)> = vec![
            ("devices", totals.devices.to_string()),
            (
                "connected at end",
                format!("{} of {}", totals.connected_at_end, totals.devices),
            ),
            (
                "connects",
                format!("{} ({} failed)", counts.connects, counts.connect_failures),
            ),
            (
                "disconnects",
                format!(
                    "{} by the link model, {} lost",
                    counts.disconnects, counts.connections_lost
                ),
            ),
            (
                "reports sent",
                format!(
                    "{} ({:.1}/s)",
                    counts.reports_sent, self.rates.reports_per_second
                ),
            ),
            (
                "reports acknowledged",
                format!(
                    "{} ({:.1}/s)",
                    counts.reports_acknowledged, self.rates.acknowledged_per_second
                ),
            ),
            ("deltas applied", counts.deltas_applied.to_string()),
            (
                "commands acknowledged",
                counts.commands_acknowledged.to_string(),
            ),
            (
                "partitioned",
                format!(
                    "{:.2}% of device time (λ/(λ+μ) = {:.2}%)",
                    self.partitioned.fraction * 100.0,
                    self.partitioned.expected_fraction * 100.0
                ),
            ),
            (
                "latency p50/p99/p99.9",
                format!(
                    "{} / {} / {} ms (max {} ms, {} samples)",
                    millis(self.latency_ms.p50),
                    millis(self.latency_ms.p99),
                    millis(self.latency_ms.p999),
                    millis(self.latency_ms.max),
                    self.latency_ms.count
                ),
            ),
        ];
        if let Some(kinds) = self.connect_failures_summary() {
            rows.push(("connect failures", kinds));
        }
        if counts.subscribe_failures > 0 {
            rows.push(("subscribe failures", counts.subscribe_failures.to_string()));
        }
        let width = rows
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        let mut table = format!(
            "doppel sim: {} devices against {} for {:.1} s{}\n",
            settings.devices,
            settings.hub,
            self.elapsed_seconds,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        for (name, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(table, "  {name:<width$}  {value}");
        }
        table
    }
}

/// A latency for the table: three significant decimals, or a dash without samples.
fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.3}"))
}

/// A duration as fractional seconds, the unit of every duration in the JSON report.
fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests;
