//! `doppel serve`: start-up, readiness and graceful shutdown.

use crate::config::{Config, LogFormat, ServeArgs};
use anyhow::Context;
use doppel_auth::Registry;
use doppel_engine::{Engine, SystemClock};
use doppel_http::AppState;
use doppel_mqtt::MqttServer;
use doppel_store::{CredentialStore, FjallStore};
use std::io::Write;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve().context("invalid configuration")?;
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Prints a start-up milestone on stdout. Scripts and tests wait for these exact lines:
/// `doppel listening on http://ADDR` and then `doppel ready`.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
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
    let state = AppState::new(config.limits);
    let server = tokio::spawn({
        let router = doppel_http::router(state.clone());
        let polls = state.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    shutdown_signal().await;
                    polls.end_long_polls();
                })
                .await
        }
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "HTTP API listening; loading the store");
    announce(&format!("doppel listening on http://{addr}"));

    let store = Arc::new(store);
    let credentials: Arc<dyn CredentialStore> = store.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::load(credentials))
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
    let mqtt = MqttServer::start(
        &config.mqtt_config(),
        engine.clone(),
        registry,
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

    let served = server.await.context("the HTTP server task failed")?;
    // Devices are told last, so that their twins record the disconnect.
    mqtt.shutdown().await;
    // The servers have stopped and dropped their engine handles: let the engine finish what was
    // accepted before the signal, so every answered request is durable.
    tasks.join().await;
    tracing::info!("stopped");
    served.context("the HTTP server failed")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
