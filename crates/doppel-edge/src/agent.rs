//! Start-up and shutdown of the agent: the local store and engine, the HTTP API, and one hub
//! link per device.

use crate::availability::Availability;
use crate::config::{EdgeConfig, EdgeError};
use crate::link::{self, LinkContext};
use crate::watermark::Watermarks;
use doppel_engine::{Engine, EngineConfig, EngineTasks, SystemClock};
use doppel_http::AppState;
use doppel_http::auth::Authentication;
use doppel_http::browser::BrowserPolicy;
use doppel_http::server::ConnectionLimits;
use doppel_store::{FjallStore, HistoryBuckets};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Local history is bucketed by day, as on the hub.
const HISTORY_BUCKET_MS: i64 = 24 * 3600 * 1000;

/// A running edge agent.
pub struct Edge {
    http_addr: SocketAddr,
    availability: Arc<Availability>,
    state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    links: Vec<JoinHandle<()>>,
    engine_tasks: EngineTasks,
}

impl Edge {
    /// Opens the local store, loads the twins, starts serving HTTP and connects each device's
    /// link. `metrics`, when given, is what `/metrics` renders.
    pub async fn start(
        config: EdgeConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Edge, EdgeError> {
        config.validate()?;
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
        let watermarks = Arc::new(Watermarks::open(&config.data_dir)?);
        let engine_config = EngineConfig {
            replica: Arc::new(config.replica.clone()),
            ..EngineConfig::default()
        };
        let limits = engine_config.limits;
        let (engine, engine_tasks) =
            Engine::start(Arc::new(store), Arc::new(SystemClock), engine_config)
                .await
                .map_err(|err| EdgeError::Engine(err.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| EdgeError::Listen {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| EdgeError::Listen {
            addr: config.http_addr,
            source,
        })?;
        let availability = Arc::new(Availability::new(config.devices.len()));
        // The local API asks nobody for a token: it listens on loopback (see docs/EDGE.md).
        let state = AppState::new(limits, Authentication::Anonymous, Arc::new(SystemClock));
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
        let server = tokio::spawn({
            let mut stopped = stopped.clone();
            async move {
                let stopping = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                // The hub's protections, with the agent's own address as the allowed host.
                let policy = BrowserPolicy::defaults(http_addr.ip());
                let limits = ConnectionLimits::default();
                doppel_http::server::serve(listener, None, router, limits, &policy, stopping).await
            }
        });
        let context = Arc::new(LinkContext {
            engine,
            config: config.clone(),
            availability: availability.clone(),
            watermarks,
        });
        let links = config
            .devices
            .iter()
            .map(|device| tokio::spawn(link::run(context.clone(), device.clone(), stopped.clone())))
            .collect();
        Ok(Edge {
            http_addr,
            availability,
            state,
            stop,
            server,
            links,
            engine_tasks,
        })
    }

    /// Where the local HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
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
