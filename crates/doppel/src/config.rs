//! Configuration: defaults, then a TOML file (`--config`), then environment variables, then
//! flags. Every key has an environment variable and a flag named after its path: `http.addr` is
//! `DOPPEL_HTTP_ADDR` and `--http-addr`.

use anyhow::{Context, bail};
use clap::ValueEnum;
use doppel_engine::config as engine_defaults;
use doppel_model::Limits;
use doppel_model::command::CommandLimits;
use doppel_model::limits::MAX_CONFIGURABLE_DEPTH;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod flags;
pub use flags::ServeArgs;

/// Largest document limit anyone may configure: a twin is held in memory and rewritten whole on
/// every change, so multi-megabyte documents belong in a blob store, not in a twin.
pub const MAX_CONFIGURABLE_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Most shards anyone may configure; far beyond any core count this runs on.
pub const MAX_SHARDS: usize = 256;

/// Default log filter: our own events at info; the storage engine's routine messages (flushes,
/// compactions) only when something is wrong.
pub const DEFAULT_LOG_LEVEL: &str = "info,fjall=warn,lsm_tree=warn";

/// Smallest MQTT packet limit: room for a CONNECT with long credentials and a small report.
pub const MIN_MQTT_PACKET_BYTES: u32 = 1024;

/// Smallest byte bound of a change stream's ring: room for a few ordinary events, so that a
/// resume right after a disconnect can work at all.
pub const MIN_STREAM_RETENTION_BYTES: usize = 4096;

/// Most Argon2 runs anyone may configure at once: each holds 19 MiB, so this is about 5 GiB.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// Shortest history bucket: every bucket is a keyspace with its own files.
pub const MIN_HISTORY_BUCKET: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder of the embedded store. Created if missing; one server per folder.
    pub data_dir: PathBuf,
    pub http: HttpSection,
    pub limits: Limits,
    pub history: HistorySection,
    pub engine: EngineSection,
    pub log: LogSection,
    pub mqtt: MqttSection,
    pub commands: CommandsSection,
    pub streams: StreamsSection,
    pub query: QuerySection,
    pub activity: ActivitySection,
    /// Conflict policies and CRDT properties per device type, for twins edge agents replicate
    /// (see docs/EDGE.md). Edge agents should carry the same rules.
    pub replication: doppel_model::policy::ReplicationRules,
}

/// Stale-device detection: how long a connected device may stay silent (see docs/API.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivitySection {
    /// Expected activity interval of devices whose type has none of its own, e.g. "24h".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub default: Duration,
    /// By device type, e.g. `pump = "10m"`.
    #[serde(deserialize_with = "durations", serialize_with = "durations_text")]
    pub device_types: std::collections::HashMap<String, Duration>,
}

impl Default for ActivitySection {
    fn default() -> Self {
        Self {
            default: doppel_engine::silence::DEFAULT_ACTIVITY_INTERVAL,
            device_types: std::collections::HashMap::new(),
        }
    }
}

fn durations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<std::collections::HashMap<String, Duration>, D::Error> {
    let texts = std::collections::HashMap::<String, String>::deserialize(deserializer)?;
    texts
        .into_iter()
        .map(|(kind, text)| {
            humantime::parse_duration(&text)
                .map(|duration| (kind, duration))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

/// Fleet queries (`GET /v1/tenants/{tenant}/twins?q=`; see docs/QUERY.md).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySection {
    /// `reported.*` and `desired.*` paths to index, e.g. `["reported.temp"]`; tags, connection
    /// status, device type and firmware version are always indexed.
    pub index: Vec<String>,
}

impl QuerySection {
    /// The configured paths, parsed; each must be a `reported` or `desired` path.
    pub fn indexed_paths(&self) -> anyhow::Result<doppel_engine::IndexedPaths> {
        let mut state = Vec::new();
        for text in &self.index {
            let path = doppel_query::parse_path(text)
                .map_err(|err| anyhow::anyhow!("query.index: {text:?}: {err}"))?;
            if !matches!(
                path,
                doppel_query::Path::Reported(_) | doppel_query::Path::Desired(_)
            ) {
                bail!(
                    "query.index: {text:?} is always indexed or cannot be; name reported.* or desired.* paths"
                );
            }
            state.push(path);
        }
        Ok(doppel_engine::IndexedPaths { state })
    }
}

/// Change streams (`GET /v1/tenants/{tenant}/events`; see docs/API.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsSection {
    /// Events kept per tenant for clients that resume with `Last-Event-ID`.
    pub retention: usize,
    /// Bytes of events kept per tenant for resuming; the oldest go first when over. An event
    /// carries the whole changed section, so this is what bounds the memory of a tenant with
    /// large states.
    pub retention_bytes: usize,
    /// Events a subscriber may fall behind before it is disconnected.
    pub subscriber_buffer: usize,
    /// How long a tenant's stream is kept once no client is attached, e.g. "10m"; then its
    /// kept events are released, and a later resume is told of the gap.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub idle_release: Duration,
}

impl Default for StreamsSection {
    fn default() -> Self {
        let defaults = doppel_engine::stream::StreamLimits::default();
        Self {
            retention: defaults.retention,
            retention_bytes: defaults.retention_bytes,
            subscriber_buffer: defaults.subscriber_buffer,
            idle_release: defaults.idle_release,
        }
    }
}

impl StreamsSection {
    pub fn limits(&self) -> doppel_engine::stream::StreamLimits {
        doppel_engine::stream::StreamLimits {
            retention: self.retention,
            retention_bytes: self.retention_bytes,
            subscriber_buffer: self.subscriber_buffer,
            idle_release: self.idle_release,
        }
    }
}

/// How device commands are bounded and retried (see docs/API.md, "Commands").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsSection {
    /// Longest time to live a command may ask for, e.g. "7d".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub max_ttl: Duration,
    /// Time to live of a command that names none, e.g. "1h".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub default_ttl: Duration,
    /// Largest command payload or acknowledgement response, serialized.
    pub max_payload_bytes: usize,
    /// How long a delivered command waits for its acknowledgement before going out again.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub ack_timeout: Duration,
    /// Deliveries of one command before it is FAILED.
    pub max_attempts: u32,
    /// Repeats of a delivery because the device reconnected, which use no attempt.
    pub max_reconnect_deliveries: u32,
    /// Open (PENDING or DELIVERED) commands one device may have.
    pub max_open: usize,
}

impl Default for CommandsSection {
    fn default() -> Self {
        let defaults = CommandLimits::default();
        Self {
            max_ttl: defaults.max_ttl,
            default_ttl: defaults.default_ttl,
            max_payload_bytes: defaults.max_payload_bytes,
            ack_timeout: defaults.ack_timeout,
            max_attempts: defaults.max_attempts,
            max_reconnect_deliveries: defaults.max_reconnect_deliveries,
            max_open: defaults.max_open,
        }
    }
}

impl CommandsSection {
    pub fn limits(&self) -> CommandLimits {
        CommandLimits {
            max_ttl: self.max_ttl,
            default_ttl: self.default_ttl,
            max_payload_bytes: self.max_payload_bytes,
            ack_timeout: self.ack_timeout,
            max_attempts: self.max_attempts,
            max_reconnect_deliveries: self.max_reconnect_deliveries,
            max_open: self.max_open,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let second = Duration::from_secs(1);
        if self.default_ttl < second || self.max_ttl < self.default_ttl {
            bail!(
                "commands.default_ttl must be at least 1s and at most commands.max_ttl ({}), got {}",
                humantime::format_duration(self.max_ttl),
                humantime::format_duration(self.default_ttl)
            );
        }
        if self.ack_timeout < Duration::from_millis(100) {
            bail!(
                "commands.ack_timeout must be at least 100ms, got {}",
                humantime::format_duration(self.ack_timeout)
            );
        }
        if self.max_attempts == 0 || self.max_open == 0 || self.max_payload_bytes < 2 {
            bail!(
                "commands.max_attempts and commands.max_open must be at least 1, and commands.max_payload_bytes at least 2"
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// Address of the plain MQTT listener. Loopback by default, like the HTTP API.
    pub addr: SocketAddr,
    /// Address of an MQTT-over-WebSocket listener (path `/mqtt`); off unless set.
    pub ws_addr: Option<SocketAddr>,
    /// Let clients connect without credentials (development only; announced loudly).
    pub allow_anonymous: bool,
    /// Largest MQTT packet; larger ones close the connection.
    pub max_packet_bytes: u32,
    /// Most live connections over every listener; beyond it CONNECT is refused.
    pub max_connections: usize,
    /// Most sessions one principal (credential or API token) holds live connections under.
    pub max_connections_per_principal: usize,
    /// Longest keep-alive a client may ask for, in seconds.
    pub max_keepalive_secs: u16,
    /// How long a new connection may take to send CONNECT (and finish TLS or WebSocket), e.g.
    /// "10s"; a silent socket is closed after it.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub connect_timeout: Duration,
    /// Most messages waiting for one client; beyond it QoS 0 messages to it are dropped and a
    /// QoS 1 or 2 message ends its session.
    pub max_queued_messages: usize,
    /// Most bytes (payload and topic) waiting for one client, with the same consequence.
    pub max_queued_bytes: usize,
    pub tls: Option<MqttTlsSection>,
    /// Rules for ordinary topics within a tenant, tried in order (see docs/MQTT.md).
    pub acl: Vec<doppel_mqtt::acl::AclRule>,
    /// How much Argon2 work password logins may cause (see docs/OPERATIONS.md, "Login limits").
    pub login: MqttLoginSection,
}

/// Bounds on the Argon2 work of password logins; see `doppel_auth::login_guard`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttLoginSection {
    /// Argon2 runs at once (password checks at login and hashes of new credentials); 0 for one
    /// per core.
    pub max_concurrent_checks: usize,
    /// Failed (or still running) password checks from one client address (IPv6: its /64)
    /// within `failure_window` before that address's unknown passwords are refused unchecked.
    pub max_failures_per_address: u32,
    /// The same for one username.
    pub max_failures_per_username: u32,
    /// How long failures add up.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub failure_window: Duration,
    /// The first backoff; each next one of the same address or username lasts twice as long.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub backoff: Duration,
    /// The longest backoff.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub max_backoff: Duration,
}

impl Default for MqttLoginSection {
    fn default() -> Self {
        let defaults = doppel_auth::GuardConfig::default();
        Self {
            max_concurrent_checks: 0,
            max_failures_per_address: defaults.max_failures_per_address,
            max_failures_per_username: defaults.max_failures_per_username,
            failure_window: defaults.failure_window,
            backoff: defaults.backoff,
            max_backoff: defaults.max_backoff,
        }
    }
}

impl MqttLoginSection {
    /// Argon2 runs at once, with 0 resolved to the number of cores.
    pub fn concurrent_checks(&self) -> usize {
        match self.max_concurrent_checks {
            0 => doppel_auth::default_concurrent_hashes(),
            configured => configured,
        }
    }

    pub fn guard(&self) -> doppel_auth::GuardConfig {
        doppel_auth::GuardConfig {
            max_failures_per_address: self.max_failures_per_address,
            max_failures_per_username: self.max_failures_per_username,
            failure_window: self.failure_window,
            backoff: self.backoff,
            max_backoff: self.max_backoff,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.max_concurrent_checks > MAX_CONCURRENT_CHECKS {
            bail!(
                "mqtt.login.max_concurrent_checks must be 0 (one per core) to {MAX_CONCURRENT_CHECKS}, got {}",
                self.max_concurrent_checks
            );
        }
        if self.max_failures_per_address == 0 || self.max_failures_per_username == 0 {
            bail!(
                "mqtt.login.max_failures_per_address and mqtt.login.max_failures_per_username must be at least 1"
            );
        }
        if self.failure_window < Duration::from_secs(1) {
            bail!(
                "mqtt.login.failure_window must be at least 1s, got {}",
                humantime::format_duration(self.failure_window)
            );
        }
        if self.backoff < Duration::from_millis(100) || self.max_backoff < self.backoff {
            bail!(
                "mqtt.login.backoff must be at least 100ms and at most mqtt.login.max_backoff ({}), got {}",
                humantime::format_duration(self.max_backoff),
                humantime::format_duration(self.backoff)
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsSection {
    /// Address of the MQTT-over-TLS listener.
    pub addr: SocketAddr,
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA bundle that signs device certificates; when set, devices must present one and its
    /// common name is their device id.
    pub client_ca: Option<PathBuf>,
    /// The tenant of devices that authenticate with a certificate.
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

fn default_tenant() -> String {
    "default".into()
}

impl Default for MqttSection {
    fn default() -> Self {
        let defaults = doppel_mqtt::MqttConfig::default();
        Self {
            addr: defaults.listen,
            ws_addr: None,
            allow_anonymous: false,
            max_packet_bytes: defaults.max_packet_bytes,
            max_connections: defaults.max_connections,
            max_connections_per_principal: defaults.max_connections_per_principal,
            max_keepalive_secs: defaults.max_keepalive_secs,
            connect_timeout: defaults.connect_timeout,
            max_queued_messages: defaults.max_queued_messages,
            max_queued_bytes: defaults.max_queued_bytes,
            tls: None,
            acl: Vec::new(),
            login: MqttLoginSection::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Address the HTTP API listens on. Loopback by default: nothing is exposed until you ask.
    pub addr: SocketAddr,
    /// Most connections open at once; at it the listener stops accepting until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, e.g. "10s"; the connection is
    /// closed after it (slow or silent clients must not hold sockets).
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub header_timeout: Duration,
    /// Invalid bearer tokens from one address within a minute before it is answered 429 for a
    /// backoff (1 s, doubled up to 15 min).
    pub max_auth_failures_per_address: u32,
    /// Change streams (SSE and WebSocket) and waiting command long polls one token may hold
    /// open at once.
    pub max_streams_per_token: usize,
    /// Serve every request without asking for a token (development only; announced loudly).
    pub allow_anonymous: bool,
    /// Let `allow_anonymous` stand with an address other machines reach: without it, that pair
    /// is refused at start.
    pub allow_anonymous_on_network: bool,
    /// The secret of the first admin token, made when the store has no token yet (else a random
    /// one is made). A secret: set it by `DOPPEL_HTTP_BOOTSTRAP_TOKEN` or the file, never a flag.
    #[serde(serialize_with = "hidden", skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
    /// HTTPS instead of plain HTTP; off unless set. Reloaded from the same files on SIGHUP.
    pub tls: Option<HttpTlsSection>,
    /// JWTs of an identity provider, accepted beside API tokens; off unless set. The key set
    /// is read again from its file on SIGHUP.
    pub jwt: Option<HttpJwtSection>,
    /// Host names (or IP addresses) requests may name in `Host` besides `localhost`, the
    /// loopback addresses and `addr` (any IP literal when `addr` is 0.0.0.0 or ::); `*` for any.
    /// Other hosts get 421: a DNS-rebinding page names its own (see docs/SECURITY.md).
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example`) whose web pages may call the API (CORS) and open its
    /// WebSockets. None by default: no CORS headers are sent at all.
    pub cors_origins: Vec<String>,
}

/// The HTTP API's TLS material (see docs/SECURITY.md, "TLS").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsSection {
    /// PEM certificate chain of the server, its own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM CA bundle; when set, every client must present a certificate one of them signed
    /// (mutual TLS). This authenticates the connection only: it grants no rights of its own.
    pub client_ca: Option<PathBuf>,
}

impl HttpTlsSection {
    pub fn files(&self) -> doppel_http::tls::TlsFiles {
        doppel_http::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
        }
    }
}

/// Which identity provider's JWTs the HTTP API accepts, and how their claims map onto roles
/// and tenants (see docs/SECURITY.md, "JWTs").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpJwtSection {
    /// What a token's `iss` must be, exactly, such as `https://id.example.com/realms/ops`.
    pub issuer: String,
    /// What a token's `aud` must contain; when unset, `aud` is not checked, so any token of
    /// the issuer is accepted: set it when the issuer serves other applications too.
    pub audience: Option<String>,
    /// The issuer's public keys as a JWKS document (RS256 and ES256 keys are used).
    pub jwks_file: PathBuf,
    /// The claim holding the tenant id, or `*` for every tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim holding Doppel role names: app-read, app-write, operator, admin.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim naming the caller; writes record `jwt:{value}` as their author.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
}

fn default_tenant_claim() -> String {
    doppel_auth::jwt::DEFAULT_TENANT_CLAIM.to_owned()
}

fn default_roles_claim() -> String {
    doppel_auth::jwt::DEFAULT_ROLES_CLAIM.to_owned()
}

fn default_name_claim() -> String {
    doppel_auth::jwt::DEFAULT_NAME_CLAIM.to_owned()
}

impl HttpJwtSection {
    pub fn settings(&self) -> doppel_auth::JwtSettings {
        doppel_auth::JwtSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks_file: self.jwks_file.clone(),
            tenant_claim: self.tenant_claim.clone(),
            roles_claim: self.roles_claim.clone(),
            name_claim: self.name_claim.clone(),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.issuer.trim().is_empty() {
            bail!("http.jwt.issuer must not be empty");
        }
        if self
            .audience
            .as_ref()
            .is_some_and(|audience| audience.trim().is_empty())
        {
            bail!("http.jwt.audience must not be empty; leave it out to accept any audience");
        }
        for (key, claim) in [
            ("tenant_claim", &self.tenant_claim),
            ("roles_claim", &self.roles_claim),
            ("name_claim", &self.name_claim),
        ] {
            if claim.is_empty() {
                bail!("http.jwt.{key} must name a claim");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// How long history is kept, e.g. "30d".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub retention: Duration,
    /// Width of one history bucket, the unit retention drops, e.g. "1d".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub bucket: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Shards applying writes in parallel; 0 means one per CPU core.
    pub shards: usize,
    /// Largest group of requests one shard applies per commit.
    pub max_batch: usize,
    /// Requests queued per shard before callers wait.
    pub queue_depth: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter such as "info" or "doppel_engine=debug,info".
    pub level: String,
    /// Where to export trace spans over OTLP/HTTP (protobuf), e.g. `http://127.0.0.1:4318`;
    /// `/v1/traces` is appended unless the URL names a path. `None` exports nothing. Needs a
    /// binary built with `--features otlp`; spans the `level` filter drops are not exported.
    pub otlp_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./doppel-data"),
            http: HttpSection::default(),
            limits: Limits::default(),
            history: HistorySection::default(),
            engine: EngineSection::default(),
            log: LogSection::default(),
            mqtt: MqttSection::default(),
            commands: CommandsSection::default(),
            streams: StreamsSection::default(),
            query: QuerySection::default(),
            activity: ActivitySection::default(),
            replication: doppel_model::policy::ReplicationRules::default(),
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: doppel_http::server::DEFAULT_MAX_CONNECTIONS,
            header_timeout: doppel_http::server::DEFAULT_HEADER_TIMEOUT,
            max_auth_failures_per_address: doppel_http::auth::DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS,
            max_streams_per_token: doppel_http::auth::DEFAULT_MAX_STREAMS_PER_TOKEN,
            allow_anonymous: false,
            allow_anonymous_on_network: false,
            bootstrap_token: None,
            tls: None,
            jwt: None,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

impl HttpSection {
    /// What the listener bound to `bind` answers browsers: its allowed hosts and CORS origins.
    pub fn browser_policy(
        &self,
        bind: std::net::IpAddr,
    ) -> anyhow::Result<doppel_http::browser::BrowserPolicy> {
        let hosts = doppel_http::host::AllowedHosts::with(bind, &self.allowed_hosts)
            .map_err(|err| anyhow::anyhow!("http.allowed_hosts: {err}"))?;
        doppel_http::browser::BrowserPolicy::new(hosts, &self.cors_origins)
            .map_err(|err| anyhow::anyhow!("http.cors_origins: {err}"))
    }
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            retention: engine_defaults::DEFAULT_HISTORY_RETENTION,
            bucket: engine_defaults::DEFAULT_HISTORY_BUCKET,
        }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            shards: 0,
            max_batch: engine_defaults::DEFAULT_MAX_BATCH,
            queue_depth: engine_defaults::DEFAULT_QUEUE_DEPTH,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: DEFAULT_LOG_LEVEL.into(),
            otlp_endpoint: None,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A duration as the file writes it (`"30d"`, `"1h 30m"`), which [`duration`] reads back.
fn duration_text<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&duration_words(*value))
}

/// `30d`, `1h 30m`, `250ms`: in days at most, so that 45 days do not read as humantime's
/// `1month 14days 13h 26m 24s` (its months are 30.44 days).
fn duration_words(value: Duration) -> String {
    const UNITS: [(&str, u128); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let mut left = value.as_nanos();
    let mut words = Vec::new();
    for (unit, nanos) in UNITS {
        if left >= nanos {
            words.push(format!("{}{unit}", left / nanos));
            left %= nanos;
        }
    }
    if words.is_empty() {
        return "0s".to_owned();
    }
    words.join(" ")
}

/// `activity.device_types` as the file writes it, in device-type order.
fn durations_text<S: Serializer>(
    values: &std::collections::HashMap<String, Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<&str, String> = values
        .iter()
        .map(|(kind, value)| (kind.as_str(), duration_words(*value)))
        .collect();
    sorted.serialize(serializer)
}

/// Shown instead of a secret in the effective configuration (`doppel serve --check`).
pub const HIDDEN: &str = "<hidden>";

/// A secret: only whether it is set shows.
fn hidden<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(HIDDEN),
        None => serializer.serialize_none(),
    }
}

impl Config {
    /// Checks every value before anything starts, so a bad setting fails at once with its name.
    pub fn validate(&self) -> anyhow::Result<()> {
        let limits = &self.limits;
        if !(1..=MAX_CONFIGURABLE_DEPTH).contains(&limits.max_depth) {
            bail!(
                "limits.max_depth must be 1 to {MAX_CONFIGURABLE_DEPTH}, got {}",
                limits.max_depth
            );
        }
        if !(2..=MAX_CONFIGURABLE_DOCUMENT_BYTES).contains(&limits.max_document_bytes) {
            bail!(
                "limits.max_document_bytes must be 2 to {MAX_CONFIGURABLE_DOCUMENT_BYTES}, got {}",
                limits.max_document_bytes
            );
        }
        if self.history.bucket < MIN_HISTORY_BUCKET {
            bail!(
                "history.bucket must be at least 1s, got {}",
                humantime::format_duration(self.history.bucket)
            );
        }
        if self.history.retention < self.history.bucket {
            bail!(
                "history.retention ({}) must be at least history.bucket ({})",
                humantime::format_duration(self.history.retention),
                humantime::format_duration(self.history.bucket)
            );
        }
        if self.engine.shards > MAX_SHARDS {
            bail!(
                "engine.shards must be 0 (one per core) to {MAX_SHARDS}, got {}",
                self.engine.shards
            );
        }
        if self.engine.max_batch == 0 || self.engine.queue_depth == 0 {
            bail!("engine.max_batch and engine.queue_depth must be at least 1");
        }
        if self.http.allow_anonymous
            && !self.http.addr.ip().is_loopback()
            && !self.http.allow_anonymous_on_network
        {
            bail!(
                "http.allow_anonymous with http.addr {} lets anyone on the network read and change every tenant; bind to loopback, or set http.allow_anonymous_on_network = true to force it",
                self.http.addr
            );
        }
        if let Some(jwt) = &self.http.jwt {
            if self.http.allow_anonymous {
                bail!(
                    "http.jwt is set, but http.allow_anonymous asks nobody for a token; turn one of them off"
                );
            }
            jwt.validate()?;
        }
        if self.http.max_connections == 0
            || self.mqtt.max_connections == 0
            || self.mqtt.max_connections_per_principal == 0
        {
            bail!(
                "http.max_connections, mqtt.max_connections and mqtt.max_connections_per_principal must be at least 1"
            );
        }
        if self.http.max_auth_failures_per_address == 0 || self.http.max_streams_per_token == 0 {
            bail!(
                "http.max_auth_failures_per_address and http.max_streams_per_token must be at least 1"
            );
        }
        if self.http.header_timeout.is_zero() || self.mqtt.connect_timeout.is_zero() {
            bail!("http.header_timeout and mqtt.connect_timeout must be longer than 0s");
        }
        self.http.browser_policy(self.http.addr.ip())?;
        if self.mqtt.max_queued_messages == 0
            || self.mqtt.max_queued_bytes < self.mqtt.max_packet_bytes as usize
        {
            bail!(
                "mqtt.max_queued_messages must be at least 1 and mqtt.max_queued_bytes at least mqtt.max_packet_bytes ({})",
                self.mqtt.max_packet_bytes
            );
        }
        if self.log.level.trim().is_empty() {
            bail!("log.level must not be empty");
        }
        if let Some(endpoint) = &self.log.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                bail!(
                    "log.otlp_endpoint is set, but this binary was built without `--features otlp`"
                );
            }
            if !endpoint.starts_with("http://") {
                bail!("log.otlp_endpoint must be an http:// URL, got {endpoint:?}");
            }
        }
        if self.mqtt.max_packet_bytes < MIN_MQTT_PACKET_BYTES {
            bail!(
                "mqtt.max_packet_bytes must be at least {MIN_MQTT_PACKET_BYTES}, got {}",
                self.mqtt.max_packet_bytes
            );
        }
        for (index, rule) in self.mqtt.acl.iter().enumerate() {
            rule.validate()
                .map_err(|reason| anyhow::anyhow!("mqtt.acl[{index}]: {reason}"))?;
        }
        if let Some(tls) = &self.mqtt.tls {
            doppel_model::TenantId::new(tls.tenant.as_str())
                .map_err(|err| anyhow::anyhow!("mqtt.tls.tenant: {err}"))?;
        }
        self.mqtt.login.validate()?;
        self.query.indexed_paths()?;
        let too_short = |interval: &Duration| *interval < Duration::from_secs(1);
        if too_short(&self.activity.default) || self.activity.device_types.values().any(too_short) {
            bail!("activity intervals must be at least 1s");
        }
        if self.streams.retention == 0 || self.streams.subscriber_buffer == 0 {
            bail!("streams.retention and streams.subscriber_buffer must be at least 1");
        }
        if self.streams.retention_bytes < MIN_STREAM_RETENTION_BYTES {
            bail!(
                "streams.retention_bytes must be at least {MIN_STREAM_RETENTION_BYTES}, got {}",
                self.streams.retention_bytes
            );
        }
        if self.streams.idle_release < Duration::from_secs(1) {
            bail!(
                "streams.idle_release must be at least 1s, got {}",
                humantime::format_duration(self.streams.idle_release)
            );
        }
        self.commands.validate()
    }

    pub fn mqtt_config(&self) -> doppel_mqtt::MqttConfig {
        let mqtt = &self.mqtt;
        doppel_mqtt::MqttConfig {
            listen: mqtt.addr,
            tls: mqtt.tls.as_ref().map(|tls| doppel_mqtt::TlsConfig {
                listen: tls.addr,
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                client_ca: tls.client_ca.clone(),
            }),
            websocket: mqtt.ws_addr,
            allow_anonymous: mqtt.allow_anonymous,
            certificate_tenant: mqtt
                .tls
                .as_ref()
                .map_or_else(default_tenant, |tls| tls.tenant.clone()),
            acl: mqtt.acl.clone(),
            max_packet_bytes: mqtt.max_packet_bytes,
            max_connections: mqtt.max_connections,
            max_connections_per_principal: mqtt.max_connections_per_principal,
            max_sockets: mqtt
                .max_connections
                .saturating_add(doppel_mqtt::HANDSHAKE_SOCKETS),
            max_keepalive_secs: mqtt.max_keepalive_secs,
            connect_timeout: mqtt.connect_timeout,
            max_queued_messages: mqtt.max_queued_messages,
            max_queued_bytes: mqtt.max_queued_bytes,
            login: mqtt.login.guard(),
        }
    }

    pub fn engine_config(&self) -> doppel_engine::EngineConfig {
        let defaults = doppel_engine::EngineConfig::default();
        doppel_engine::EngineConfig {
            shards: if self.engine.shards == 0 {
                defaults.shards
            } else {
                self.engine.shards
            },
            max_batch: self.engine.max_batch,
            queue_depth: self.engine.queue_depth,
            limits: self.limits,
            history_retention: self.history.retention,
            // Look for expired buckets often enough that history is dropped within a tenth of a
            // bucket of expiring, and at least once a minute.
            retention_check_interval: (self.history.bucket / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(60)),
            commands: self.commands.limits(),
            streams: self.streams.limits(),
            // Checked by `validate`, which runs before the engine is configured.
            indexed_paths: self.query.indexed_paths().unwrap_or_default(),
            activity: doppel_engine::silence::ActivityIntervals {
                default: self.activity.default,
                by_device_type: self.activity.device_types.clone(),
            },
            replica: std::sync::Arc::new(self.replication.replica(
                doppel_model::policy::HUB_REPLICA.to_owned(),
                doppel_model::policy::Role::Cloud,
            )),
            ..defaults
        }
    }

    /// The configuration as a TOML file that `--config` reads back, with each secret shown as
    /// [`HIDDEN`] instead: what `doppel serve --check` prints.
    pub fn effective(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot write the configuration as TOML")
    }

    pub fn history_buckets(&self) -> doppel_store::HistoryBuckets {
        doppel_store::HistoryBuckets::new(
            i64::try_from(self.history.bucket.as_millis()).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_overridden_by_flags_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doppel.toml");
        std::fs::write(&path, "data_dir = \"/tmp/x\"\n[http]\naddr = \"127.0.0.1:9000\"\n[history]\nretention = \"7d\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            http_addr: Some("127.0.0.1:9001".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.http.addr.port(), 9001);
        assert_eq!(config.history.retention, Duration::from_secs(7 * 86400));

        std::fs::write(&path, "[http]\nadress = \"x\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `adress`"), "{err}");
    }

    #[test]
    fn the_effective_configuration_reads_back_as_itself_with_secrets_hidden() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("doppel.toml");
        let secret = "dpt_a-bootstrap-secret-nobody-may-see-in-a-check-0123456789";
        std::fs::write(
            &path,
            format!(
                r#"data_dir = "/var/lib/doppel"
[http]
bootstrap_token = "{secret}"
allowed_hosts = ["doppel.lan"]
[http.tls]
cert = "/etc/doppel/cert.pem"
key = "/etc/doppel/key.pem"
[http.jwt]
issuer = "https://id.example"
jwks_file = "/etc/doppel/jwks.json"
[[mqtt.acl]]
permission = "deny"
clients = "devices"
topic = "telemetry/#"
[mqtt.tls]
addr = "127.0.0.1:8883"
cert = "/etc/doppel/cert.pem"
key = "/etc/doppel/key.pem"
[activity.device_types]
pump = "10m"
[replication.device_types.pump]
policy = "TIMESTAMP_WINS"
crdts = {{ cycles = "g_counter" }}
[history]
retention = "90m"
bucket = "30m"
"#
            ),
        )
        .expect("the configuration file is written");
        let config = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("the configuration resolves");
        let text = config.effective().expect("the configuration prints");
        assert!(
            text.contains("\nbootstrap_token = \"<hidden>\"\n"),
            "{text}"
        );
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("\nretention = \"1h 30m\"\n"), "{text}");
        // Every key comes back from what was printed, unchanged: nothing is lost or renamed.
        let again: Config = toml::from_str(&text).expect("the printed configuration parses");
        assert_eq!(again.effective().expect("the configuration prints"), text);
        assert_eq!(again.history.retention, Duration::from_secs(90 * 60));
        assert_eq!(again.mqtt.acl, config.mqtt.acl);
        assert_eq!(again.replication, config.replication);
        assert!(
            !Config::default()
                .effective()
                .expect("the configuration prints")
                .contains("bootstrap_token"),
            "an unset secret is left out"
        );
    }

    #[test]
    fn durations_are_written_in_days_at_most_and_read_back() {
        for (value, words) in [
            (Duration::from_secs(45 * 86_400), "45d"),
            (Duration::from_secs(90 * 60), "1h 30m"),
            (Duration::from_millis(1_250), "1s 250ms"),
            (Duration::from_nanos(1_500), "1us 500ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(duration_words(value), words);
            assert_eq!(humantime::parse_duration(words).ok(), Some(value));
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let args = ServeArgs {
            history_retention: Some(Duration::from_secs(60)),
            ..ServeArgs::default()
        };
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .starts_with("history.retention")
        );
        let args = ServeArgs {
            limits_max_depth: Some(0),
            ..ServeArgs::default()
        };
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .starts_with("limits.max_depth")
        );
        let args = ServeArgs {
            mqtt_login_backoff: Some(Duration::from_secs(3600)),
            ..ServeArgs::default()
        };
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .starts_with("mqtt.login.backoff")
        );
    }

    #[test]
    fn http_tls_comes_from_the_file_and_flags_with_cert_and_key_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doppel.toml");
        std::fs::write(
            &path,
            "[http.tls]\ncert = \"/etc/doppel/cert.pem\"\nkey = \"/etc/doppel/key.pem\"\n",
        )
        .unwrap();
        let config = ServeArgs {
            config: Some(path),
            http_tls_client_ca: Some(PathBuf::from("/etc/doppel/operators.pem")),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let files = config.http.tls.expect("http.tls").files();
        assert_eq!(files.cert, PathBuf::from("/etc/doppel/cert.pem"));
        assert_eq!(
            files.client_ca,
            Some(PathBuf::from("/etc/doppel/operators.pem"))
        );
        assert!(ServeArgs::default().resolve().unwrap().http.tls.is_none());
        let err = ServeArgs {
            http_tls_cert: Some(PathBuf::from("cert.pem")),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.to_string(), "http.tls needs cert and key together");
    }

    #[test]
    fn http_jwt_comes_from_the_file_and_flags_with_issuer_and_key_set_together() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("doppel.toml");
        std::fs::write(
            &path,
            "[http.jwt]\nissuer = \"https://id.example.com/\"\njwks_file = \"/etc/doppel/jwks.json\"\nroles_claim = \"doppel_roles\"\n",
        )
        .expect("the config file is written");
        let config = ServeArgs {
            config: Some(path.clone()),
            http_jwt_audience: Some("doppel".into()),
            http_jwt_name_claim: Some("email".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .expect("the settings resolve");
        let settings = config.http.jwt.expect("http.jwt").settings();
        assert_eq!(settings.issuer, "https://id.example.com/");
        assert_eq!(settings.audience.as_deref(), Some("doppel"));
        assert_eq!(settings.jwks_file, PathBuf::from("/etc/doppel/jwks.json"));
        assert_eq!(settings.roles_claim, "doppel_roles", "the file's key stays");
        assert_eq!(settings.name_claim, "email", "the flag wins");
        assert_eq!(settings.tenant_claim, "tenant", "the default");
        assert!(
            ServeArgs::default()
                .resolve()
                .expect("the settings resolve")
                .http
                .jwt
                .is_none()
        );
        let err = ServeArgs {
            http_jwt_issuer: Some("https://id.example.com/".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http.jwt needs issuer and jwks_file together"
        );
        let err = ServeArgs {
            config: Some(path),
            http_jwt_tenant_claim: Some(String::new()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.to_string(), "http.jwt.tenant_claim must name a claim");
        let err = ServeArgs {
            http_jwt_issuer: Some("https://id.example.com/".into()),
            http_jwt_jwks_file: Some(PathBuf::from("jwks.json")),
            http_allow_anonymous: Some(true),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().starts_with("http.jwt is set, but"), "{err}");
    }

    #[test]
    fn login_limits_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doppel.toml");
        std::fs::write(
            &path,
            "[mqtt.login]\nmax_failures_per_username = 3\nmax_backoff = \"1h\"\n",
        )
        .unwrap();
        let config = ServeArgs {
            config: Some(path),
            mqtt_login_max_concurrent_checks: Some(1),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let login = &config.mqtt.login;
        assert_eq!(login.concurrent_checks(), 1);
        let guard = config.mqtt_config().login;
        assert_eq!(guard.max_failures_per_username, 3);
        assert_eq!(guard.max_backoff, Duration::from_secs(3600));
        assert_eq!(
            guard.max_failures_per_address,
            doppel_auth::GuardConfig::default().max_failures_per_address
        );
        assert!(
            ServeArgs::default()
                .resolve()
                .unwrap()
                .mqtt
                .login
                .concurrent_checks()
                >= 1
        );
    }
}
