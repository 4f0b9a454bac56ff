//! A shard: one thread, one single-threaded runtime, a share of the devices.
//!
//! Each device is one small future (see [`crate::device`]); a shard polls all of its devices'
//! futures from one task through a `FuturesUnordered`, which wakes only the device whose socket
//! or timer fired. Nothing is shared between a shard's devices but this shard, so its counters
//! live in plain cells (no locks, no atomics) and are handed back whole when the shard ends;
//! only the few counters of the progress bar cross threads.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::config::SimConfig;
use crate::connection::ConnectionError;
use crate::device::Device;
use crate::histogram::Histogram;
use crate::progress::LiveCounters;
use crate::report::DeviceStats;

/// How long devices get after the end of the run to send DISCONNECT and close. A hub that
/// stopped reading could otherwise hold a device's last write, and the run, forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a shard needs to run: the run's settings and its share of the devices.
#[derive(Debug)]
pub(crate) struct ShardPlan {
    /// The run's settings, shared by every shard.
    pub config: Arc<SimConfig>,
    /// The hub, resolved once for every device.
    pub hub: SocketAddr,
    /// When the run starts: device `i` first connects at `start + i / connect_rate`.
    pub start: std::time::Instant,
    /// When the run ends: every device disconnects then.
    pub end: std::time::Instant,
    /// The progress bar's counters.
    pub live: Arc<LiveCounters>,
    /// Turns true when the run is interrupted: the shard drops its devices at once.
    pub stop: watch::Receiver<bool>,
    /// The indices of this shard's devices.
    pub devices: Vec<u32>,
}

/// What a shard hands back: its devices' counters and its latency samples.
#[derive(Debug)]
pub(crate) struct ShardOutcome {
    /// Device indices, in the order of `stats`.
    pub devices: Vec<u32>,
    /// Each device's counters.
    pub stats: Vec<DeviceStats>,
    /// Publish-to-PUBACK latencies of this shard's shadow updates.
    pub latency: Histogram,
    /// The first connection error of the shard, to explain a run in which nothing connected.
    pub first_error: Option<String>,
    /// Failed connection attempts by kind ([`crate::connection::ConnectionError::kind`]).
    pub connect_failures_by_kind: BTreeMap<&'static str, u64>,
}

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
pub(crate) struct Shard {
    /// The run's settings.
    pub config: Arc<SimConfig>,
    /// The hub's address.
    pub hub: SocketAddr,
    /// When the run started.
    pub start: Instant,
    /// When the run ends.
    pub end: Instant,
    /// The progress bar's counters.
    live: Arc<LiveCounters>,
    /// Each device's counters, by its slot (its position in the shard's device list).
    stats: RefCell<Vec<DeviceStats>>,
    /// Latencies of every device of the shard: one histogram per shard, not per device.
    latency: RefCell<Histogram>,
    /// The first connection error, after its device's name.
    first_error: RefCell<Option<String>>,
    /// Failed connection attempts by kind, for the report.
    connect_failures_by_kind: RefCell<BTreeMap<&'static str, u64>>,
    /// Each device's current phase (Down or not, and when it began), so that a run interrupted
    /// in the middle of phases still counts them up to the interruption: counting completed
    /// phases only would overweight the short ones.
    phases: RefCell<Vec<Option<(bool, Instant)>>>,
}

impl Shard {
    /// A shard of `devices` devices (their counters start at zero).
    pub(crate) fn new(
        config: Arc<SimConfig>,
        hub: SocketAddr,
        start: Instant,
        end: Instant,
        live: Arc<LiveCounters>,
        devices: usize,
    ) -> Shard {
        Shard {
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

/// Runs a shard on the current thread until the end of the run (or its interruption) and
/// returns what its devices did.
///
/// # Errors
///
/// The system's error when the shard's runtime cannot start.
pub(crate) fn run(plan: ShardPlan) -> io::Result<ShardOutcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(drive(plan)))
}

async fn drive(plan: ShardPlan) -> ShardOutcome {
    let ShardPlan {
        config,
        hub,
        start,
        end,
        live,
        mut stop,
        devices,
    } = plan;
    let shard = Shard::new(
        config,
        hub,
        Instant::from_std(start),
        Instant::from_std(end),
        live,
        devices.len(),
    );
    {
        let mut running: FuturesUnordered<_> = devices
            .iter()
            .enumerate()
            .map(|(slot, &index)| Device::new(&shard.config, slot, index).run(&shard))
            .collect();
        let all_done = async { while running.next().await.is_some() {} };
        let interrupted = async {
            // A coordinator that went away without a word is no reason to stop.
            if stop.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = all_done => {}
            () = interrupted => {}
            () = sleep_until(shard.end + SHUTDOWN_GRACE) => {}
        }
        // Whatever is still running is dropped here, closing its socket; its phase ends now.
    }
    let now = Instant::now().min(shard.end);
    for slot in 0..devices.len() {
        shard.record(slot, Event::PhaseEnded(now));
    }
    ShardOutcome {
        devices,
        stats: shard.stats.into_inner(),
        latency: shard.latency.into_inner(),
        first_error: shard.first_error.into_inner(),
        connect_failures_by_kind: shard.connect_failures_by_kind.into_inner(),
    }
}
