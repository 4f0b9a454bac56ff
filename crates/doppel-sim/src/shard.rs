//! A shard: one thread, one single-threaded runtime, a share of the devices.
//!
//! Each device is one small future (see [`crate::device`]); a shard polls all of its devices'
//! futures from one task through a `FuturesUnordered`, which wakes only the device whose socket
//! or timer fired. Nothing is shared between a shard's devices but this shard, so its counters
//! live in plain cells (no locks, no atomics) and are handed back whole when the shard ends;
//! only the few counters of the progress bar cross threads.

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
use crate::device::Device;
use crate::histogram::Histogram;
use crate::progress::LiveCounters;
use crate::report::DeviceStats;
use crate::shard_state::{Event, ShardState};

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
    let shard = ShardState::new(
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
