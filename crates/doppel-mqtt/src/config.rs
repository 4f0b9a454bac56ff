//! How the MQTT side runs.

use crate::acl::AclRule;
use doppel_auth::GuardConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default largest MQTT packet: twice the default largest twin document, so a whole shadow
/// update with its envelope fits and nothing much larger reaches the parser.
pub const DEFAULT_MAX_PACKET_BYTES: u32 = 128 * 1024;

/// Default most concurrent connections per listener; beyond it new connections are refused.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Default longest keep-alive a client may ask for; AWS IoT allows 1200 s.
pub const DEFAULT_MAX_KEEPALIVE_SECS: u16 = 1200;

/// A TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificates that sign device certificates. When set, clients must present a
    /// certificate signed by one of them, and the certificate's common name names the device.
    pub client_ca: Option<PathBuf>,
}

/// The MQTT adapter's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttConfig {
    /// The plain TCP listener.
    pub listen: SocketAddr,
    /// An optional TLS listener.
    pub tls: Option<TlsConfig>,
    /// An optional WebSocket listener (MQTT over `ws://`, path `/mqtt`), for browsers.
    pub websocket: Option<SocketAddr>,
    /// Let clients connect without credentials; off by default, and loud when on. Anonymous
    /// clients act in the tenant `default` as the thing named by their client id.
    pub allow_anonymous: bool,
    /// The tenant of devices that authenticate with a client certificate.
    pub certificate_tenant: String,
    /// Rules for ordinary topics within a tenant; see [`crate::acl`].
    pub acl: Vec<AclRule>,
    pub max_packet_bytes: u32,
    pub max_connections: usize,
    pub max_keepalive_secs: u16,
    /// How failing password logins are held back.
    pub login: GuardConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls: None,
            websocket: None,
            allow_anonymous: false,
            certificate_tenant: "default".into(),
            acl: Vec::new(),
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_keepalive_secs: DEFAULT_MAX_KEEPALIVE_SECS,
            login: GuardConfig::default(),
        }
    }
}
