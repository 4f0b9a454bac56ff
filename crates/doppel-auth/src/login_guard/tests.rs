use super::*;

const USER: &str = "acme/devices/pump-7";

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn config() -> GuardConfig {
    GuardConfig {
        max_failures_per_address: 4,
        max_failures_per_username: 3,
        failure_window: Duration::from_secs(60),
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
    }
}

/// Fails one check of `username` from `address`, which must be admitted.
fn fail(
    guard: &mut LoginGuard,
    address: &str,
    username: &str,
    now: Instant,
) -> Vec<BackoffStarted> {
    let ticket = guard.admit(ip(address), username, now).expect("admitted");
    guard.finish(ticket, false, now)
}

#[test]
fn a_username_is_refused_at_once_after_its_failures_until_its_backoff_ends() {
    let start = Instant::now();
    let mut guard = LoginGuard::new(config(), start);
    // Each from another address, so that only the username's limit is reached.
    assert!(fail(&mut guard, "10.0.0.1", USER, start).is_empty());
    assert!(fail(&mut guard, "10.0.0.2", USER, start).is_empty());
    assert_eq!(
        fail(&mut guard, "10.0.0.3", USER, start),
        [BackoffStarted {
            limit: Limit::Username,
            key: USER.into(),
            duration: Duration::from_secs(1),
        }]
    );
    assert_eq!(
        guard.admit(ip("10.0.0.4"), USER, start).unwrap_err(),
        Limit::Username
    );
    let almost = start + Duration::from_millis(999);
    assert_eq!(
        guard.admit(ip("10.0.0.4"), USER, almost).unwrap_err(),
        Limit::Username
    );
    assert!(
        guard
            .admit(ip("10.0.0.4"), "acme/devices/other", almost)
            .is_ok(),
        "other usernames are not held back"
    );
    let after = start + Duration::from_secs(1);
    assert!(guard.admit(ip("10.0.0.4"), USER, after).is_ok());
}

#[test]
fn backoffs_double_up_to_the_cap() {
    let mut now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    let mut durations = Vec::new();
    for round in 0..6 {
        for n in 0..3 {
            let started = fail(&mut guard, &format!("10.0.{round}.{n}"), USER, now);
            durations.extend(
                started
                    .into_iter()
                    .map(|started| started.duration.as_secs()),
            );
        }
        assert!(guard.admit(ip("10.1.0.1"), USER, now).is_err());
        now += Duration::from_secs(*durations.last().unwrap());
    }
    assert_eq!(durations, [1, 2, 4, 8, 8, 8]);
}

#[test]
fn checks_in_flight_count_as_failures_so_a_burst_gets_no_further_than_a_sequence() {
    let now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    let tickets: Vec<Ticket> = (0..3)
        .map(|n| guard.admit(ip(&format!("10.0.0.{n}")), USER, now).unwrap())
        .collect();
    assert_eq!(
        guard.admit(ip("10.0.0.9"), USER, now).unwrap_err(),
        Limit::Username,
        "three checks in flight fill the username's limit"
    );
    let mut tickets = tickets.into_iter();
    assert!(guard.finish(tickets.next().unwrap(), true, now).is_empty());
    let ticket = guard
        .admit(ip("10.0.0.9"), USER, now)
        .expect("a success frees its place");
    let started: Vec<_> = [ticket, tickets.next().unwrap(), tickets.next().unwrap()]
        .into_iter()
        .flat_map(|ticket| guard.finish(ticket, false, now))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
}

#[test]
fn an_address_is_limited_across_usernames_and_a_refusal_counts_nowhere() {
    let now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    for n in 0..3 {
        assert!(fail(&mut guard, "192.0.2.7", &format!("acme/devices/d{n}"), now).is_empty());
    }
    // The username "acme/devices/d0" still admits from elsewhere.
    let elsewhere = guard
        .admit(ip("192.0.2.8"), "acme/devices/d0", now)
        .unwrap();
    guard.finish(elsewhere, true, now);
    let started = fail(&mut guard, "192.0.2.7", "acme/devices/d3", now);
    assert_eq!(
        started,
        [BackoffStarted {
            limit: Limit::Address,
            key: "192.0.2.7".into(),
            duration: Duration::from_secs(1),
        }]
    );
    for n in 0..10 {
        assert_eq!(
            guard
                .admit(ip("192.0.2.7"), &format!("acme/devices/x{n}"), now)
                .unwrap_err(),
            Limit::Address
        );
    }
    assert_eq!(
        guard.tracked(),
        (2, 4),
        "refused attempts left no trace in the username table"
    );
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let mut now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    for _ in 0..10 {
        assert!(fail(&mut guard, "10.0.0.1", USER, now).is_empty());
        assert!(fail(&mut guard, "10.0.0.2", USER, now).is_empty());
        now += config().failure_window;
    }
}

#[test]
fn a_success_forgets_failures_but_not_strikes() {
    let now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    let honest = |guard: &mut LoginGuard, now| {
        let ticket = guard.admit(ip("10.0.0.9"), USER, now).unwrap();
        guard.finish(ticket, true, now);
    };
    fail(&mut guard, "10.0.0.1", USER, now);
    fail(&mut guard, "10.0.0.2", USER, now);
    honest(&mut guard, now);
    assert!(fail(&mut guard, "10.0.0.3", USER, now).is_empty());
    assert!(fail(&mut guard, "10.0.0.4", USER, now).is_empty());
    assert_eq!(
        fail(&mut guard, "10.0.0.5", USER, now)[0].duration,
        Duration::from_secs(1)
    );

    // An honest success once the backoff is over does not make the next one short again: an
    // attacker sharing the username gains nothing from it.
    let after = now + Duration::from_secs(1);
    honest(&mut guard, after);
    let started: Vec<_> = (0..3)
        .flat_map(|n| fail(&mut guard, &format!("10.0.1.{n}"), USER, after))
        .collect();
    assert_eq!(started[0].duration, Duration::from_secs(2));
}

#[test]
fn keys_are_forgotten_once_quiet_and_their_strikes_only_after_the_longest_backoff() {
    let start = Instant::now();
    let config = GuardConfig {
        failure_window: Duration::from_secs(5),
        ..config()
    };
    let mut guard = LoginGuard::new(config.clone(), start);
    fail(&mut guard, "10.0.0.1", "acme/devices/once", start);
    for n in 0..3 {
        fail(&mut guard, &format!("10.0.1.{n}"), USER, start);
    }
    assert_eq!(guard.tracked(), (4, 2));

    // The single failure is forgotten once out of the window; the backoff's strike is not.
    let later = start + config.failure_window;
    assert!(
        guard
            .admit(None, "acme/devices/probe", later)
            .is_ok_and(|ticket| {
                guard.finish(ticket, true, later);
                true
            })
    );
    assert_eq!(guard.tracked(), (0, 2), "{:?}", guard.tracked());
    let strikes = |guard: &LoginGuard| guard.usernames.entries.get(USER).map(|entry| entry.strikes);
    assert_eq!(strikes(&guard), Some(1));

    // Backoff ended at start + 1 s; the strike lasts max_backoff beyond that.
    let remembered = start + Duration::from_secs(1) + config.max_backoff - Duration::from_millis(1);
    guard
        .admit(None, "acme/devices/probe", remembered)
        .map(|t| guard.finish(t, true, remembered))
        .unwrap();
    assert_eq!(strikes(&guard), Some(1));
    let forgotten = remembered + Duration::from_secs(2);
    guard
        .admit(None, "acme/devices/probe", forgotten)
        .map(|t| guard.finish(t, true, forgotten))
        .unwrap();
    assert_eq!(strikes(&guard), None);
    assert_eq!(guard.tracked(), (0, 1), "only the probe, just used");
    // Forgotten for good: the next backoff is the first one again.
    let started: Vec<_> = (0..3)
        .flat_map(|n| fail(&mut guard, &format!("10.0.2.{n}"), USER, forgotten))
        .collect();
    assert_eq!(started[0].duration, config.backoff);
}

#[test]
fn a_full_table_leaves_new_addresses_untracked_until_a_sweep_makes_room() {
    let start = Instant::now();
    let mut guard = LoginGuard::new(config(), start);
    for n in 0..MAX_TRACKED_ADDRESSES as u32 {
        let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        let ticket = guard.admit(Some(address), USER, start).unwrap();
        // Succeeding keeps the username out of backoff; the address stays in the table.
        guard.finish(ticket, true, start);
    }
    assert_eq!(guard.tracked().0, MAX_TRACKED_ADDRESSES);
    assert_eq!(guard.untracked(), 0);
    let ticket = guard.admit(ip("192.0.2.1"), USER, start).unwrap();
    assert_eq!(guard.untracked(), 1);
    guard.finish(ticket, false, start);
    assert_eq!(guard.tracked().0, MAX_TRACKED_ADDRESSES, "not grown");

    let later = start + config().failure_window;
    let ticket = guard.admit(ip("192.0.2.1"), USER, later).unwrap();
    assert_eq!(guard.tracked().0, 1, "expired addresses were swept");
    guard.finish(ticket, true, later);
    assert_eq!(guard.untracked(), 1);
}

#[test]
fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
    let key = |text: &str| AddressKey::of(text.parse().unwrap());
    assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    assert_eq!(key("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");

    let now = Instant::now();
    let mut guard = LoginGuard::new(config(), now);
    for n in 0..4 {
        fail(
            &mut guard,
            &format!("2001:db8::{n}"),
            &format!("acme/devices/d{n}"),
            now,
        );
    }
    assert_eq!(
        guard.admit(ip("2001:db8::ffff"), USER, now).unwrap_err(),
        Limit::Address
    );
    assert!(guard.admit(ip("2001:db8:0:1::1"), USER, now).is_ok());
}

#[test]
fn backoff_arithmetic_saturates_at_the_cap() {
    let config = GuardConfig {
        max_backoff: Duration::MAX,
        ..config()
    };
    assert_eq!(backoff(&config, 0), Duration::from_secs(1));
    assert_eq!(backoff(&config, 10), Duration::from_secs(1024));
    assert_eq!(
        backoff(&config, u32::MAX),
        Duration::from_secs(u64::from(u32::MAX))
    );
    assert_eq!(backoff(&self::config(), u32::MAX), Duration::from_secs(8));
}

#[test]
fn an_address_alone_backs_off_and_says_how_long_is_left() {
    let start = Instant::now();
    let mut guard = LoginGuard::new(config(), start);
    let address = ip("192.0.2.7").unwrap();
    for _ in 0..config().max_failures_per_address {
        let ticket = guard.admit_address(address, start).unwrap();
        let _ = guard.finish(ticket, false, start);
    }
    let later = start + Duration::from_millis(400);
    let left = guard.admit_address(address, later).unwrap_err();
    assert_eq!(left, config().backoff - Duration::from_millis(400));
    // Another address, and usernames, are untouched.
    assert!(guard.admit_address(ip("192.0.2.8").unwrap(), later).is_ok());
    assert!(guard.admit(None, "acme/devices/d", later).is_ok());
    // After the backoff the address is admitted again.
    let ticket = guard
        .admit_address(address, start + config().backoff)
        .unwrap();
    assert!(
        guard
            .finish(ticket, true, start + config().backoff)
            .is_empty()
    );
}
