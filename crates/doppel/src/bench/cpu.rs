//! CPU time of a process, for load generators that report what a request cost the hub. One
//! file for `doppel bench http` and the `mqtt_load` example (which includes it by path).

use std::time::Duration;

/// CPU time (user plus kernel) of process `pid`, or of this process for `None`; `None` where
/// `/proc` does not tell (not Linux, or the process is gone).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which ends at the last ')': utime is field 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // Linux's USER_HZ is 100.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}
