//! The flags of `doppel serve` and how they, with their environment variables, override the
//! configuration file.

use super::{
    Config, HttpJwtSection, HttpSection, HttpTlsSection, LogFormat, MqttSection, MqttTlsSection,
    default_name_claim, default_roles_claim, default_tenant, default_tenant_claim,
};
use anyhow::{Context, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

/// Declares every key that has a flag, once: `field: Type = how path, "ENV", "help"`, with
/// `parser`, `delimiter` and `unset` (what `--help` says when the default is "not set") where
/// needed. From each line come the `ServeArgs` field and its flag, the environment variable,
/// the `--help` line with the real default (read from `Config::default()` at the key's path,
/// so it cannot drift), and the override of the file's value. `how` says how a given value
/// lands: `set` replaces the key, `some` sets an optional key, `extend` adds to a table, and
/// `section` leaves it to the code below that merges `http.tls`, `http.jwt` and `mqtt.tls` key
/// by key, since those sections exist only when their required keys come together.
///
/// A macro rather than merging `toml::Value` layers: the flags keep their typed parsers (a bad
/// value is refused by clap, naming the flag), and the serde structs keep their why-comments;
/// what is generated is only what was spelled twice.
macro_rules! serve_keys {
    (
        $(#[$outer:meta])*
        pub struct $name:ident { $($fixed:tt)* }
        keys {
            $(
                $field:ident: $ty:ty = $how:ident $($seg:ident).+, $env:literal, $doc:literal
                $(, parser = $parser:expr)?
                $(, delimiter = $delimiter:literal)?
                $(, unset = $unset:expr)?;
            )*
        }
    ) => {
        $(#[$outer])*
        pub struct $name {
            $($fixed)*
            $(
                #[arg(
                    long,
                    env = $env,
                    help = help(&[$(stringify!($seg)),+], $doc, None::<String>$(.or(Some($unset.to_string())))?),
                    $(value_parser = $parser,)?
                    $(value_delimiter = $delimiter,)?
                )]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// Every flag or variable given replaces its key in `config`, except the sections'
            /// keys (see [`ServeArgs::apply_http_tls`] and its siblings).
            fn apply_keys(&self, config: &mut Config) {
                $(serve_keys!(@apply config, self.$field, $how $($seg).+);)*
            }

            /// Whether a flag or variable of the section at `section` (`["http", "tls"]`, ...)
            /// was given, so that the section's merge has anything to do.
            fn section_given(&self, section: &[&str]) -> bool {
                false $(|| serve_keys!(@given self.$field, $how, section, [$(stringify!($seg)),+]))*
            }
        }

        /// The declared keys, for the tests that hold `--help` to the defaults.
        #[cfg(test)]
        const KEYS: &[Key] = &[
            $(Key { field: stringify!($field), path: &[$(stringify!($seg)),+], env: $env },)*
        ];
    };
    (@apply $config:ident, $value:expr, set $($seg:ident).+) => {
        if let Some(value) = &$value {
            $config.$($seg).+.clone_from(value);
        }
    };
    (@apply $config:ident, $value:expr, some $($seg:ident).+) => {
        if let Some(value) = &$value {
            $config.$($seg).+ = Some(value.clone());
        }
    };
    (@apply $config:ident, $value:expr, extend $($seg:ident).+) => {
        if let Some(value) = &$value {
            $config.$($seg).+.extend(value.iter().cloned());
        }
    };
    (@apply $config:ident, $value:expr, section $($seg:ident).+) => {};
    (@given $value:expr, section, $section:ident, $path:expr) => {
        $value.is_some() && $path[..].starts_with($section)
    };
    (@given $value:expr, $how:ident, $section:ident, $path:expr) => {
        false
    };
}

/// One declared key: its `ServeArgs` field, its path in the file and its variable.
#[cfg(test)]
struct Key {
    field: &'static str,
    path: &'static [&'static str],
    env: &'static str,
}

serve_keys! {
    /// The flags of `doppel serve`; each also reads its environment variable.
    #[derive(Args, Debug, Default)]
    pub struct ServeArgs {
        /// Check the configuration, print it with secrets hidden, and exit: no port is bound and
        /// the data folder is not opened.
        // No environment variable, unlike the settings: one left set would keep the hub from ever
        // starting.
        #[arg(long)]
        pub check: bool,
        /// TOML configuration file; environment variables and flags override it.
        #[arg(long, short = 'c', env = "DOPPEL_CONFIG")]
        pub config: Option<PathBuf>,
        /// http.bootstrap_token: the first admin token's secret (environment only: a secret)
        #[arg(skip = std::env::var("DOPPEL_HTTP_BOOTSTRAP_TOKEN").ok())]
        pub http_bootstrap_token: Option<String>,
    }
    keys {
        data_dir: PathBuf = set data_dir, "DOPPEL_DATA_DIR", "folder of the embedded store";
        http_addr: SocketAddr = set http.addr, "DOPPEL_HTTP_ADDR", "HTTP listen address";
        http_max_connections: usize = set http.max_connections, "DOPPEL_HTTP_MAX_CONNECTIONS",
            "most HTTP connections open at once";
        http_header_timeout: Duration = set http.header_timeout, "DOPPEL_HTTP_HEADER_TIMEOUT",
            "how long a client may take to send a request's headers",
            parser = humantime::parse_duration;
        http_max_auth_failures_per_address: u32 = set http.max_auth_failures_per_address,
            "DOPPEL_HTTP_MAX_AUTH_FAILURES_PER_ADDRESS",
            "invalid tokens from one address per minute before 429";
        http_max_streams_per_token: usize = set http.max_streams_per_token,
            "DOPPEL_HTTP_MAX_STREAMS_PER_TOKEN",
            "change streams and long polls one token may hold open";
        http_allow_anonymous: bool = set http.allow_anonymous, "DOPPEL_HTTP_ALLOW_ANONYMOUS",
            "serve HTTP requests without tokens (development only)";
        http_allow_anonymous_on_network: bool = set http.allow_anonymous_on_network,
            "DOPPEL_HTTP_ALLOW_ANONYMOUS_ON_NETWORK",
            "allow anonymous HTTP on a non-loopback address";
        http_tls_cert: PathBuf = section http.tls.cert, "DOPPEL_HTTP_TLS_CERT",
            "PEM certificate chain for HTTPS; needs http.tls.key", unset = "off, plain HTTP";
        http_tls_key: PathBuf = section http.tls.key, "DOPPEL_HTTP_TLS_KEY",
            "PEM private key for HTTPS; needs http.tls.cert";
        http_tls_client_ca: PathBuf = section http.tls.client_ca, "DOPPEL_HTTP_TLS_CLIENT_CA",
            "PEM CA bundle; HTTPS clients must present a certificate it signed", unset = "none";
        http_jwt_issuer: String = section http.jwt.issuer, "DOPPEL_HTTP_JWT_ISSUER",
            "accept JWTs whose iss is this; needs http.jwt.jwks_file",
            unset = "off, API tokens only";
        http_jwt_audience: String = section http.jwt.audience, "DOPPEL_HTTP_JWT_AUDIENCE",
            "what a JWT's aud must contain", unset = "aud not checked";
        http_jwt_jwks_file: PathBuf = section http.jwt.jwks_file, "DOPPEL_HTTP_JWT_JWKS_FILE",
            "the issuer's public keys (JWKS), read again on SIGHUP; needs http.jwt.issuer";
        http_jwt_tenant_claim: String = section http.jwt.tenant_claim,
            "DOPPEL_HTTP_JWT_TENANT_CLAIM",
            "the JWT claim holding the tenant id, or * for every tenant",
            unset = default_tenant_claim();
        http_jwt_roles_claim: String = section http.jwt.roles_claim, "DOPPEL_HTTP_JWT_ROLES_CLAIM",
            "the JWT claim holding Doppel role names", unset = default_roles_claim();
        http_jwt_name_claim: String = section http.jwt.name_claim, "DOPPEL_HTTP_JWT_NAME_CLAIM",
            "the JWT claim writes record as jwt:{value}", unset = default_name_claim();
        http_allowed_hosts: Vec<String> = set http.allowed_hosts, "DOPPEL_HTTP_ALLOWED_HOSTS",
            "Host names answered besides localhost, loopback and the bind address, comma-separated; * for any",
            delimiter = ',';
        http_cors_origins: Vec<String> = set http.cors_origins, "DOPPEL_HTTP_CORS_ORIGINS",
            "origins whose web pages may call the API, comma-separated", delimiter = ',';
        limits_max_document_bytes: usize = set limits.max_document_bytes,
            "DOPPEL_LIMITS_MAX_DOCUMENT_BYTES", "largest request body and state section";
        limits_max_depth: usize = set limits.max_depth, "DOPPEL_LIMITS_MAX_DEPTH",
            "deepest nesting of a state";
        limits_max_named_shadows: usize = set limits.max_named_shadows,
            "DOPPEL_LIMITS_MAX_NAMED_SHADOWS",
            "most named shadows one device may have, 0 for no limit";
        limits_max_twins_per_tenant: usize = set limits.max_twins_per_tenant,
            "DOPPEL_LIMITS_MAX_TWINS_PER_TENANT", "most twins one tenant may have, 0 for no limit";
        history_retention: Duration = set history.retention, "DOPPEL_HISTORY_RETENTION",
            "how long history is kept", parser = humantime::parse_duration;
        history_bucket: Duration = set history.bucket, "DOPPEL_HISTORY_BUCKET",
            "width of a history bucket, the unit retention drops",
            parser = humantime::parse_duration;
        engine_shards: usize = set engine.shards, "DOPPEL_ENGINE_SHARDS",
            "write shards, 0 for one per core";
        engine_max_batch: usize = set engine.max_batch, "DOPPEL_ENGINE_MAX_BATCH",
            "largest group a shard commits at once";
        engine_queue_depth: usize = set engine.queue_depth, "DOPPEL_ENGINE_QUEUE_DEPTH",
            "requests queued per shard before callers wait";
        log_format: LogFormat = set log.format, "DOPPEL_LOG_FORMAT", "text or json";
        log_level: String = set log.level, "DOPPEL_LOG_LEVEL",
            "a tracing filter such as info or doppel_engine=debug";
        log_otlp_endpoint: String = some log.otlp_endpoint, "DOPPEL_LOG_OTLP_ENDPOINT",
            "OTLP/HTTP collector to export trace spans to, e.g. http://127.0.0.1:4318 (needs --features otlp)",
            unset = "none";
        commands_max_ttl: Duration = set commands.max_ttl, "DOPPEL_COMMANDS_MAX_TTL",
            "longest time to live a command may ask for", parser = humantime::parse_duration;
        commands_default_ttl: Duration = set commands.default_ttl, "DOPPEL_COMMANDS_DEFAULT_TTL",
            "time to live of a command that names none", parser = humantime::parse_duration;
        commands_max_payload_bytes: usize = set commands.max_payload_bytes,
            "DOPPEL_COMMANDS_MAX_PAYLOAD_BYTES",
            "largest command payload or acknowledgement response";
        commands_ack_timeout: Duration = set commands.ack_timeout, "DOPPEL_COMMANDS_ACK_TIMEOUT",
            "how long a delivered command waits for its acknowledgement",
            parser = humantime::parse_duration;
        commands_max_attempts: u32 = set commands.max_attempts, "DOPPEL_COMMANDS_MAX_ATTEMPTS",
            "deliveries of one command before it is FAILED";
        commands_max_reconnect_deliveries: u32 = set commands.max_reconnect_deliveries,
            "DOPPEL_COMMANDS_MAX_RECONNECT_DELIVERIES",
            "repeats of a delivery because the device reconnected, which use no attempt";
        commands_max_open: usize = set commands.max_open, "DOPPEL_COMMANDS_MAX_OPEN",
            "open commands one device may have";
        streams_retention: usize = set streams.retention, "DOPPEL_STREAMS_RETENTION",
            "events kept per tenant for resuming a change stream";
        streams_retention_bytes: usize = set streams.retention_bytes,
            "DOPPEL_STREAMS_RETENTION_BYTES",
            "bytes of events kept per tenant for resuming a change stream";
        streams_idle_release: Duration = set streams.idle_release, "DOPPEL_STREAMS_IDLE_RELEASE",
            "how long a tenant's change stream is kept with no client attached",
            parser = humantime::parse_duration;
        streams_subscriber_buffer: usize = set streams.subscriber_buffer,
            "DOPPEL_STREAMS_SUBSCRIBER_BUFFER", "events a change-stream client may fall behind";
        query_index: Vec<String> = set query.index, "DOPPEL_QUERY_INDEX",
            "reported/desired paths fleet queries find by index, comma-separated", delimiter = ',';
        activity_default: Duration = set activity.default, "DOPPEL_ACTIVITY_DEFAULT",
            "how long a connected device may stay silent before it is UNKNOWN",
            parser = humantime::parse_duration;
        activity_device_types: Vec<(String, Duration)> = extend activity.device_types,
            "DOPPEL_ACTIVITY_DEVICE_TYPES", "the same per device type, e.g. pump=10m,fan=1h",
            parser = device_type_intervals, delimiter = ',';
        mqtt_addr: SocketAddr = set mqtt.addr, "DOPPEL_MQTT_ADDR", "MQTT listen address";
        mqtt_ws_addr: SocketAddr = some mqtt.ws_addr, "DOPPEL_MQTT_WS_ADDR",
            "MQTT-over-WebSocket listen address", unset = "off";
        mqtt_allow_anonymous: bool = set mqtt.allow_anonymous, "DOPPEL_MQTT_ALLOW_ANONYMOUS",
            "let MQTT clients connect without credentials";
        mqtt_max_packet_bytes: u32 = set mqtt.max_packet_bytes, "DOPPEL_MQTT_MAX_PACKET_BYTES",
            "largest MQTT packet";
        mqtt_max_connections: usize = set mqtt.max_connections, "DOPPEL_MQTT_MAX_CONNECTIONS",
            "most live MQTT connections over every listener";
        mqtt_max_connections_per_principal: usize = set mqtt.max_connections_per_principal,
            "DOPPEL_MQTT_MAX_CONNECTIONS_PER_PRINCIPAL",
            "most sessions one credential or token holds live connections under";
        mqtt_connect_timeout: Duration = set mqtt.connect_timeout, "DOPPEL_MQTT_CONNECT_TIMEOUT",
            "how long a new connection may take to send CONNECT",
            parser = humantime::parse_duration;
        mqtt_max_queued_messages: usize = set mqtt.max_queued_messages,
            "DOPPEL_MQTT_MAX_QUEUED_MESSAGES", "most messages waiting for one client";
        mqtt_max_queued_bytes: usize = set mqtt.max_queued_bytes, "DOPPEL_MQTT_MAX_QUEUED_BYTES",
            "most bytes waiting for one client";
        mqtt_tls_addr: SocketAddr = section mqtt.tls.addr, "DOPPEL_MQTT_TLS_ADDR",
            "MQTT-over-TLS listen address; needs mqtt.tls.cert and mqtt.tls.key", unset = "off";
        mqtt_tls_cert: PathBuf = section mqtt.tls.cert, "DOPPEL_MQTT_TLS_CERT",
            "PEM certificate chain of the TLS listener";
        mqtt_tls_key: PathBuf = section mqtt.tls.key, "DOPPEL_MQTT_TLS_KEY",
            "PEM private key of the TLS listener";
        mqtt_tls_client_ca: PathBuf = section mqtt.tls.client_ca, "DOPPEL_MQTT_TLS_CLIENT_CA",
            "PEM CA bundle of device certificates (turns on certificate login)", unset = "off";
        mqtt_tls_tenant: String = section mqtt.tls.tenant, "DOPPEL_MQTT_TLS_TENANT",
            "the tenant of devices that log in with a client certificate",
            unset = default_tenant();
        mqtt_max_keepalive_secs: u16 = set mqtt.max_keepalive_secs,
            "DOPPEL_MQTT_MAX_KEEPALIVE_SECS",
            "longest keep-alive a client may ask for, in seconds";
        mqtt_login_max_concurrent_checks: usize = set mqtt.login.max_concurrent_checks,
            "DOPPEL_MQTT_LOGIN_MAX_CONCURRENT_CHECKS", "Argon2 runs at once, 0 for one per core";
        mqtt_login_max_failures_per_address: u32 = set mqtt.login.max_failures_per_address,
            "DOPPEL_MQTT_LOGIN_MAX_FAILURES_PER_ADDRESS",
            "failed password checks from one address before its backoff";
        mqtt_login_max_failures_per_username: u32 = set mqtt.login.max_failures_per_username,
            "DOPPEL_MQTT_LOGIN_MAX_FAILURES_PER_USERNAME",
            "failed password checks for one username before its backoff";
        mqtt_login_failure_window: Duration = set mqtt.login.failure_window,
            "DOPPEL_MQTT_LOGIN_FAILURE_WINDOW", "how long failed password checks add up",
            parser = humantime::parse_duration;
        mqtt_login_backoff: Duration = set mqtt.login.backoff, "DOPPEL_MQTT_LOGIN_BACKOFF",
            "first backoff of an address or username, doubled each time",
            parser = humantime::parse_duration;
        mqtt_login_max_backoff: Duration = set mqtt.login.max_backoff,
            "DOPPEL_MQTT_LOGIN_MAX_BACKOFF", "longest backoff", parser = humantime::parse_duration;
    }
}

/// The built-in defaults as the file spells them (durations as `10s`, formats as `text`), read
/// once per process for `--help`; `None` only if they could not be written as TOML, which a
/// test rules out.
static DEFAULTS: LazyLock<Option<toml::Value>> =
    LazyLock::new(|| toml::Value::try_from(Config::default()).ok());

/// The help line of the key at `path`: `path: doc [default: value]`. The value is the real
/// default at that path, or `unset` where the key has none there (an optional key, or one in a
/// section that is off by default).
fn help(path: &[&str], doc: &str, unset: Option<String>) -> String {
    let key = path.join(".");
    match default_at(path).or(unset) {
        Some(default) => format!("{key}: {doc} [default: {default}]"),
        None => format!("{key}: {doc}"),
    }
}

/// The default at `path` as `--help` shows it, if `Config::default()` has one there.
fn default_at(path: &[&str]) -> Option<String> {
    let mut value = DEFAULTS.as_ref()?;
    for segment in path {
        value = value.get(segment)?;
    }
    Some(shown(value))
}

/// A TOML value as one would type it after the flag: lists comma-separated, empty ones `none`.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) if items.is_empty() => "none".to_owned(),
        toml::Value::Table(table) if table.is_empty() => "none".to_owned(),
        toml::Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Parses `pump=10m,fan=1h` (the environment and flag form of `activity.device_types`).
fn device_type_intervals(text: &str) -> Result<(String, Duration), String> {
    let (kind, duration) = text
        .split_once('=')
        .ok_or_else(|| format!("expected TYPE=DURATION, got {text:?}"))?;
    let duration = humantime::parse_duration(duration.trim()).map_err(|err| err.to_string())?;
    Ok((kind.trim().to_owned(), duration))
}

impl ServeArgs {
    /// The effective configuration, validated.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => read_file(path)?,
            None => Config::default(),
        };
        self.apply_keys(&mut config);
        if let Some(v) = &self.http_bootstrap_token {
            config.http.bootstrap_token = Some(v.clone());
        }
        self.apply_http_tls(&mut config.http)?;
        self.apply_http_jwt(&mut config.http)?;
        self.apply_mqtt_tls(&mut config.mqtt)?;
        config.validate()?;
        Ok(config)
    }
    /// Flags and variables override the file's `http.tls` key by key; cert and key must end up
    /// together.
    fn apply_http_tls(&self, http: &mut HttpSection) -> anyhow::Result<()> {
        if !self.section_given(&["http", "tls"]) {
            return Ok(());
        }
        let file = http.tls.take();
        let file = file.as_ref();
        let cert = flag_or(&self.http_tls_cert, file.map(|t| &t.cert));
        let key = flag_or(&self.http_tls_key, file.map(|t| &t.key));
        let (Some(cert), Some(key)) = (cert, key) else {
            bail!("http.tls needs cert and key together");
        };
        let client_ca = flag_or(
            &self.http_tls_client_ca,
            file.and_then(|t| t.client_ca.as_ref()),
        );
        http.tls = Some(HttpTlsSection {
            cert,
            key,
            client_ca,
        });
        Ok(())
    }

    /// Flags and variables override the file's `http.jwt` key by key; issuer and key set must
    /// end up together.
    fn apply_http_jwt(&self, http: &mut HttpSection) -> anyhow::Result<()> {
        if !self.section_given(&["http", "jwt"]) {
            return Ok(());
        }
        let file = http.jwt.take();
        let file = file.as_ref();
        let issuer = flag_or(&self.http_jwt_issuer, file.map(|j| &j.issuer));
        let jwks_file = flag_or(&self.http_jwt_jwks_file, file.map(|j| &j.jwks_file));
        let (Some(issuer), Some(jwks_file)) = (issuer, jwks_file) else {
            bail!("http.jwt needs issuer and jwks_file together");
        };
        let claim = |flag: &Option<String>, from_file: Option<&String>, default: fn() -> String| {
            flag_or(flag, from_file).unwrap_or_else(default)
        };
        http.jwt = Some(HttpJwtSection {
            issuer,
            audience: flag_or(
                &self.http_jwt_audience,
                file.and_then(|j| j.audience.as_ref()),
            ),
            jwks_file,
            tenant_claim: claim(
                &self.http_jwt_tenant_claim,
                file.map(|j| &j.tenant_claim),
                default_tenant_claim,
            ),
            roles_claim: claim(
                &self.http_jwt_roles_claim,
                file.map(|j| &j.roles_claim),
                default_roles_claim,
            ),
            name_claim: claim(
                &self.http_jwt_name_claim,
                file.map(|j| &j.name_claim),
                default_name_claim,
            ),
        });
        Ok(())
    }

    /// Flags and variables override the file's `mqtt.tls` key by key; addr, cert and key must
    /// end up together.
    fn apply_mqtt_tls(&self, mqtt: &mut MqttSection) -> anyhow::Result<()> {
        if !self.section_given(&["mqtt", "tls"]) {
            return Ok(());
        }
        let file = mqtt.tls.take();
        let file = file.as_ref();
        let addr = flag_or(&self.mqtt_tls_addr, file.map(|t| &t.addr));
        let cert = flag_or(&self.mqtt_tls_cert, file.map(|t| &t.cert));
        let key = flag_or(&self.mqtt_tls_key, file.map(|t| &t.key));
        let (Some(addr), Some(cert), Some(key)) = (addr, cert, key) else {
            bail!("mqtt.tls needs addr, cert and key together");
        };
        mqtt.tls = Some(MqttTlsSection {
            addr,
            cert,
            key,
            client_ca: flag_or(
                &self.mqtt_tls_client_ca,
                file.and_then(|t| t.client_ca.as_ref()),
            ),
            tenant: flag_or(&self.mqtt_tls_tenant, file.map(|t| &t.tenant))
                .unwrap_or_else(default_tenant),
        });
        Ok(())
    }
}

/// A key of a section that flags override key by key: the flag's value when given, else the
/// file's.
fn flag_or<T: Clone>(flag: &Option<T>, file: Option<&T>) -> Option<T> {
    flag.clone().or_else(|| file.cloned())
}

fn read_file(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|err| anyhow::anyhow!("configuration file {}: {}", path.display(), err.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `doppel serve` parsed from `flags`, as the binary parses its command line.
    fn serve(flags: &[&str]) -> ServeArgs {
        let line = ["doppel", "serve"].iter().chain(flags);
        match crate::Cli::try_parse_from(line)
            .expect("the flags parse")
            .command
        {
            crate::Command::Serve(args) => *args,
            _ => panic!("`doppel serve` parsed as another command"),
        }
    }

    #[test]
    fn every_key_is_named_after_its_path() {
        for key in KEYS {
            assert_eq!(key.field, key.path.join("_"), "{}", key.field);
            assert_eq!(
                key.env,
                format!("DOPPEL_{}", key.field.to_uppercase()),
                "{}",
                key.field
            );
        }
    }

    #[test]
    fn the_default_in_help_is_the_default_the_hub_runs_with() {
        let defaults = Config::default().effective().expect("the defaults print");
        let mut checked = 0;
        for key in KEYS {
            let Some(shown) = default_at(key.path) else {
                // Off by default: nothing in `Config::default()` to show.
                continue;
            };
            if shown == "none" {
                // An empty list or table: typing `none` would name one item.
                continue;
            }
            // Typed back after its flag, the value shown changes nothing.
            let flag = format!("--{}", key.field.replace('_', "-"));
            let config = serve(&[flag.as_str(), shown.as_str()])
                .resolve()
                .unwrap_or_else(|err| panic!("{flag} {shown}: {err}"));
            assert_eq!(
                config.effective().expect("the configuration prints"),
                defaults,
                "{flag} {shown}"
            );
            checked += 1;
        }
        assert!(checked > 40, "only {checked} keys have a default to check");
    }

    #[test]
    fn the_defaults_can_be_shown() {
        assert!(DEFAULTS.is_some(), "Config::default() is not TOML");
    }
}
