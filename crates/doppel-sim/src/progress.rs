//! What a person sees while a run goes on: a progress bar on stderr fed by a few shared
//! counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters every shard bumps as things happen, for the progress bar only: the report is built
/// from each device's own counters instead, so nothing here needs to be exact at any instant.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Devices connected now.
    connected: AtomicU64,
    /// Failed connection attempts so far.
    connect_failures: AtomicU64,
    /// Shadow updates sent so far.
    reports_sent: AtomicU64,
    /// Shadow updates acknowledged so far.
    reports_acknowledged: AtomicU64,
}

/// A copy of the [`LiveCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// Devices connected.
    pub connected: u64,
    /// Failed connection attempts so far.
    pub connect_failures: u64,
    /// Shadow updates sent so far.
    pub reports_sent: u64,
    /// Shadow updates acknowledged so far.
    pub reports_acknowledged: u64,
}

impl LiveCounters {
    /// A device connected.
    pub fn connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    /// A device's connection ended.
    pub fn disconnected(&self) {
        // Never below zero, even if a bug paired them wrongly: the bar must not show 2^64.
        let _ = self
            .connected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// A connection attempt failed.
    pub fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A shadow update went out.
    pub fn report_sent(&self) {
        self.reports_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A shadow update was acknowledged.
    pub fn report_acknowledged(&self) {
        self.reports_acknowledged.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            reports_sent: self.reports_sent.load(Ordering::Relaxed),
            reports_acknowledged: self.reports_acknowledged.load(Ordering::Relaxed),
        }
    }
}

/// Whether to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// On stderr, when stderr is a terminal (indicatif hides it otherwise).
    Bar,
    /// Never.
    Hidden,
}

/// The progress bar of one run: time elapsed out of the duration, with connected devices and
/// the report rate since the previous tick.
pub(crate) struct Progress {
    /// The bar; a hidden one when the mode or the terminal says so.
    bar: ProgressBar,
    /// How many devices the run has, for "connected n of N".
    devices: u32,
    /// The counters at the previous tick and when it was, for the rate.
    previous: (LiveSnapshot, Duration),
}

impl Progress {
    /// A bar for a run of `devices` devices lasting `duration`.
    pub(crate) fn new(mode: ProgressMode, devices: u32, duration: Duration) -> Progress {
        let target = match mode {
            ProgressMode::Bar => ProgressDrawTarget::stderr(),
            ProgressMode::Hidden => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(Some(duration.as_secs().max(1)), target);
        // The template is a constant; should it ever be wrong the bar keeps its default look.
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s  {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            devices,
            previous: (LiveSnapshot::default(), Duration::ZERO),
        }
    }

    /// Redraws with the counters `now` at `elapsed` since the start.
    pub(crate) fn tick(&mut self, now: LiveSnapshot, elapsed: Duration) {
        let (before, then) = self.previous;
        let span = elapsed.saturating_sub(then).as_secs_f64();
        let rate = if span > 0.0 {
            now.reports_sent.saturating_sub(before.reports_sent) as f64 / span
        } else {
            0.0
        };
        self.previous = (now, elapsed);
        self.bar.set_position(elapsed.as_secs());
        self.bar.set_message(format!(
            "connected {} of {}  {:.0} reports/s  {} acknowledged  {} connect failures",
            now.connected, self.devices, rate, now.reports_acknowledged, now.connect_failures
        ));
    }

    /// Removes the bar, so the summary table starts on a clean line.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
