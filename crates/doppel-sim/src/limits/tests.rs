use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    BASE_RESERVED_FDS, CONNECTIONS_PER_SOURCE, RESERVED_FDS_PER_TASK, open_files_needed,
    raise_open_files_limit, source_address,
};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

#[test]
fn every_device_needs_a_descriptor_and_the_process_a_few_more() {
    assert_eq!(
        open_files_needed(19_000, 2),
        19_000 + BASE_RESERVED_FDS + 2 * RESERVED_FDS_PER_TASK
    );
    assert_eq!(open_files_needed(u32::MAX, usize::MAX), u64::MAX);
}

#[test]
fn devices_spread_over_loopback_addresses_before_ports_run_out() {
    // The first block leaves the port (and the address) to connect().
    assert_eq!(source_address(LOOPBACK, 0), None);
    assert_eq!(source_address(LOOPBACK, CONNECTIONS_PER_SOURCE - 1), None);
    assert_eq!(
        source_address(LOOPBACK, CONNECTIONS_PER_SOURCE),
        v4(127, 0, 0, 2)
    );
    assert_eq!(source_address(LOOPBACK, 99_999), v4(127, 0, 0, 4));
    // A hub on another loopback address is reached the same way.
    let other = "127.0.0.9".parse().expect("an address");
    assert_eq!(source_address(other, 30_000), v4(127, 0, 0, 2));
    assert_eq!(
        source_address(LOOPBACK, 10_000_000),
        v4(127, 0, 1, 145),
        "the largest run stays inside 127.0.0.0/8"
    );
}

#[test]
fn other_hubs_leave_the_source_to_the_system() {
    assert_eq!(
        source_address("192.0.2.10".parse().expect("an address"), 0),
        None
    );
    assert_eq!(source_address(IpAddr::V6(Ipv6Addr::LOCALHOST), 0), None);
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let limit = raise_open_files_limit().expect("limits can be read");
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("limits can be read");
    assert_eq!(limit, soft);
    assert_eq!(soft, hard);
}
