//! The operating system's limits on connections from one process: open files and ephemeral
//! ports.
//!
//! Every connected device holds one socket, so the open-files limit (`RLIMIT_NOFILE`) caps the
//! devices of one process. The simulator raises its soft limit to the hard one at start and
//! refuses, before connecting anything, a run that could not fit.
//!
//! Every connection to the hub also needs a local port. Linux hands out ports from
//! `net.ipv4.ip_local_port_range` (32768–60999 by default, about 28,000) per source address and
//! destination, so past [`CONNECTIONS_PER_SOURCE`] devices a loopback hub is reached from the
//! next loopback address (127.0.0.2, 127.0.0.3, ...): all of 127.0.0.0/8 is local, no setup
//! needed.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Descriptors the process needs besides device sockets, whatever the number of tasks:
/// standard streams, the coordinator's runtime, the report file, the probe of the hub.
pub const BASE_RESERVED_FDS: u64 = 32;

/// Descriptors each shard task needs besides its devices' sockets: its runtime's epoll
/// instance and waker, with room to spare.
pub const RESERVED_FDS_PER_TASK: u64 = 4;

/// Devices per source address. Below the ~28,000 ports of Linux's default ephemeral range, so
/// that other clients on the machine (and the hub's own outgoing connections) still find ports.
pub const CONNECTIONS_PER_SOURCE: u32 = 25_000;

/// Raises the soft open-files limit to the hard limit, and returns the soft limit in force
/// afterwards.
///
/// # Errors
///
/// The system's error when the limits cannot be read or set.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

/// How many descriptors a run of `devices` devices over `tasks` tasks needs at most: every
/// device connected at once, plus what the process itself holds.
pub fn open_files_needed(devices: u32, tasks: usize) -> u64 {
    let tasks = u64::try_from(tasks).unwrap_or(u64::MAX);
    u64::from(devices)
        .saturating_add(BASE_RESERVED_FDS)
        .saturating_add(tasks.saturating_mul(RESERVED_FDS_PER_TASK))
}

/// The source address device `index` binds before connecting to a hub at `hub`, or `None` to
/// let the system choose.
///
/// The first [`CONNECTIONS_PER_SOURCE`] devices never bind: `connect()` on an unbound socket
/// picks a port unique for its destination and may take over a port still in TIME_WAIT from a
/// previous run (`net.ipv4.tcp_tw_reuse`, on for loopback by default), whereas `bind(addr, 0)`
/// must find a port free of every socket, TIME_WAIT included. Measured here: right after a run
/// of 19,000 devices, a second run that bound 127.0.0.1 explicitly failed a third of its
/// connects and spent 100 s of system time searching for ports. Devices past the first block
/// of an IPv4 loopback hub bind 127.0.0.2, 127.0.0.3, ... (with `SO_REUSEADDR`, see
/// [`crate::connection`]) to get ports of their own. Other hubs leave it to the system: other
/// hosts' addresses are not ours to invent, and IPv6 has a single loopback address.
pub fn source_address(hub: IpAddr, index: u32) -> Option<IpAddr> {
    let block = index / CONNECTIONS_PER_SOURCE;
    match hub {
        IpAddr::V4(hub) if hub.is_loopback() && block > 0 => {
            let first = u32::from(Ipv4Addr::new(127, 0, 0, 1));
            let address = Ipv4Addr::from(first + block);
            // Past 127.255.255.255 there is no loopback left (unreachable below 400 million
            // devices), and a non-loopback address is never handed out.
            address.is_loopback().then_some(IpAddr::V4(address))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
