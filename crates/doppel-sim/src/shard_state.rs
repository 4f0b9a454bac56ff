//! What a shard's devices share: the run's settings and the counters each device's events
//! add to. Below both the shard, which drives the devices and hands the counters back, and the
//! devices, which report to it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::SimConfig;
use crate::connection::ConnectionError;
use crate::histogram::Histogram;
use crate::progress::LiveCounters;
use crate::report::DeviceStats;

/// Something that happened to one device, as the shard counts it.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A connection reached CONNACK.
    Connected,
    /// A connection attempt of the device `thing` failed.
    ConnectFailed {
        /// The device's thing name, for the message of a run in which nothing connected.
        thing: &'a str,
        /// Why it failed.
        err: &'a ConnectionError,
    },
    /// The hub refused a subscription.
    SubscribeFailed,
    /// A shadow update went out.
    ReportSent,
    /// A shadow update was acknowledged this long after it went out.
    ReportAcknowledged(Duration),
    /// A delta was applied.
    DeltaApplied,
    /// A command acknowledgement was taken by the hub.
    CommandAcknowledged,
    /// A connection ended.
    SessionEnded(SessionEnd),
    /// A phase of the link model began.
    PhaseStarted {
        /// Whether it is a Down phase.
        down: bool,
        /// When it began, by the device's schedule.
        at: Instant,
    },
    /// The current phase ended at `at` (by the schedule, or cut at the end of the run).
    PhaseEnded(Instant),
}

/// How a device's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The run ended with the device connected.
    RunOver,
    /// The link went Down: the device closed its connection.
    Partition,
    /// The hub closed it or the socket failed.
    Lost,
}

/// The state a shard's devices share.
pub(crate) struct ShardState {
    /// The run's settings.
    pub config: Arc<SimConfig>,
    /// The hub's address.
    pub hub: SocketAddr,
    /// When the run started.
    pub start: Instant,
    /// When the run ends.
    pub end: Instant,
    /// The progress bar's counters.
    pub(crate) live: Arc<LiveCounters>,
    /// Each device's counters, by its slot (its position in the shard's device list).
    pub(crate) stats: RefCell<Vec<DeviceStats>>,
    /// Latencies of every device of the shard: one histogram per shard, not per device.
    pub(crate) latency: RefCell<Histogram>,
    /// The first connection error, after its device's name.
    pub(crate) first_error: RefCell<Option<String>>,
    /// Failed connection attempts by kind, for the report.
    pub(crate) connect_failures_by_kind: RefCell<BTreeMap<&'static str, u64>>,
    /// Each device's current phase (Down or not, and when it began), so that a run interrupted
    /// in the middle of phases still counts them up to the interruption: counting completed
    /// phases only would overweight the short ones.
    pub(crate) phases: RefCell<Vec<Option<(bool, Instant)>>>,
}

impl ShardState {
    /// A shard of `devices` devices (their counters start at zero).
    pub(crate) fn new(
        config: Arc<SimConfig>,
        hub: SocketAddr,
        start: Instant,
        end: Instant,
        live: Arc<LiveCounters>,
        devices: usize,
    ) -> ShardState {
        ShardState {
            config,
            hub,
            start,
            end,
            live,
            stats: RefCell::new(vec![DeviceStats::default(); devices]),
            latency: RefCell::new(Histogram::new()),
            first_error: RefCell::new(None),
            connect_failures_by_kind: RefCell::new(BTreeMap::new()),
            phases: RefCell::new(vec![None; devices]),
        }
    }

    /// Counts `event` of the device in `slot`.
    pub(crate) fn record(&self, slot: usize, event: Event<'_>) {
        let mut stats = self.stats.borrow_mut();
        let Some(device) = stats.get_mut(slot) else {
            return;
        };
        match event {
            Event::Connected => {
                device.counters.connects += 1;
                device.connected = true;
                self.live.connected();
            }
            Event::ConnectFailed { thing, err } => {
                device.counters.connect_failures += 1;
                self.live.connect_failed();
                *self
                    .connect_failures_by_kind
                    .borrow_mut()
                    .entry(err.kind())
                    .or_default() += 1;
                let mut first = self.first_error.borrow_mut();
                if first.is_none() {
                    *first = Some(format!("{thing}: {err}"));
                }
            }
            Event::SubscribeFailed => device.counters.subscribe_failures += 1,
            Event::ReportSent => {
                device.counters.reports_sent += 1;
                self.live.report_sent();
            }
            Event::ReportAcknowledged(latency) => {
                device.counters.reports_acknowledged += 1;
                self.latency.borrow_mut().record(latency);
                self.live.report_acknowledged();
            }
            Event::DeltaApplied => device.counters.deltas_applied += 1,
            Event::CommandAcknowledged => device.counters.commands_acknowledged += 1,
            Event::SessionEnded(end) => {
                self.live.disconnected();
                match end {
                    SessionEnd::RunOver => {}
                    SessionEnd::Partition => {
                        device.connected = false;
                        device.counters.disconnects += 1;
                    }
                    SessionEnd::Lost => {
                        device.connected = false;
                        device.counters.connections_lost += 1;
                    }
                }
            }
            Event::PhaseStarted { down, at } => {
                if let Some(phase) = self.phases.borrow_mut().get_mut(slot) {
                    *phase = Some((down, at));
                }
            }
            Event::PhaseEnded(at) => {
                let phase = self
                    .phases
                    .borrow_mut()
                    .get_mut(slot)
                    .and_then(Option::take);
                if let Some((down, start)) = phase {
                    let length = at.saturating_duration_since(start);
                    device.observed += length;
                    if down {
                        device.partitioned += length;
                    }
                }
            }
        }
    }
}
