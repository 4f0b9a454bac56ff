//! What a simulation does: how many devices, against which hub, how often they report and how
//! their link behaves. One struct, checked by [`SimConfig::validate`] before anything starts.

use std::time::Duration;

use doppel_model::{DeviceId, TenantId};
use doppel_netfault::{LinkModel, LinkModelError};

/// Thing names are `{prefix}-{n:06}` unless told otherwise.
pub const DEFAULT_PREFIX: &str = "sim";

/// How often a device reports, on average: the AWS IoT guidance for telemetry-class shadows.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The default jitter is the interval divided by this (2 s for 10 s): how far one report may
/// stray from the interval, either way, so that devices that connected together do not report
/// in lockstep. A fraction rather than a fixed time, so that a short interval alone is valid.
pub const DEFAULT_JITTER_DIVISOR: u32 = 5;

/// How long a run lasts from the first connect.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// μ when only λ is given: a partition lasts a second on average.
pub const DEFAULT_RECONNECT_RATE: f64 = 1.0;

/// Devices connecting per second. A hub accepts a few thousand MQTT connects per second on a
/// small machine (each one is a TCP handshake, an auth check and a presence write); a storm of
/// 100,000 at once would measure the storm, not the steady state.
pub const DEFAULT_CONNECT_RATE: u32 = 2_000;

/// The MQTT keep-alive a device announces. Reports usually keep the connection busy; the ping
/// matters only for intervals longer than this.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// How device credentials are named on the hub (docs/MQTT.md, "Who may connect").
pub const DEFAULT_USERNAME_TEMPLATE: &str = "{tenant}/devices/{thing}";

/// The most devices one run may simulate. Far above what one process can hold open (see
/// [`crate::limits`]); it only keeps per-device arithmetic (connect slots, seeds, source
/// addresses) well inside its types.
pub const MAX_DEVICES: u32 = 10_000_000;

/// The shortest report interval: below it a device would flood its own connection.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The most shard tasks (threads): more than this buys nothing but context switches.
pub const MAX_TASKS: usize = 1_024;

/// One simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The hub's MQTT listener, `host:port`. Resolved once at start.
    pub hub: String,
    /// How many devices to simulate, each with its own connection.
    pub devices: u32,
    /// Thing names are `{prefix}-{index:06}`, so two runs with different prefixes never share a
    /// twin.
    pub prefix: String,
    /// The mean time between two periodic reports of one device.
    pub interval: Duration,
    /// Each delay between reports is `interval` plus a uniform draw from `[-jitter, +jitter]`;
    /// at most `interval`, so a delay is never negative.
    pub jitter: Duration,
    /// How long the run lasts from its start (the first device's connect slot).
    pub duration: Duration,
    /// The link every device follows, each with its own seed; `None` keeps every link up.
    pub link: Option<LinkModel>,
    /// Fixes every random choice of the run (link schedules, jitter, readings): device `i` uses
    /// `seed + i`, so a run can be replayed and a single device's schedule recomputed.
    pub seed: u64,
    /// First connects per second, across all devices. Reconnects after a partition are not
    /// paced: they are spread out by the link model already.
    pub connect_rate: u32,
    /// How many shard tasks (each on its own thread) share the devices.
    pub tasks: usize,
    /// The keep-alive each device announces in CONNECT.
    pub keep_alive: Duration,
    /// Connect with credentials instead of anonymously.
    pub credentials: Option<Credentials>,
}

/// Device credentials: every simulated device logs in with the same password under its own
/// username.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The devices' tenant on the hub.
    pub tenant: String,
    /// The username, with `{tenant}` and `{thing}` replaced.
    pub username_template: String,
    /// The password every device's credential was created with.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password must not reach a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .field("username_template", &self.username_template)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// The username of the device `thing`.
    pub fn username(&self, thing: &str) -> String {
        self.username_template
            .replace("{tenant}", &self.tenant)
            .replace("{thing}", thing)
    }
}

/// Why a [`SimConfig`] cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `devices` is zero or above [`MAX_DEVICES`].
    #[error("devices must be between 1 and {MAX_DEVICES}, got {0}")]
    Devices(u32),
    /// The prefix does not make valid device ids.
    #[error("prefix {prefix:?} does not make valid device ids such as {example:?}: {reason}")]
    Prefix {
        /// The prefix given.
        prefix: String,
        /// The longest thing name it makes.
        example: String,
        /// What the id rules say about it.
        reason: String,
    },
    /// The interval is below [`MIN_INTERVAL`].
    #[error("interval must be at least {MIN_INTERVAL:?}, got {0:?}")]
    Interval(Duration),
    /// The jitter is larger than the interval.
    #[error("jitter ({jitter:?}) must not exceed the interval ({interval:?})")]
    Jitter {
        /// The jitter given.
        jitter: Duration,
        /// The interval given.
        interval: Duration,
    },
    /// The duration is zero.
    #[error("duration must be above zero")]
    Duration,
    /// The link model's rates are not usable.
    #[error("link model: {0}")]
    Link(#[from] LinkModelError),
    /// The connect rate is zero.
    #[error("connect rate must be at least 1 per second")]
    ConnectRate,
    /// The number of tasks is zero or above [`MAX_TASKS`].
    #[error("tasks must be between 1 and {MAX_TASKS}, got {0}")]
    Tasks(usize),
    /// The keep-alive does not fit MQTT's 16-bit seconds, or is zero.
    #[error("keep-alive must be between 1 s and 65535 s, got {0:?}")]
    KeepAlive(Duration),
    /// The tenant is not a valid tenant id.
    #[error("tenant {tenant:?} is not valid: {reason}")]
    Tenant {
        /// The tenant given.
        tenant: String,
        /// What the id rules say about it.
        reason: String,
    },
    /// The username template names no `{thing}`, so every device would log in as the same one.
    #[error("username template {0:?} must contain {{thing}}")]
    UsernameTemplate(String),
}

impl SimConfig {
    /// A configuration of `devices` devices against `hub` with every other setting at its
    /// default: no partitions, anonymous devices, one task per core.
    pub fn new(hub: impl Into<String>, devices: u32) -> SimConfig {
        SimConfig {
            hub: hub.into(),
            devices,
            prefix: DEFAULT_PREFIX.to_owned(),
            interval: DEFAULT_INTERVAL,
            jitter: DEFAULT_INTERVAL / DEFAULT_JITTER_DIVISOR,
            duration: DEFAULT_DURATION,
            link: None,
            seed: 1,
            connect_rate: DEFAULT_CONNECT_RATE,
            tasks: std::thread::available_parallelism().map_or(1, usize::from),
            keep_alive: DEFAULT_KEEP_ALIVE,
            credentials: None,
        }
    }

    /// Checks every setting, naming the first one at fault.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of the first setting that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.devices == 0 || self.devices > MAX_DEVICES {
            return Err(ConfigError::Devices(self.devices));
        }
        self.validate_prefix()?;
        if self.interval < MIN_INTERVAL {
            return Err(ConfigError::Interval(self.interval));
        }
        if self.jitter > self.interval {
            return Err(ConfigError::Jitter {
                jitter: self.jitter,
                interval: self.interval,
            });
        }
        if self.duration.is_zero() {
            return Err(ConfigError::Duration);
        }
        if let Some(link) = &self.link {
            link.validate()?;
        }
        if self.connect_rate == 0 {
            return Err(ConfigError::ConnectRate);
        }
        if self.tasks == 0 || self.tasks > MAX_TASKS {
            return Err(ConfigError::Tasks(self.tasks));
        }
        if self.keep_alive < Duration::from_secs(1)
            || self.keep_alive > Duration::from_secs(u64::from(u16::MAX))
        {
            return Err(ConfigError::KeepAlive(self.keep_alive));
        }
        if let Some(credentials) = &self.credentials {
            if let Err(err) = TenantId::new(credentials.tenant.as_str()) {
                return Err(ConfigError::Tenant {
                    tenant: credentials.tenant.clone(),
                    reason: err.to_string(),
                });
            }
            if !credentials.username_template.contains("{thing}") {
                return Err(ConfigError::UsernameTemplate(
                    credentials.username_template.clone(),
                ));
            }
        }
        Ok(())
    }

    /// The thing name of device `index`.
    pub fn thing(&self, index: u32) -> String {
        thing_name(&self.prefix, index)
    }

    /// The longest thing name is the last one; if it is a valid device id (and not a named
    /// shadow's), so is every other.
    fn validate_prefix(&self) -> Result<(), ConfigError> {
        let example = self.thing(self.devices.saturating_sub(1));
        let reason = match DeviceId::new(example.as_str()) {
            Ok(id) if id.shadow_name().is_some() => {
                "it names a named shadow, not a device".to_owned()
            }
            Ok(_) => return Ok(()),
            Err(err) => err.to_string(),
        };
        Err(ConfigError::Prefix {
            prefix: self.prefix.clone(),
            example,
            reason,
        })
    }
}

/// The link model of rates λ (`disconnect_rate`) and μ (`reconnect_rate`), per second; `None`
/// when λ is zero, which means the link never goes down (a model the link model itself does
/// not accept, since a phase of rate zero never ends).
pub fn link_model(disconnect_rate: f64, reconnect_rate: f64) -> Option<LinkModel> {
    (disconnect_rate != 0.0).then_some(LinkModel {
        disconnect_rate,
        reconnect_rate,
    })
}

/// `{prefix}-{index:06}`: zero-padded so that names sort in device order up to a million.
pub fn thing_name(prefix: &str, index: u32) -> String {
    format!("{prefix}-{index:06}")
}

#[cfg(test)]
mod tests;
