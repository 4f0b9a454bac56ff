//! The HTTP connection loop: `axum::serve`'s job, with the two bounds it lacks. A client that
//! does not send a request's headers within the header timeout loses its connection (silent and
//! slow-header sockets would otherwise be held forever), and at most `max_connections` are open
//! at once: at the limit the listener stops accepting, so new connections wait in the kernel's
//! backlog instead of taking file descriptors the MQTT side needs. Every request passes the
//! listener's [`BrowserPolicy`] (its allowed hosts, and CORS) before it is routed.

use crate::browser::BrowserPolicy;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long the loop pauses after a failed accept (out of file descriptors, say), so that it
/// does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Default most connections at once: far more than the applications and operators of one hub
/// keep open, few enough to leave the file descriptors to MQTT devices.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default time for a request's headers: ample for any real client, while slow-header clients
/// (a byte every few seconds) lose their socket soon.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, from the moment the server
    /// waits for them (a new connection, or a kept-alive one after its last answer).
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Serves `router` behind `policy` on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests (idle ones are closed at once) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    policy: &BrowserPolicy,
    shutdown: impl Future<Output = ()>,
) {
    let guarded = policy.guard(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Tells every connection that the server is stopping.
    let (stopping, stop) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Answers are written whole; Nagle's algorithm would hold small ones back.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(guarded.clone());
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            // A connection ends with an error whenever a client goes away mid-request or
            // times out: nothing to act on here.
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends: having them all back means all ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}
