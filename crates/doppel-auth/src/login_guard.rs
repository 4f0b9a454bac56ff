//! Bounds the Argon2 work that failing password logins may cause, per client address and per
//! username. Pure: every call takes the time, so tests control it.
//!
//! A password that verified before is answered from memory and never reaches the guard. Every
//! other login asks [`LoginGuard::admit`] before its Argon2 check and reports the verdict with
//! [`LoginGuard::finish`]. For each of its two keys (the client's address, see [`AddressKey`], and
//! the username) the guard counts failures within a window, counting a check still in flight as
//! a failure, so that a burst of concurrent attempts gets no further than a sequence of them.
//! When a key reaches its limit it is in backoff: its logins are refused at once, without Argon2,
//! for [`GuardConfig::backoff`], doubled at every new backoff of that key up to
//! [`GuardConfig::max_backoff`]. The doubling is remembered until the key has been quiet for
//! `max_backoff` after its last backoff, so waiting for the guard to forget is no faster.
//!
//! What an attacker gets, per address and per username: `max_failures` checks, then about
//! `max_failures` per `max_backoff`. Known weakness: a client whose password has not verified
//! since the hub started (a new device, or any device after a restart) cannot log in while its
//! username or its address is in backoff; it gets in on a retry once the backoff ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Default failures (or checks in flight) from one address before its backoff. Above the
/// username's limit, because many honest devices may share an address (NAT, a carrier's
/// gateway) and a cold start makes all of them check at once.
pub const DEFAULT_MAX_FAILURES_PER_ADDRESS: u32 = 10;

/// Default failures (or checks in flight) for one username before its backoff. A device, or the
/// few instances of an application, rarely has more than a handful of checks at once; each costs
/// up to one Argon2 run per credential of the username.
pub const DEFAULT_MAX_FAILURES_PER_USERNAME: u32 = 5;

/// Default window in which failures add up; a key with fewer failures in it starts afresh.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Default first backoff: short, so that an honest client with a wrong setting fixed at once
/// is not kept waiting, and doubled for a client that keeps failing.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// Default longest backoff: an attacker then gets a few checks per quarter of an hour per key,
/// and a device whose password has not verified since the start waits at most this long once
/// the attack stops.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Most addresses tracked at once: about 100 bytes each, so under 7 MB. An attacker who holds
/// more addresses than this (IPv6 is counted per /64, see [`AddressKey`]) gets the ones beyond
/// it untracked (counted by [`LoginGuard::untracked`], reported in the refusal log); the
/// username limit and the bound on concurrent Argon2 runs still hold for them.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Most usernames tracked at once. Only usernames that have credentials reach the guard, so an
/// attacker cannot invent them; beyond this many under attack at once, new ones go untracked.
pub const MAX_TRACKED_USERNAMES: usize = 65_536;

/// How often the tables drop keys that have nothing left to remember: often enough that a full
/// table makes room soon, rarely enough that the sweep (a pass over at most 65 536 entries, well
/// under a millisecond) costs nothing.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Leading bits of an IPv6 address that name one client: a /64 is what one subscriber or one
/// network segment gets, and a host picks freely among its 2^64 addresses.
const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// The limits of a [`LoginGuard`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failures, or checks in flight, from one address within `failure_window` before the
    /// address is in backoff.
    pub max_failures_per_address: u32,
    /// Failures, or checks in flight, for one username within `failure_window` before the
    /// username is in backoff.
    pub max_failures_per_username: u32,
    /// How long failures add up.
    pub failure_window: Duration,
    /// The first backoff of a key; each further one lasts twice as long as the one before.
    pub backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_failures_per_address: DEFAULT_MAX_FAILURES_PER_ADDRESS,
            max_failures_per_username: DEFAULT_MAX_FAILURES_PER_USERNAME,
            failure_window: DEFAULT_FAILURE_WINDOW,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Which limit refused a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    Address,
    Username,
}

impl Limit {
    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Username => "username",
        }
    }
}

/// What the guard tracks of a client's address: the address itself for IPv4, the /64 it lies
/// in for IPv6 (an IPv4 address mapped into IPv6 counts as the IPv4 address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(address: IpAddr) -> AddressKey {
        match address {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                    AddressKey(IpAddr::V6(Ipv6Addr::from(v6.to_bits() & mask)))
                }
            },
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{IPV6_CLIENT_PREFIX_BITS}"),
        }
    }
}

/// The right to run one password check, to be handed back to [`LoginGuard::finish`] with its
/// verdict. A key that was not tracked (its table was full) is `None`.
#[derive(Debug)]
#[must_use = "a ticket counts as a failure in flight until it is finished"]
pub struct Ticket {
    address: Option<AddressKey>,
    username: Option<String>,
}

/// A backoff that has just begun, for the log: one line per backoff, not one per refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackoffStarted {
    pub limit: Limit,
    /// The address (as tracked) or the username.
    pub key: String,
    pub duration: Duration,
}

/// Failures and backoff of every address and username under watch.
pub struct LoginGuard {
    config: GuardConfig,
    addresses: Table<AddressKey>,
    usernames: Table<String>,
    /// Keys left untracked because their table was full, since the start.
    untracked: u64,
}

impl LoginGuard {
    pub fn new(config: GuardConfig, now: Instant) -> LoginGuard {
        LoginGuard {
            addresses: Table::new(MAX_TRACKED_ADDRESSES, config.max_failures_per_address, now),
            usernames: Table::new(MAX_TRACKED_USERNAMES, config.max_failures_per_username, now),
            config,
            untracked: 0,
        }
    }

    /// Whether a login for `username` from `address` (unknown for some transports) may have its
    /// password checked now. `Err` names the limit that refuses it; then nothing was counted.
    pub fn admit(
        &mut self,
        address: Option<IpAddr>,
        username: &str,
        now: Instant,
    ) -> Result<Ticket, Limit> {
        let address = address.map(AddressKey::of);
        self.addresses.sweep(now, &self.config);
        self.usernames.sweep(now, &self.config);
        // Check both before counting in either, so that a refusal counts nowhere.
        if let Some(key) = &address
            && !self.addresses.allows(key, now, &self.config)
        {
            return Err(Limit::Address);
        }
        if !self.usernames.allows(username, now, &self.config) {
            return Err(Limit::Username);
        }
        let address = address.filter(|key| self.addresses.start(*key, now));
        let username =
            Some(username.to_owned()).filter(|key| self.usernames.start(key.clone(), now));
        self.untracked += u64::from(address.is_none()) + u64::from(username.is_none());
        Ok(Ticket { address, username })
    }

    /// Whether a check keyed by `address` alone may run now (an API token's: it names no
    /// username, and a guess of it costs no Argon2, so only the address is watched). `Err` is
    /// how long the address's backoff has left; then nothing was counted.
    pub fn admit_address(&mut self, address: IpAddr, now: Instant) -> Result<Ticket, Duration> {
        let key = AddressKey::of(address);
        self.addresses.sweep(now, &self.config);
        if !self.addresses.allows(&key, now, &self.config) {
            let left = self.addresses.blocked_for(&key, now);
            return Err(left.unwrap_or(self.config.backoff));
        }
        let address = Some(key).filter(|key| self.addresses.start(*key, now));
        self.untracked += u64::from(address.is_none());
        Ok(Ticket {
            address,
            username: None,
        })
    }

    /// Reports how the check of `ticket` ended. Returns the backoffs that begin with it.
    pub fn finish(&mut self, ticket: Ticket, succeeded: bool, now: Instant) -> Vec<BackoffStarted> {
        let mut started = Vec::new();
        if let Some(key) = ticket.address
            && let Some(duration) = self.addresses.finish(&key, succeeded, now, &self.config)
        {
            started.push(BackoffStarted {
                limit: Limit::Address,
                key: key.to_string(),
                duration,
            });
        }
        if let Some(key) = ticket.username
            && let Some(duration) = self.usernames.finish(&key, succeeded, now, &self.config)
        {
            started.push(BackoffStarted {
                limit: Limit::Username,
                key,
                duration,
            });
        }
        started
    }

    /// Keys that went untracked since the start because their table was full.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Addresses and usernames under watch.
    pub fn tracked(&self) -> (usize, usize) {
        (self.addresses.entries.len(), self.usernames.entries.len())
    }
}

/// The watch over one kind of key.
struct Table<K> {
    entries: HashMap<K, Entry>,
    /// Most entries.
    capacity: usize,
    /// Failures (and checks in flight) that put a key in backoff.
    max_failures: u32,
    /// When expired entries were last dropped.
    last_sweep: Instant,
}

/// What is known of one key. `failures + in_flight` never exceeds the table's `max_failures`
/// (admission checks it), so no check of a key is in flight when its backoff begins.
#[derive(Debug)]
struct Entry {
    /// Failures since `window_start`.
    failures: u32,
    /// Checks admitted and not finished; each counts as a failure until it ends.
    in_flight: u32,
    /// Start of the window `failures` are counted in.
    window_start: Instant,
    /// Backoffs so far: the next one lasts `backoff * 2^strikes`, capped.
    strikes: u32,
    /// End of the last backoff, if the key had one.
    blocked_until: Option<Instant>,
}

impl<K: Eq + Hash> Table<K> {
    fn new(capacity: usize, max_failures: u32, now: Instant) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            max_failures,
            last_sweep: now,
        }
    }

    fn sweep(&mut self, now: Instant, config: &GuardConfig) {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.entries.retain(|_, entry| !entry.expired(now, config));
            self.last_sweep = now;
        }
    }

    fn allows<Q>(&mut self, key: &Q, now: Instant, config: &GuardConfig) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let Some(entry) = self.entries.get_mut(key) else {
            return self.max_failures > 0;
        };
        if entry.blocked_until.is_some_and(|until| now < until) {
            return false;
        }
        entry.roll_window(now, config);
        entry.failures.saturating_add(entry.in_flight) < self.max_failures
    }

    /// How long `key`'s backoff has left, if it is in one.
    fn blocked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.entries.get(key)?.blocked_until?;
        (now < until).then(|| until - now)
    }

    /// Counts a check in flight for `key`; `false` if the table is full and `key` not in it.
    fn start(&mut self, key: K, now: Instant) -> bool {
        let full = self.entries.len() >= self.capacity;
        match self.entries.get_mut(&key) {
            Some(entry) => entry.in_flight = entry.in_flight.saturating_add(1),
            None if full => return false,
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        failures: 0,
                        in_flight: 1,
                        window_start: now,
                        strikes: 0,
                        blocked_until: None,
                    },
                );
            }
        }
        true
    }

    /// Ends a check of `key`; the length of the backoff it starts, if it starts one.
    fn finish<Q>(
        &mut self,
        key: &Q,
        succeeded: bool,
        now: Instant,
        config: &GuardConfig,
    ) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        // A swept entry had no check in flight, so one with a ticket is always there.
        let entry = self.entries.get_mut(key)?;
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.roll_window(now, config);
        if succeeded {
            // The failures were a client's mistakes it has now corrected. The strikes stay: an
            // attacker sharing the key gains nothing from an honest success.
            entry.failures = 0;
            return None;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < self.max_failures {
            return None;
        }
        let duration = backoff(config, entry.strikes);
        entry.strikes = entry.strikes.saturating_add(1);
        entry.failures = 0;
        entry.window_start = now;
        entry.blocked_until = Some(now + duration);
        Some(duration)
    }
}

impl Entry {
    fn roll_window(&mut self, now: Instant, config: &GuardConfig) {
        if now.saturating_duration_since(self.window_start) >= config.failure_window {
            self.failures = 0;
            self.window_start = now;
        }
    }

    /// Whether the entry has nothing left to remember: no check in flight, its failures out of
    /// the window, and `max_backoff` passed since its last backoff ended (until then its strikes
    /// still lengthen the next one).
    fn expired(&self, now: Instant, config: &GuardConfig) -> bool {
        let failures_over =
            now.saturating_duration_since(self.window_start) >= config.failure_window;
        let strikes_over = self
            .blocked_until
            .is_none_or(|until| now.saturating_duration_since(until) >= config.max_backoff);
        self.in_flight == 0 && failures_over && strikes_over
    }
}

/// The backoff after `strikes` earlier ones: `backoff * 2^strikes`, at most `max_backoff`.
fn backoff(config: &GuardConfig, strikes: u32) -> Duration {
    let factor = 2u32.checked_pow(strikes).unwrap_or(u32::MAX);
    config
        .backoff
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(config.max_backoff)
}

#[cfg(test)]
mod tests;
