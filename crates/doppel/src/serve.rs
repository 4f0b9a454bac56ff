//! `doppel serve`: start-up, readiness and graceful shutdown.

use crate::config::{Config, HIDDEN, ServeArgs};
use crate::descriptors;
use crate::telemetry;
use anyhow::Context;
use doppel_auth::JwtVerifier;
use doppel_auth::Registry;
use doppel_engine::Clock;
use doppel_engine::{Engine, SystemClock};
use doppel_http::AppState;
use doppel_http::auth::Authentication;
use doppel_http::server::ConnectionLimits;
use doppel_http::tls::{TlsCertificates, read_certificates, read_private_key};
use doppel_mqtt::MqttServer;
use doppel_store::{CredentialStore, FjallStore, TokenStore};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Bucket bounds of every `_seconds` histogram (request, commit and sync latencies): 100 µs,
/// below a lone fsync on a fast disk, to 10 s, beyond which the exact figure no longer matters.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds of writes per store commit, in powers of two: 1 (a lone write) to 4096 (four
/// shards each handing over their largest group, `engine.max_batch` = 1024); more lands in +Inf.
const COMMIT_WRITES_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// How often the recorder drains its histograms' recent samples into their buckets; without
/// it those samples would pile up between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve().context("invalid configuration")?;
    if args.check {
        let effective = check(&config).context("invalid configuration")?;
        return std::io::stdout()
            .lock()
            .write_all(effective.as_bytes())
            .context("cannot write to standard output");
    }
    let telemetry = telemetry::init(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(config));
    // The exporter's blocking client must not be dropped inside the runtime.
    drop(runtime);
    telemetry.shutdown();
    served
}

/// `doppel serve --check`: what `serve` reads and checks before it binds a port or opens the
/// data folder (the log filter, the TLS files, the JWKS), checked the same way, and the
/// bootstrap token's form, which `serve` checks only on a data folder without tokens; then
/// the effective configuration, secrets hidden, as a file `--config` reads back.
fn check(config: &Config) -> anyhow::Result<String> {
    telemetry::filter(&config.log)?;
    load_reloadable(config)?;
    if let Some(tls) = &config.mqtt.tls {
        // The broker reads these only when it binds its listener: read them here instead.
        read_certificates(&tls.cert).context("mqtt.tls.cert")?;
        read_private_key(&tls.key).context("mqtt.tls.key")?;
        if let Some(client_ca) = &tls.client_ca {
            read_certificates(client_ca).context("mqtt.tls.client_ca")?;
        }
    }
    if let Some(secret) = &config.http.bootstrap_token {
        doppel_auth::tokens::check_secret(secret).context("http.bootstrap_token")?;
    }
    Ok(format!(
        "# The effective configuration of doppel serve: defaults, then the file, the environment\n\
         # and the flags. Secrets show as \"{HIDDEN}\".\n{}",
        config.effective()?
    ))
}

/// Prints a start-up milestone on stdout. Scripts and tests wait for these exact lines:
/// `doppel listening on http://ADDR` (`https://` with `http.tls`) and then `doppel ready`.
pub(crate) fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Before anything else, so that bad certificate or key set files stop the start with their
    // name.
    let reloadable = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || load_reloadable(&config))
            .await
            .context("the TLS and JWKS loader panicked")??
    };
    let (tls, jwt) = (reloadable.tls.clone(), reloadable.jwt.clone());
    // Installed before the listening line, so that a SIGHUP sent once the hub is seen to
    // listen never meets the default disposition, which would end the process.
    reload_on_hangup(reloadable)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    // Opening is quick and fails on a folder another process holds: do it before announcing
    // anything. Loading the twins into memory is the slow part and happens after.
    let data_dir = config.data_dir.clone();
    let buckets = config.history_buckets();
    let store = tokio::task::spawn_blocking(move || FjallStore::open(&data_dir, buckets))
        .await
        .context("the store opener panicked")?
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on http.addr {}", config.http.addr))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let policy = config.http.browser_policy(addr.ip())?;
    let budget = share_descriptors(&config);
    let store = Arc::new(store);
    let authentication = authentication(&config, store.clone(), jwt).await?;
    // Applications log in over MQTT with the same tokens as over HTTP: one identity.
    let tokens = match &authentication {
        Authentication::Tokens { tokens, .. } => Some(tokens.clone()),
        Authentication::Anonymous => None,
    };
    let state = AppState::new(config.limits, authentication, Arc::new(SystemClock))
        .with_auth_failure_limit(config.http.max_auth_failures_per_address)
        .with_stream_limit(config.http.max_streams_per_token);
    state.set_metrics(install_metrics()?);
    doppel_engine::metric::describe();
    doppel_http::describe_metrics();
    doppel_mqtt::describe_metrics();
    let signalled = shutdown_signal()?;
    let server = tokio::spawn({
        let router = doppel_http::router(state.clone());
        let polls = state.clone();
        let tls = tls.clone();
        let limits = ConnectionLimits {
            max_connections: budget.http_connections,
            header_timeout: config.http.header_timeout,
        };
        let stopping = async move {
            signalled.await;
            tracing::info!("shutting down: finishing requests in flight");
            polls.end_waiting_requests();
        };
        async move { doppel_http::server::serve(listener, tls, router, limits, &policy, stopping).await }
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, data_dir = %config.data_dir.display(), "HTTP API listening; loading the store");
    announce(&format!("doppel listening on {scheme}://{addr}"));

    let credentials: Arc<dyn CredentialStore> = store.clone();
    let concurrent_checks = config.mqtt.login.concurrent_checks();
    let registry =
        tokio::task::spawn_blocking(move || Registry::load(credentials, concurrent_checks))
            .await
            .context("the credential loader panicked")?
            .context("cannot load the credentials from the store")?;
    // The credential routes answer from here on; twin routes wait for the engine below.
    state.set_registry(registry.clone(), Arc::new(SystemClock));
    let (engine, tasks) = Engine::start(store, Arc::new(SystemClock), config.engine_config())
        .await
        .context("cannot load the twins from the store")?;
    let twins = engine.stats().twins;
    if config.mqtt.allow_anonymous {
        // On stderr whatever the log level: an open broker must not go unnoticed.
        eprintln!(
            "doppel: WARNING: mqtt.allow_anonymous is on: MQTT clients connect without credentials, each acting as the thing named by its client id in tenant {:?}",
            doppel_mqtt::ANONYMOUS_TENANT
        );
    }
    let mqtt_config = doppel_mqtt::MqttConfig {
        max_connections: budget.mqtt_connections,
        max_sockets: budget.mqtt_sockets,
        ..config.mqtt_config()
    };
    let mqtt = MqttServer::start(
        &mqtt_config,
        engine.clone(),
        registry,
        tokens,
        config.limits,
    )
    .await
    .context("cannot start MQTT")?;
    for listener in mqtt.listening() {
        tracing::info!(addr = %listener.addr, scheme = listener.scheme, "MQTT listening");
        announce(&format!(
            "doppel mqtt listening on {}://{}",
            listener.scheme, listener.addr
        ));
    }
    state.set_engine(engine);
    drop(state);
    tracing::info!(
        twins,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    announce("doppel ready");

    server.await.context("the HTTP server task failed")?;
    // Devices are told last, so that their twins record the disconnect.
    mqtt.shutdown().await;
    // The servers have stopped and dropped their engine handles: let the engine finish what was
    // accepted before the signal, so every answered request is durable.
    tasks.join().await;
    tracing::info!("stopped");
    Ok(())
}

/// How the HTTP API authenticates: by the store's tokens, made the first time with an admin
/// token whose secret goes to `admin.token` (mode 0600) in the data folder
/// ([`doppel_auth::bootstrap`], shared with the edge agent), and by `jwt` when `http.jwt` is
/// set; or not at all, when `http.allow_anonymous` says so.
async fn authentication(
    config: &Config,
    store: Arc<FjallStore>,
    jwt: Option<Arc<JwtVerifier>>,
) -> anyhow::Result<Authentication> {
    if config.http.allow_anonymous {
        // On stderr whatever the log level: an open API must not go unnoticed.
        eprintln!(
            "doppel: WARNING: http.allow_anonymous is on: anyone who reaches {} can read and change every tenant's twins and mint credentials",
            config.http.addr
        );
        tracing::warn!(
            "ANONYMOUS HTTP ACCESS IS ON; turn http.allow_anonymous off outside development"
        );
        return Ok(Authentication::Anonymous);
    }
    let token_store: Arc<dyn TokenStore> = store;
    let tokens = doppel_auth::load_tokens_or_bootstrap(
        token_store,
        &config.data_dir,
        config.http.bootstrap_token.as_deref(),
        SystemClock.now(),
    )
    .await?;
    Ok(Authentication::Tokens { tokens, jwt })
}

/// Raises the open-files limit and shares it out between the listeners (see `descriptors`),
/// saying so when the configured connection limits do not fit in it.
fn share_descriptors(config: &Config) -> descriptors::Budget {
    let (http, mqtt) = (config.http.max_connections, config.mqtt.max_connections);
    let Some(open_files) = descriptors::raise_open_files_limit() else {
        return descriptors::plan(u64::MAX, http, mqtt);
    };
    let budget = descriptors::plan(open_files, http, mqtt);
    if budget.http_connections < http || budget.mqtt_connections < mqtt {
        tracing::info!(
            open_files,
            http_max_connections = budget.http_connections,
            mqtt_max_connections = budget.mqtt_connections,
            "the open-files limit is lower than the configured connection limits need: they are lowered to fit, with a reserve for the store"
        );
    }
    budget
}

/// Installs the process-wide metrics recorder, before the engine starts recording, and keeps
/// its upkeep going for the life of the runtime.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(doppel_engine::metric::COMMIT_WRITES.into()),
                &COMMIT_WRITES_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install_recorder)
        .context("cannot install the metrics recorder")?;
    tokio::spawn({
        let handle = handle.clone();
        async move {
            let mut upkeep = tokio::time::interval(METRICS_UPKEEP);
            loop {
                upkeep.tick().await;
                handle.run_upkeep();
            }
        }
    });
    Ok(handle)
}

/// Reads the files a SIGHUP reads again, for the first time. Blocking: a few small file reads.
fn load_reloadable(config: &Config) -> anyhow::Result<Reloadable> {
    let tls = match &config.http.tls {
        None => None,
        Some(section) => Some(Arc::new(
            TlsCertificates::load(section.files()).context("http.tls")?,
        )),
    };
    let jwt = match &config.http.jwt {
        None => None,
        Some(section) => Some(Arc::new(
            JwtVerifier::load(section.settings()).context("http.jwt.jwks_file")?,
        )),
    };
    Ok(Reloadable { tls, jwt })
}

/// What a SIGHUP reads again from its files.
#[derive(Clone)]
struct Reloadable {
    /// The HTTP API's certificate, key and client CAs (`http.tls`).
    tls: Option<Arc<TlsCertificates>>,
    /// The identity provider's key set (`http.jwt.jwks_file`).
    jwt: Option<Arc<JwtVerifier>>,
}

/// On every SIGHUP, reads the HTTP API's TLS files (see `TlsCertificates::reload`) and the
/// JWKS file (see `JwtVerifier::reload`) again; open connections keep the certificate they were
/// accepted with, and a file that does not load leaves what it would replace in use. With
/// neither configured there is nothing to reload, and SIGHUP is only logged: it never stops
/// the hub.
#[cfg(unix)]
fn reload_on_hangup(reloadable: Reloadable) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if reloadable.tls.is_none() && reloadable.jwt.is_none() {
                tracing::info!("SIGHUP: nothing to reload (neither http.tls nor http.jwt is set)");
                continue;
            }
            // A few small file reads, but blocking ones: off the async workers.
            let reloaded = tokio::task::spawn_blocking({
                let reloadable = reloadable.clone();
                move || reload(&reloadable)
            })
            .await;
            if let Err(err) = reloaded {
                tracing::error!(error = %err, "SIGHUP: the reload panicked");
            }
        }
    });
    Ok(())
}

/// Reads each configured file again, logging what came of it. Blocking.
#[cfg(unix)]
fn reload(reloadable: &Reloadable) {
    if let Some(tls) = &reloadable.tls {
        match tls.reload() {
            Ok(()) => tracing::info!(
                cert = %tls.files().cert.display(),
                "SIGHUP: reloaded the HTTP TLS certificate; new connections use it"
            ),
            Err(err) => tracing::error!(
                error = %err,
                "SIGHUP: cannot reload the HTTP TLS certificate; keeping the one in use"
            ),
        }
    }
    if let Some(jwt) = &reloadable.jwt {
        let file = jwt.settings().jwks_file.display();
        match jwt.reload() {
            Ok(keys) => tracing::info!(
                %file, keys,
                "SIGHUP: reloaded the JWKS; JWTs are verified with its keys from now on"
            ),
            Err(err) => tracing::error!(
                error = %err,
                "SIGHUP: cannot reload the JWKS; keeping the keys in use"
            ),
        }
    }
}

#[cfg(not(unix))]
fn reload_on_hangup(_reloadable: Reloadable) -> anyhow::Result<()> {
    Ok(())
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are installed by this call, not
/// when the future is first polled: a signal that comes between "ready" and that first poll
/// would otherwise meet the default action, which ends the process without a clean shutdown.
/// Must be called inside the runtime.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

/// A future that resolves on Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}
