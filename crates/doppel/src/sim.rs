//! `doppel sim`: simulated devices against a hub (the simulator is `doppel-sim`).

use crate::config::Config;
use crate::telemetry;
use anyhow::{Context, bail};
use clap::Args;
use doppel_sim::config::{
    DEFAULT_CONNECT_RATE, DEFAULT_DURATION, DEFAULT_INTERVAL, DEFAULT_JITTER_DIVISOR,
    DEFAULT_KEEP_ALIVE, DEFAULT_PREFIX, DEFAULT_RECONNECT_RATE, DEFAULT_USERNAME_TEMPLATE,
    link_model,
};
use doppel_sim::{Credentials, ProgressMode, SimConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// The hub's MQTT address, host:port.
    #[arg(long, env = "DOPPEL_SIM_HUB", default_value = "127.0.0.1:1883")]
    hub: String,
    /// How many devices to simulate, each with its own MQTT connection.
    #[arg(long)]
    devices: u32,
    /// Thing names are {prefix}-{n:06}.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// Mean time between two reports of a device, e.g. "10s" [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Each report comes up to this much before or after the interval, e.g. "2s" [default: a
    /// fifth of the interval].
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// How long the run lasts, e.g. "60s" [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// λ: how often a device's link goes down, per second; 0 keeps every link up.
    #[arg(long, default_value_t = 0.0)]
    disconnect_rate: f64,
    /// μ: how fast a link that is down comes back, per second.
    #[arg(long, default_value_t = DEFAULT_RECONNECT_RATE)]
    reconnect_rate: f64,
    /// Fixes every random choice; device i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First connects per second, across all devices.
    #[arg(long, default_value_t = DEFAULT_CONNECT_RATE)]
    connect_rate: u32,
    /// Shard tasks (threads) that share the devices [default: the number of cores].
    #[arg(long)]
    tasks: Option<usize>,
    /// The keep-alive each device announces, e.g. "60s" [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    keep_alive: Option<Duration>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Draw no progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Log in with device credentials of this password instead of anonymously (each device as
    /// --username-template).
    #[arg(
        long,
        env = "DOPPEL_SIM_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    password: Option<String>,
    /// The devices' tenant, for credentials.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The username of each device's credential; {tenant} and {thing} are replaced.
    #[arg(long, default_value = DEFAULT_USERNAME_TEMPLATE)]
    username_template: String,
    /// Exit with an error (after the report) when any connection attempt failed, e.g. the hub
    /// refused some devices' credentials; without it only a run in which nothing connected fails.
    #[arg(long)]
    fail_on_connect_errors: bool,
    /// A tracing filter such as "warn" or "doppel_sim=debug".
    #[arg(long, env = "DOPPEL_LOG_LEVEL", default_value = "warn")]
    log_level: String,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = sim_config(&args);
    config.validate()?;
    // Created before the run, so that a path that cannot be written fails now, not after it.
    let mut report_file = match &args.report_json {
        Some(path) => Some((
            std::fs::File::create(path)
                .with_context(|| format!("--report-json: cannot create {}", path.display()))?,
            path,
        )),
        None => None,
    };
    let mut log = Config::default();
    log.log.level = args.log_level.clone();
    let telemetry = telemetry::init(&log)?;
    let mode = if args.no_progress {
        ProgressMode::Hidden
    } else {
        ProgressMode::Bar
    };
    let ran = doppel_sim::run(&config, mode);
    telemetry.shutdown();
    let report = ran?;
    print!("{}", report.table());
    if let Some((file, path)) = &mut report_file {
        let json = report.to_json().context("cannot render the JSON report")?;
        writeln!(file, "{json}")
            .with_context(|| format!("--report-json: cannot write {}", path.display()))?;
    }
    if args.fail_on_connect_errors
        && let Some(kinds) = report.connect_failures_summary()
    {
        bail!(
            "{} connection attempts failed ({kinds}), and --fail-on-connect-errors is set",
            report.totals.counters.connect_failures
        );
    }
    Ok(())
}

fn sim_config(args: &SimArgs) -> SimConfig {
    let mut config = SimConfig::new(args.hub.clone(), args.devices);
    config.prefix = args.prefix.clone();
    config.interval = args.interval.unwrap_or(DEFAULT_INTERVAL);
    config.jitter = args
        .jitter
        .unwrap_or(config.interval / DEFAULT_JITTER_DIVISOR);
    config.duration = args.duration.unwrap_or(DEFAULT_DURATION);
    config.link = link_model(args.disconnect_rate, args.reconnect_rate);
    config.seed = args.seed;
    config.connect_rate = args.connect_rate;
    if let Some(tasks) = args.tasks {
        config.tasks = tasks;
    }
    config.keep_alive = args.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE);
    config.credentials = args.password.as_ref().map(|password| Credentials {
        tenant: args.tenant.clone(),
        username_template: args.username_template.clone(),
        password: password.clone(),
    });
    config
}
