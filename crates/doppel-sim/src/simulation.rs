//! A whole run: checks, the shards on their threads, the progress bar, the report.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{ConfigError, SimConfig};
use crate::histogram::Histogram;
use crate::limits::{open_files_needed, raise_open_files_limit};
use crate::progress::{LiveCounters, Progress, ProgressMode};
use crate::report::{DeviceStats, SimReport};
use crate::shard::{self, ShardOutcome, ShardPlan};

/// How long the start-up probe waits for the hub to accept a TCP connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gap between the start-up checks and the first connect, so that every shard's thread is
/// up before its first device's slot comes.
const START_DELAY: Duration = Duration::from_millis(100);

/// How often the progress bar is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hub's address does not resolve.
    #[error("cannot resolve the hub address {hub:?}: {reason}")]
    Resolve {
        /// The address as given.
        hub: String,
        /// Why.
        reason: String,
    },
    /// The hub does not accept TCP connections.
    #[error("cannot reach the hub at {hub} ({addr}): {source}")]
    Unreachable {
        /// The address as given.
        hub: String,
        /// What it resolved to.
        addr: SocketAddr,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The open-files limit cannot be read or raised.
    #[error("cannot raise the open-files limit: {0}")]
    OpenFilesLimit(std::io::Error),
    /// More devices than the open-files limit allows.
    #[error(
        "{devices} devices need up to {needed} open files, but this process may open only {limit}; \
         raise it with `ulimit -n {needed}` (as root, or `nofile` in /etc/security/limits.conf) \
         or simulate at most {most} devices"
    )]
    TooManyDevices {
        /// Devices asked for.
        devices: u32,
        /// Descriptors they need.
        needed: u64,
        /// The limit in force.
        limit: u64,
        /// The most devices that fit.
        most: u64,
    },
    /// A shard's thread or runtime could not start.
    #[error("cannot start a simulator thread: {0}")]
    Thread(std::io::Error),
    /// A shard's thread panicked (a bug).
    #[error("a simulator thread panicked")]
    Panicked,
    /// Not one device connected during the whole run.
    #[error(
        "no device could connect to the hub at {hub} ({failures} attempts failed): {first_error}"
    )]
    NoneConnected {
        /// The hub as given.
        hub: String,
        /// Connection attempts that failed.
        failures: u64,
        /// The first failure's reason.
        first_error: String,
    },
}

/// Runs a simulation to its end (or to Ctrl-C) and returns its report.
///
/// Blocks the calling thread: the shards run on threads of their own, and the calling thread
/// draws the progress bar and watches for Ctrl-C. Refuses to start (before connecting anything)
/// when a setting is wrong, the hub is unreachable or the open-files limit is too low.
///
/// # Errors
///
/// See [`SimError`]; a run in which no device ever connected is an error too.
pub fn run(config: &SimConfig, mode: ProgressMode) -> Result<SimReport, SimError> {
    config.validate()?;
    let tasks = config
        .tasks
        .min(usize::try_from(config.devices).unwrap_or(usize::MAX));
    let limit = raise_open_files_limit().map_err(SimError::OpenFilesLimit)?;
    let needed = open_files_needed(config.devices, tasks);
    if needed > limit {
        return Err(SimError::TooManyDevices {
            devices: config.devices,
            needed,
            limit,
            most: limit.saturating_sub(needed - u64::from(config.devices)),
        });
    }
    let hub = resolve(&config.hub)?;
    probe(&config.hub, hub)?;

    let config = Arc::new(config.clone());
    let live = Arc::new(LiveCounters::default());
    let (stop, stopped) = watch::channel(false);
    let start = Instant::now() + START_DELAY;
    let end = start + config.duration;
    let mut shards = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let plan = ShardPlan {
            config: Arc::clone(&config),
            hub,
            start,
            end,
            live: Arc::clone(&live),
            stop: stopped.clone(),
            devices: shard_devices(config.devices, tasks, task),
        };
        let spawned = thread::Builder::new()
            .name(format!("sim-shard-{task}"))
            .spawn(move || shard::run(plan));
        match spawned {
            Ok(handle) => shards.push(handle),
            Err(err) => {
                // Stop the shards already running before giving up.
                let _ = stop.send(true);
                return Err(SimError::Thread(err));
            }
        }
    }

    let mut progress = Progress::new(mode, config.devices, config.duration);
    let interrupted = watch_run(&mut progress, &live, start, end);
    if interrupted {
        let _ = stop.send(true);
    }
    let finished = Instant::now();
    let mut outcomes = Vec::with_capacity(shards.len());
    for handle in shards {
        let outcome = handle.join().map_err(|_| SimError::Panicked)?;
        outcomes.push(outcome.map_err(SimError::Thread)?);
    }
    progress.finish();

    let elapsed = finished.min(end).saturating_duration_since(start);
    let (devices, latency, first_error, failures_by_kind) = gather(config.devices, outcomes);
    let report = SimReport::new(&config, tasks, elapsed, interrupted, devices, &latency)
        .with_connect_failures_by_kind(failures_by_kind);
    if report.totals.counters.connects == 0 {
        return Err(SimError::NoneConnected {
            hub: config.hub.clone(),
            failures: report.totals.counters.connect_failures,
            first_error: first_error.unwrap_or_else(|| "no attempt finished in time".to_owned()),
        });
    }
    Ok(report)
}

/// The indices of shard `task`'s devices: every `tasks`-th from `task`, so that each shard's
/// devices come up at the same pace as the others'.
pub fn shard_devices(devices: u32, tasks: usize, task: usize) -> Vec<u32> {
    let step = tasks.max(1);
    (0..devices).skip(task).step_by(step).collect()
}

/// Draws the progress bar until the end of the run; returns whether Ctrl-C came first.
fn watch_run(progress: &mut Progress, live: &LiveCounters, start: Instant, end: Instant) -> bool {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            // No bar and no Ctrl-C handling, but the run itself goes on.
            tracing::warn!(%err, "cannot watch the run");
            thread::sleep(end.saturating_duration_since(Instant::now()));
            return false;
        }
    };
    runtime.block_on(async {
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        let mut tick = tokio::time::interval(TICK);
        let end = tokio::time::Instant::from_std(end);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(end) => return false,
                result = &mut ctrl_c => {
                    // Without a signal handler the run simply goes to its end.
                    if result.is_ok() {
                        return true;
                    }
                    std::future::pending::<()>().await;
                }
                _ = tick.tick() => {
                    progress.tick(live.snapshot(), start.elapsed());
                }
            }
        }
    })
}

/// Puts every shard's counters back in device order and merges their histograms.
fn gather(
    devices: u32,
    outcomes: Vec<ShardOutcome>,
) -> (
    Vec<DeviceStats>,
    Histogram,
    Option<String>,
    BTreeMap<&'static str, u64>,
) {
    let mut stats = vec![DeviceStats::default(); usize::try_from(devices).unwrap_or(0)];
    let mut latency = Histogram::new();
    let mut first_error = None;
    let mut failures_by_kind = BTreeMap::new();
    for outcome in outcomes {
        latency.merge(&outcome.latency);
        first_error = first_error.or(outcome.first_error);
        for (kind, count) in outcome.connect_failures_by_kind {
            *failures_by_kind.entry(kind).or_default() += count;
        }
        for (index, device) in outcome.devices.into_iter().zip(outcome.stats) {
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| stats.get_mut(i)) {
                *slot = device;
            }
        }
    }
    (stats, latency, first_error, failures_by_kind)
}

/// The hub's first address.
fn resolve(hub: &str) -> Result<SocketAddr, SimError> {
    let resolve_error = |reason: String| SimError::Resolve {
        hub: hub.to_owned(),
        reason,
    };
    hub.to_socket_addrs()
        .map_err(|err| resolve_error(err.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("it resolves to no address".to_owned()))
}

/// One TCP connection to the hub, so that a hub that is down fails the run at once instead of
/// every device failing on its own.
fn probe(hub: &str, addr: SocketAddr) -> Result<(), SimError> {
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map(drop)
        .map_err(|source| SimError::Unreachable {
            hub: hub.to_owned(),
            addr,
            source,
        })
}

#[cfg(test)]
mod tests;
