//! `doppel edge`: the edge agent next to the devices (its logic is in `doppel-edge`).

use crate::config::{Config, LogFormat};
use crate::serve::{announce, install_metrics, shutdown_signal};
use crate::telemetry;
use anyhow::{Context, bail};
use clap::Args;
use doppel_edge::config::{
    DEFAULT_ANSWER_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_RECONNECT_DELAY, DEFAULT_SYNC_INTERVAL,
};
use doppel_edge::{DeviceCredential, Edge, EdgeConfig, LocalApi};
use doppel_model::policy::{ReplicationRules, Role};
use doppel_model::{DeviceId, TenantId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct EdgeArgs {
    /// The hub's MQTT listener: host:port or mqtt://host[:port] (plain), mqtts://host[:port]
    /// (TLS, the hub's certificate and name checked).
    #[arg(long, env = "DOPPEL_EDGE_HUB")]
    hub: String,
    /// PEM CA certificates to check an mqtts:// hub's certificate against, instead of the
    /// system's.
    #[arg(long, env = "DOPPEL_EDGE_HUB_CA_FILE")]
    hub_ca_file: Option<PathBuf>,
    /// This agent's replica name: unique among the replicas of its twins, never "hub".
    #[arg(long, env = "DOPPEL_EDGE_ID")]
    id: String,
    /// A device behind this agent; repeat it for a gateway of several.
    #[arg(long = "device", required = true)]
    devices: Vec<String>,
    /// The tenant of the devices on the hub.
    #[arg(long, env = "DOPPEL_EDGE_TENANT", default_value = "default")]
    tenant: String,
    /// The devices' hub password (of each credential `{tenant}/devices/{device}`), for devices
    /// not in --credentials.
    #[arg(
        long,
        env = "DOPPEL_EDGE_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    password: Option<String>,
    /// A TOML file of `device = "password"` lines, for devices with passwords of their own.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Folder of the local store; one agent per folder.
    #[arg(
        long,
        env = "DOPPEL_EDGE_DATA_DIR",
        default_value = "./doppel-edge-data"
    )]
    data_dir: PathBuf,
    /// The local HTTP API; requests need a token of the agent (the first is in
    /// {data dir}/admin.token).
    #[arg(long, env = "DOPPEL_EDGE_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    /// Serve the local HTTP API without tokens (development only; loopback addresses only).
    #[arg(
        long,
        env = "DOPPEL_EDGE_HTTP_ALLOW_ANONYMOUS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    http_allow_anonymous: bool,
    /// Serve the local HTTP API on this Unix socket instead of TCP: no tokens, the socket
    /// file's permissions decide who may call.
    #[arg(
        long,
        env = "DOPPEL_EDGE_HTTP_UNIX_SOCKET",
        conflicts_with_all = ["http_addr", "http_allow_anonymous"]
    )]
    http_unix_socket: Option<PathBuf>,
    /// The socket file's mode, in octal: 0600 (the agent's user only) or 0660 (and the file's
    /// group); nothing for others, since no token guards the socket.
    #[arg(
        long,
        env = "DOPPEL_EDGE_HTTP_UNIX_SOCKET_MODE",
        default_value = "0600",
        value_parser = parse_mode,
        requires = "http_unix_socket"
    )]
    http_unix_socket_mode: u32,
    /// Invalid bearer tokens from one address within a minute before the local API answers it
    /// 429 for a backoff (1 s, doubled up to 15 min), as the hub's
    /// http.max_auth_failures_per_address.
    #[arg(
        long,
        env = "DOPPEL_EDGE_HTTP_MAX_AUTH_FAILURES_PER_ADDRESS",
        default_value_t = doppel_http::auth::DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    http_max_auth_failures_per_address: u32,
    /// The secret of the agent's first admin token (environment only: a secret).
    #[arg(skip = std::env::var("DOPPEL_HTTP_BOOTSTRAP_TOKEN").ok())]
    bootstrap_token: Option<String>,
    /// A TOML file of replication rules, as the hub's `[replication]` section.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// How often each device syncs when nothing asks for it, e.g. "10s" [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    sync_interval: Option<Duration>,
    /// Wait before reconnecting a dropped link to the hub, e.g. "500ms" [default: 500ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    reconnect_delay: Option<Duration>,
    /// A tracing filter such as "info".
    #[arg(long, env = "DOPPEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[arg(long, env = "DOPPEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Crates whose info lines an agent's operator does not need: fjall and its LSM tree log every
/// journal ingestion at start. Kept to warnings unless `--log-level` names them.
const QUIET_CRATES: [&str; 2] = ["fjall", "lsm_tree"];

pub fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let config = edge_config(&args)?;
    let mut log = Config::default();
    log.log.level = log_filter(&args.log_level);
    log.log.format = args.log_format;
    let telemetry = telemetry::init(&log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ran = runtime.block_on(async {
        let metrics = install_metrics()?;
        doppel_engine::metric::describe();
        doppel_http::describe_metrics();
        doppel_edge::describe_metrics();
        let signalled = shutdown_signal()?;
        let edge = Edge::start(config, Some(metrics)).await?;
        announce(&format!("doppel edge listening on {}", edge.listening()));
        announce("doppel edge ready");
        edge.run_until(async {
            signalled.await;
            tracing::info!("doppel edge stopping: finishing local requests in flight");
        })
        .await?;
        tracing::info!("doppel edge stopped");
        anyhow::Ok(())
    });
    drop(runtime);
    telemetry.shutdown();
    ran
}

/// `level` with [`QUIET_CRATES`] held to warnings, for each one it does not name itself.
fn log_filter(level: &str) -> String {
    let mut filter = level.to_owned();
    for name in QUIET_CRATES {
        let named = level
            .split(',')
            .any(|directive| directive.trim().split(['=', '[', ':']).next() == Some(name));
        if !named {
            if !filter.is_empty() {
                filter.push(',');
            }
            filter.push_str(name);
            filter.push_str("=warn");
        }
    }
    filter
}

fn edge_config(args: &EdgeArgs) -> anyhow::Result<EdgeConfig> {
    let tenant = TenantId::new(args.tenant.as_str()).context("--tenant")?;
    let passwords: BTreeMap<String, String> = match &args.credentials {
        Some(path) => read_toml(path, "--credentials")?,
        None => BTreeMap::new(),
    };
    let rules: ReplicationRules = match &args.rules {
        Some(path) => read_toml(path, "--rules")?,
        None => ReplicationRules::default(),
    };
    let mut devices = Vec::new();
    for name in &args.devices {
        let device = DeviceId::new(name.as_str()).context("--device")?;
        let Some(password) = passwords.get(name).or(args.password.as_ref()) else {
            bail!("no password for device {name:?}: give --password or list it in --credentials");
        };
        devices.push(DeviceCredential {
            device,
            password: password.clone(),
        });
    }
    let local_api = match &args.http_unix_socket {
        Some(path) => LocalApi::Unix {
            path: path.clone(),
            mode: args.http_unix_socket_mode,
        },
        None => LocalApi::Tcp {
            addr: args.http_addr,
            allow_anonymous: args.http_allow_anonymous,
        },
    };
    let config = EdgeConfig {
        hub: args.hub.clone(),
        hub_ca_file: args.hub_ca_file.clone(),
        tenant,
        data_dir: args.data_dir.clone(),
        local_api,
        bootstrap_token: args.bootstrap_token.clone(),
        replica: rules.replica(args.id.clone(), Role::Device),
        devices,
        sync_interval: args.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL),
        reconnect_delay: args.reconnect_delay.unwrap_or(DEFAULT_RECONNECT_DELAY),
        answer_timeout: DEFAULT_ANSWER_TIMEOUT,
        keep_alive: DEFAULT_KEEP_ALIVE,
        max_auth_failures_per_address: args.http_max_auth_failures_per_address,
    };
    config.validate()?;
    Ok(config)
}

/// A file mode in octal, with or without the leading 0: `0660`, `660`.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 0600"))
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &PathBuf, flag: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{flag}: {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_store_crates_log_warnings_unless_the_filter_names_them() {
        assert_eq!(log_filter("info"), "info,fjall=warn,lsm_tree=warn");
        assert_eq!(log_filter(""), "fjall=warn,lsm_tree=warn");
        assert_eq!(
            log_filter("debug,lsm_tree=info"),
            "debug,lsm_tree=info,fjall=warn"
        );
        assert_eq!(
            log_filter("fjall::db=debug"),
            "fjall::db=debug,lsm_tree=warn"
        );
    }
}
