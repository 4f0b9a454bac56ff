//! Start-up and shutdown of the agent: the local store and engine, the HTTP API, and one hub
//! link per device.

use crate::availability::Availability;
use crate::config::{EdgeConfig, EdgeError, LocalApi};
use crate::link::{self, LinkContext};
use crate::watermark::Watermarks;
use doppel_engine::{Clock, Engine, EngineConfig, EngineTasks, SystemClock};
use doppel_http::AppState;
use doppel_http::auth::Authentication;
use doppel_http::browser::BrowserPolicy;
use doppel_http::server::ConnectionLimits;
use doppel_store::{FjallStore, HistoryBuckets, TokenStore};
use metrics_exporter_prometheus::PrometheusHandle;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(unix)]
type SocketFile = crate::local_socket::SocketFile;
/// There are no Unix sockets to clean up.
#[cfg(not(unix))]
type SocketFile = std::convert::Infallible;

/// Local history is bucketed by day, as on the hub.
const HISTORY_BUCKET_MS: i64 = 24 * 3600 * 1000;

/// Where the local API is served, once it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    Http(SocketAddr),
    Unix(PathBuf),
}

/// `http://ADDR` or `unix:PATH`, as the agent announces it.
impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listening::Http(addr) => write!(f, "http://{addr}"),
            Listening::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A running edge agent.
pub struct Edge {
    listening: Listening,
    availability: Arc<Availability>,
    state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    links: Vec<JoinHandle<()>>,
    engine_tasks: EngineTasks,
    /// The Unix socket's file, removed once the server has stopped.
    _socket_file: Option<SocketFile>,
}

impl Edge {
    /// Opens the local store, loads the twins, starts serving HTTP and connects each device's
    /// link. `metrics`, when given, is what `/metrics` renders.
    pub async fn start(
        config: EdgeConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Edge, EdgeError> {
        config.validate()?;
        // Before anything is opened, so that a bad CA file stops the start with its name.
        let hub_transport = link::transport(&config)?;
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).map_err(|err| EdgeError::Store {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || {
            FjallStore::open(&data_dir, HistoryBuckets::new(HISTORY_BUCKET_MS))
        })
        .await
        .map_err(|err| EdgeError::Engine(err.to_string()))?
        .map_err(|err| EdgeError::Store {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let store = Arc::new(store);
        let watermarks = Arc::new(Watermarks::open(&config.data_dir)?);
        let authentication = authentication(&config, store.clone()).await?;
        let engine_config = EngineConfig {
            replica: Arc::new(config.replica.clone()),
            ..EngineConfig::default()
        };
        let limits = engine_config.limits;
        let (engine, engine_tasks) = Engine::start(store, Arc::new(SystemClock), engine_config)
            .await
            .map_err(|err| EdgeError::Engine(err.to_string()))?;
        let availability = Arc::new(Availability::new(
            config.devices.iter().map(|device| device.device.as_str()),
        ));
        let state = AppState::new(limits, authentication, Arc::new(SystemClock))
            .with_auth_failure_limit(config.max_auth_failures_per_address);
        if let Some(handle) = metrics {
            state.set_metrics(handle);
        }
        state.set_engine(engine.clone());
        let (stop, stopped) = watch::channel(false);
        let router = crate::http::router(
            state.clone(),
            &config.tenant,
            availability.clone(),
            &config.devices,
        );
        let stopping = {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let limits = ConnectionLimits::default();
        let (listening, server, socket_file) = match &config.local_api {
            LocalApi::Tcp { addr, .. } => {
                let listen_error = |err: std::io::Error| EdgeError::Listen {
                    addr: addr.to_string(),
                    reason: err.to_string(),
                };
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(listen_error)?;
                let bound = listener.local_addr().map_err(listen_error)?;
                // The hub's protections, with the agent's own address as the allowed host.
                let policy = BrowserPolicy::defaults(bound.ip());
                let server = tokio::spawn(async move {
                    doppel_http::server::serve(listener, None, router, limits, &policy, stopping)
                        .await
                });
                (Listening::Http(bound), server, None)
            }
            #[cfg(unix)]
            LocalApi::Unix { path, mode } => {
                let (listener, file) = crate::local_socket::bind(path, *mode)?;
                // No browser reaches a Unix socket, but a client names some host: the
                // loopback names, as for a local TCP listener.
                let policy = BrowserPolicy::defaults(IpAddr::V4(Ipv4Addr::LOCALHOST));
                let server = tokio::spawn(async move {
                    doppel_http::server::serve(listener, None, router, limits, &policy, stopping)
                        .await
                });
                (Listening::Unix(path.clone()), server, Some(file))
            }
            #[cfg(not(unix))]
            LocalApi::Unix { .. } => {
                return Err(EdgeError::Config(
                    "--http-unix-socket needs a Unix system".into(),
                ));
            }
        };
        let context = Arc::new(LinkContext {
            engine,
            config: config.clone(),
            hub_transport,
            availability: availability.clone(),
            watermarks,
        });
        let links = config
            .devices
            .iter()
            .map(|device| tokio::spawn(link::run(context.clone(), device.clone(), stopped.clone())))
            .collect();
        Ok(Edge {
            listening,
            availability,
            state,
            stop,
            server,
            links,
            engine_tasks,
            _socket_file: socket_file,
        })
    }

    /// Where the local HTTP API listens.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    /// Serves until `shutdown` resolves, then stops: requests in flight finish, long polls
    /// end, the links close and every acknowledged local write is durable before this returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), EdgeError> {
        let Edge {
            state,
            stop,
            mut server,
            links,
            engine_tasks,
            _socket_file,
            ..
        } = self;
        let early_end = tokio::select! {
            () = shutdown => None,
            served = &mut server => Some(served),
        };
        let _ = stop.send(true);
        state.end_waiting_requests();
        drop(state);
        let served = match early_end {
            Some(served) => served,
            None => server.await,
        };
        for link in links {
            let _ = link.await;
        }
        engine_tasks.join().await;
        served.map_err(|err| EdgeError::Serve(std::io::Error::other(err)))
    }
}

/// How the local API authenticates. Over TCP: by the agent's own tokens, kept in its store and
/// made the first time with an admin token whose secret goes to `admin.token` in the data
/// folder (the hub's way, [`doppel_auth::bootstrap`]); or by nobody, when the operator asked for
/// that on loopback. Over a Unix socket: by nobody, as the socket file's permissions decide
/// who connects.
async fn authentication(
    config: &EdgeConfig,
    store: Arc<FjallStore>,
) -> Result<Authentication, EdgeError> {
    match &config.local_api {
        LocalApi::Unix { .. } => Ok(Authentication::Anonymous),
        LocalApi::Tcp {
            addr,
            allow_anonymous: true,
        } => {
            // On stderr whatever the log level: an open API must not go unnoticed.
            eprintln!(
                "doppel: WARNING: --http-allow-anonymous is on: anyone who reaches {addr} can read and change the agent's twins"
            );
            tracing::warn!(
                "ANONYMOUS HTTP ACCESS IS ON; turn --http-allow-anonymous off outside development"
            );
            Ok(Authentication::Anonymous)
        }
        LocalApi::Tcp { .. } => {
            let token_store: Arc<dyn TokenStore> = store;
            let tokens = doppel_auth::load_tokens_or_bootstrap(
                token_store,
                &config.data_dir,
                config.bootstrap_token.as_deref(),
                SystemClock.now(),
            )
            .await?;
            Ok(Authentication::Tokens { tokens, jwt: None })
        }
    }
}
