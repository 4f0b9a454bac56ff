//! How an edge agent runs.

use doppel_model::policy::ReplicaConfig;
use doppel_model::{DeviceId, TenantId};
use std::fmt;
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

/// The port of `mqtt://` when none is given (IANA's MQTT port).
pub const MQTT_PORT: u16 = 1883;

/// The port of `mqtts://` when none is given (IANA's MQTT-over-TLS port).
pub const MQTTS_PORT: u16 = 8883;

/// One device behind the agent and the credential it reaches the hub with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCredential {
    pub device: DeviceId,
    /// The password of the hub's device credential `{tenant}/devices/{device}`.
    pub password: String,
}

/// Where the hub's MQTT listener is and how to speak to it, as `--hub` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubAddress {
    /// A host name or IP address, without brackets. Over TLS, the hub's certificate must be
    /// valid for exactly this name.
    pub host: String,
    pub port: u16,
    /// `mqtts://`: the link runs over TLS and checks the hub's certificate and name.
    pub tls: bool,
}

impl HubAddress {
    /// `host:port` or `mqtt://host[:port]` (plain MQTT), `mqtts://host[:port]` (TLS); an IPv6
    /// address in brackets.
    pub fn parse(text: &str) -> Option<HubAddress> {
        let (tls, rest, default_port) = if let Some(rest) = text.strip_prefix("mqtts://") {
            (true, rest, Some(MQTTS_PORT))
        } else if let Some(rest) = text.strip_prefix("mqtt://") {
            (false, rest, Some(MQTT_PORT))
        } else if text.contains("://") {
            return None;
        } else {
            // The bare form keeps its old meaning: plain MQTT, and the port is required.
            (false, text, None)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return None,
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(port) => port.parse().ok()?,
            None => default_port?,
        };
        let valid = !host.is_empty() && !host.contains(['/', '@', '[', ']']);
        valid.then(|| HubAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for HubAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Where the local HTTP API listens and who may call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalApi {
    /// TCP on `addr`. Every request but the health checks needs a token of the agent's own
    /// store (its first one is in `admin.token` in the data folder), unless `allow_anonymous`.
    Tcp {
        addr: SocketAddr,
        /// Serve without tokens (development only; refused unless `addr` is loopback).
        allow_anonymous: bool,
    },
    /// A Unix socket at `path` with file mode `mode`: whoever the file lets connect may call
    /// every route, without a token.
    Unix { path: PathBuf, mode: u32 },
}

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The hub's MQTT listener, as `--hub` gave it (see [`HubAddress::parse`]).
    pub hub: String,
    /// PEM CA certificates to trust for the hub's certificate instead of the system's; only
    /// with an `mqtts://` hub.
    pub hub_ca_file: Option<PathBuf>,
    /// The hub tenant the devices belong to (their MQTT usernames name it).
    pub tenant: TenantId,
    /// Where the local store lives; one agent per folder.
    pub data_dir: PathBuf,
    /// The local HTTP API.
    pub local_api: LocalApi,
    /// The secret of the agent's first admin token, when its store has none yet (else a random
    /// one is made); written to `admin.token` in the data folder either way.
    pub bootstrap_token: Option<String>,
    /// This agent's replica name (unique among the replicas of its twins) and conflict rules.
    pub replica: ReplicaConfig,
    pub devices: Vec<DeviceCredential>,
    pub sync_interval: Duration,
    pub reconnect_delay: Duration,
    pub answer_timeout: Duration,
    pub keep_alive: Duration,
    /// Invalid tokens from one address per minute before the local API holds it back (429).
    pub max_auth_failures_per_address: u32,
}

impl EdgeConfig {
    /// Checks what the agent cannot run without, with a message a person can act on.
    pub fn validate(&self) -> Result<(), EdgeError> {
        let invalid = |reason: String| Err(EdgeError::Config(reason));
        let hub = self.hub_address()?;
        if self.hub_ca_file.is_some() && !hub.tls {
            return invalid(format!(
                "--hub-ca-file is for a TLS link; name the hub as mqtts://{}:PORT",
                hub.host
            ));
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
        match &self.local_api {
            LocalApi::Tcp {
                addr,
                allow_anonymous: true,
            } if !addr.ip().is_loopback() => invalid(format!(
                "--http-allow-anonymous true with --http-addr {addr} lets anyone on the network read and change the agent's twins; bind to loopback, or use --http-unix-socket"
            )),
            LocalApi::Unix { mode, .. } if !unix_socket_mode_is_private(*mode) => invalid(format!(
                "--http-unix-socket-mode {mode:04o} must give the owner read and write and nobody else anything (0600, or 0660 with the group)"
            )),
            _ => Ok(()),
        }
    }

    /// The hub's address, parsed from [`EdgeConfig::hub`].
    pub fn hub_address(&self) -> Result<HubAddress, EdgeError> {
        HubAddress::parse(&self.hub).ok_or_else(|| {
            EdgeError::Config(format!(
                "--hub {:?} must be host:port, mqtt://host[:port] or mqtts://host[:port]",
                self.hub
            ))
        })
    }
}

/// Whether `mode` suits the local API's socket: the owner reads and writes (a client needs
/// write permission to connect), others get nothing (no token protects the socket), and
/// nothing outside the permission bits.
fn unix_socket_mode_is_private(mode: u32) -> bool {
    mode & !0o777 == 0 && mode & 0o600 == 0o600 && mode & 0o007 == 0
}

/// Why the agent could not start or run.
#[derive(Debug, Error)]
pub enum EdgeError {
    #[error("invalid edge configuration: {0}")]
    Config(String),
    #[error("cannot open the local store in {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot start the local engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Tokens(#[from] doppel_auth::BootstrapError),
    #[error("--hub-ca-file: {0}")]
    HubTls(doppel_http::tls::TlsError),
    #[error("cannot read or write the sync watermarks in {path}: {source}")]
    Watermarks {
        path: String,
        source: std::io::Error,
    },
    #[error("the local HTTP server failed: {0}")]
    Serve(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(host: &str, port: u16, tls: bool) -> Option<HubAddress> {
        Some(HubAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    #[test]
    fn hub_addresses_name_host_port_and_whether_tls() {
        for (text, expected) in [
            ("hub.example:1883", hub("hub.example", 1883, false)),
            ("mqtt://hub.example:1884", hub("hub.example", 1884, false)),
            ("mqtt://hub.example", hub("hub.example", MQTT_PORT, false)),
            ("mqtts://hub.example:8884", hub("hub.example", 8884, true)),
            ("mqtts://hub.example", hub("hub.example", MQTTS_PORT, true)),
            ("mqtts://hub.example/", hub("hub.example", MQTTS_PORT, true)),
            ("mqtts://127.0.0.1:8883", hub("127.0.0.1", 8883, true)),
            ("[::1]:1883", hub("::1", 1883, false)),
            ("mqtts://[::1]", hub("::1", MQTTS_PORT, true)),
            ("mqtts://[::1]:9", hub("::1", 9, true)),
        ] {
            assert_eq!(HubAddress::parse(text), expected, "{text}");
        }
    }

    #[test]
    fn hub_addresses_without_a_port_or_with_another_scheme_are_refused() {
        for text in [
            "nowhere",
            ":1883",
            "hub.example:port",
            "ws://hub.example:80",
            "https://hub.example",
            "mqtts://",
            "mqtts://[::1",
            "mqtts://[::1]x",
            "mqtts://user@hub.example",
            "mqtts://hub.example/path",
        ] {
            assert_eq!(HubAddress::parse(text), None, "{text}");
        }
    }

    #[test]
    fn an_address_prints_as_the_url_it_was_read_from() {
        for text in ["mqtts://hub.example:8883", "mqtt://[::1]:1883"] {
            let address = HubAddress::parse(text).expect("a hub address");
            assert_eq!(address.to_string(), text);
            assert_eq!(HubAddress::parse(&address.to_string()), Some(address));
        }
    }

    #[test]
    fn only_sockets_closed_to_others_are_accepted() {
        for (mode, private) in [
            (0o600, true),
            (0o660, true),
            (0o700, true),
            (0o400, false),
            (0o644, false),
            (0o666, false),
            (0o602, false),
            (0o4600, false),
        ] {
            assert_eq!(unix_socket_mode_is_private(mode), private, "{mode:o}");
        }
    }
}
