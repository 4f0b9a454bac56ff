use std::time::Duration;

use super::{LiveCounters, LiveSnapshot, Progress, ProgressMode};

#[test]
fn counters_count_and_the_gauge_never_goes_below_zero() {
    let live = LiveCounters::default();
    live.connected();
    live.connected();
    live.disconnected();
    live.disconnected();
    live.disconnected();
    live.report_sent();
    live.report_sent();
    live.report_acknowledged();
    live.connect_failed();
    assert_eq!(
        live.snapshot(),
        LiveSnapshot {
            connected: 0,
            connect_failures: 1,
            reports_sent: 2,
            reports_acknowledged: 1,
        }
    );
}

#[test]
fn the_bar_shows_the_report_rate_since_the_previous_tick() {
    let mut progress = Progress::new(ProgressMode::Hidden, 50, Duration::from_secs(10));
    let at = |reports_sent| LiveSnapshot {
        connected: 40,
        connect_failures: 2,
        reports_sent,
        reports_acknowledged: 90,
    };
    progress.tick(at(100), Duration::from_secs(1));
    progress.tick(at(400), Duration::from_millis(1_500));
    assert_eq!(
        progress.bar.message(),
        "connected 40 of 50  600 reports/s  90 acknowledged  2 connect failures"
    );
    assert_eq!(progress.bar.position(), 1);
}
