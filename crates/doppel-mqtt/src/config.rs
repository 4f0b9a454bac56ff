//! How the MQTT side runs.

use crate::acl::AclRule;
use doppel_auth::GuardConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default largest MQTT packet: twice the default largest twin document, so a whole shadow
/// update with its envelope fits and nothing much larger reaches the parser.
pub const DEFAULT_MAX_PACKET_BYTES: u32 = 128 * 1024;

/// Default most live connections over every listener; beyond it CONNECT is refused.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Default most sessions one principal (a device's or an application's credential, an API
/// token) holds live connections under. A device needs one and an application a few; the bound
/// keeps one leaked credential from taking the whole of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_PRINCIPAL: usize = 100;

/// Default time a new connection has to send CONNECT (and to finish a TLS or WebSocket
/// handshake): enough for a device on a slow link, short enough that silent sockets do not
/// pile up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default most messages waiting for one client: a burst of answers, deltas and documents fits,
/// and a client that stopped reading is found before it costs much.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;

/// Default most bytes (payload and topic) waiting for one client in its session's channel.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Sockets the listeners may hold beyond `mqtt.max_connections`: connections still in their
/// handshake, and those over the limit that are being told so in their CONNACK.
pub const HANDSHAKE_SOCKETS: usize = 1024;

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
    /// Most live connections over every listener; beyond it CONNECT is refused (MQTT 3.1.1:
    /// server unavailable, MQTT 5: quota exceeded).
    pub max_connections: usize,
    /// Most sessions (client ids) one principal holds live connections under; beyond it
    /// CONNECT is refused like beyond `max_connections`. Anonymous clients are not counted
    /// together: each client id is its own principal.
    pub max_connections_per_principal: usize,
    /// Most sockets the MQTT listeners hold at once, live connections and handshakes together;
    /// at it they stop accepting until one closes.
    pub max_sockets: usize,
    pub max_keepalive_secs: u16,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Most messages waiting for one client (and in a kept session while its client is away).
    pub max_queued_messages: usize,
    /// Most bytes waiting for one client.
    pub max_queued_bytes: usize,
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
            max_connections_per_principal: DEFAULT_MAX_CONNECTIONS_PER_PRINCIPAL,
            max_sockets: DEFAULT_MAX_CONNECTIONS + HANDSHAKE_SOCKETS,
            max_keepalive_secs: DEFAULT_MAX_KEEPALIVE_SECS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            login: GuardConfig::default(),
        }
    }
}
