//! How an edge agent runs.

use doppel_model::policy::ReplicaConfig;
use doppel_model::{DeviceId, TenantId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Default time between two syncs of a device that nothing else asked for: the hub pushes news
/// as it happens, so this only repairs what a lost message missed.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Default wait before reconnecting a dropped link: short, so a healed partition is noticed
/// quickly, long enough not to spin against a hub that refuses.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Default wait for the hub's answer to a sync before sending again.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default MQTT keep-alive: a silent hub is noticed after about one and a half of these.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// One device behind the agent and the credential it reaches the hub with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCredential {
    pub device: DeviceId,
    /// The password of the hub's device credential `{tenant}/devices/{device}`.
    pub password: String,
}

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The hub's MQTT listener, as `host:port`.
    pub hub: String,
    /// The hub tenant the devices belong to (their MQTT usernames name it).
    pub tenant: TenantId,
    /// Where the local store lives; one agent per folder.
    pub data_dir: PathBuf,
    /// The local HTTP API; keep it on loopback or a gateway-local network.
    pub http_addr: SocketAddr,
    /// This agent's replica name (unique among the replicas of its twins) and conflict rules.
    pub replica: ReplicaConfig,
    pub devices: Vec<DeviceCredential>,
    pub sync_interval: Duration,
    pub reconnect_delay: Duration,
    pub answer_timeout: Duration,
    pub keep_alive: Duration,
}

impl EdgeConfig {
    /// Checks what the agent cannot run without, with a message a person can act on.
    pub fn validate(&self) -> Result<(), EdgeError> {
        let invalid = |reason: String| Err(EdgeError::Config(reason));
        if self.hub_address().is_none() {
            return invalid(format!("--hub {:?} must be host:port", self.hub));
        }
        if self.devices.is_empty() {
            return invalid("name at least one --device".into());
        }
        if self.replica.id.is_empty() || self.replica.id == doppel_model::policy::HUB_REPLICA {
            return invalid(format!(
                "the edge replica id {:?} must be non-empty and not the hub's name",
                self.replica.id
            ));
        }
        for (what, value) in [
            ("sync interval", self.sync_interval),
            ("reconnect delay", self.reconnect_delay),
            ("answer timeout", self.answer_timeout),
            ("keep-alive", self.keep_alive),
        ] {
            if value.is_zero() {
                return invalid(format!("the {what} must be more than zero"));
            }
        }
        Ok(())
    }

    /// The hub's host and port.
    pub fn hub_address(&self) -> Option<(String, u16)> {
        let (host, port) = self.hub.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| (host.trim_matches(['[', ']']).to_owned(), port))
    }
}

/// Why the agent could not start or run.
#[derive(Debug, Error)]
pub enum EdgeError {
    #[error("invalid edge configuration: {0}")]
    Config(String),
    #[error("cannot open the local store in {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the local engine: {0}")]
    Engine(String),
    #[error("cannot read or write the sync watermarks in {path}: {source}")]
    Watermarks {
        path: String,
        source: std::io::Error,
    },
    #[error("the local HTTP server failed: {0}")]
    Serve(std::io::Error),
}
